//! Bottom layer. Who is attached to each run: every tunnel into a job (a forwarded port, an SSH
//! session) and every `attach` holds a guard while it lasts. A dev environment's
//! `inactivity_duration` counts from the moment the last one left.

use crate::sync::LockExt;
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    last_change: Timestamp,
}

/// The attached clients of every run, in memory (a restart starts with none).
#[derive(Debug, Clone, Default)]
pub struct Presence {
    runs: Arc<Mutex<HashMap<u64, Entry>>>,
}

/// Whether anyone is attached to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attendance {
    Attached,
    /// The last client left then.
    IdleSince(Timestamp),
    /// No client since the daemon started.
    Never,
}

impl Presence {
    /// Counts a client of `run_id` until the guard is dropped.
    pub fn enter(&self, run_id: u64) -> PresenceGuard {
        let mut runs = self.runs.locked();
        let e = runs.entry(run_id).or_insert(Entry {
            open: 0,
            last_change: Timestamp::now(),
        });
        e.open += 1;
        e.last_change = Timestamp::now();
        PresenceGuard {
            runs: self.runs.clone(),
            run_id,
        }
    }

    pub fn attendance(&self, run_id: u64) -> Attendance {
        match self.runs.locked().get(&run_id) {
            Some(e) if e.open > 0 => Attendance::Attached,
            Some(e) => Attendance::IdleSince(e.last_change),
            None => Attendance::Never,
        }
    }

    /// Forgets a run that ended.
    pub fn forget(&self, run_id: u64) {
        let mut runs = self.runs.locked();
        if runs.get(&run_id).is_some_and(|e| e.open == 0) {
            runs.remove(&run_id);
        }
    }
}

/// One attached client; leaving is dropping it.
#[derive(Debug)]
pub struct PresenceGuard {
    runs: Arc<Mutex<HashMap<u64, Entry>>>,
    run_id: u64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        if let Some(e) = self.runs.locked().get_mut(&self.run_id) {
            e.open = e.open.saturating_sub(1);
            e.last_change = Timestamp::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_attached_while_a_guard_lives_and_idle_from_when_the_last_left() {
        let p = Presence::default();
        assert_eq!(p.attendance(7), Attendance::Never);
        let a = p.enter(7);
        let b = p.enter(7);
        assert_eq!(p.attendance(7), Attendance::Attached);
        drop(a);
        assert_eq!(p.attendance(7), Attendance::Attached);
        drop(b);
        assert!(matches!(p.attendance(7), Attendance::IdleSince(_)));
        p.forget(7);
        assert_eq!(p.attendance(7), Attendance::Never);
    }
}
