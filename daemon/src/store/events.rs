//! Bottom layer, store: events. The one home of `EventDraft -> Event`, the log of events by
//! sequence number, and the events that a change of a run makes.

use super::{be, decode, encode, id_of, Result, Store};
use flotilla_protocol::model::{Event, Run};
use flotilla_protocol::Timestamp;

/// An event before it has its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub kind: &'static str,
    pub resource: String,
    pub old_status: Option<String>,
    pub new_status: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl EventDraft {
    /// The event, numbered `seq`, at `time`.
    pub fn into_event(self, seq: u64, time: Timestamp) -> Event {
        Event {
            seq,
            time,
            kind: self.kind.into(),
            resource: self.resource,
            old_status: self.old_status,
            new_status: self.new_status,
            reason: self.reason,
            message: self.message,
        }
    }
}

impl Store {
    /// Numbers the drafts with fresh ids (the ids order the events).
    pub(super) fn number_events(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>> {
        let now = Timestamp::now();
        drafts
            .into_iter()
            .map(|d| Ok(d.into_event(self.next_id()?, now)))
            .collect()
    }

    // ---- events ----

    pub(super) fn append_events_locked(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>> {
        let events = self.number_events(drafts)?;
        for e in &events {
            self.events.insert(be(e.seq), encode(e))?;
        }
        Ok(events)
    }

    pub fn append_events(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>> {
        self.writing(|| {
            let _g = self.lock();
            self.append_events_locked(drafts)
        })
    }

    /// Events with `seq > since`, oldest first, at most `limit`.
    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        self.events
            .range(be(since.saturating_add(1))..)
            .take(limit)
            .map(|kv| {
                let (_, v) = kv?;
                decode("events", &v)
            })
            .collect()
    }

    /// The last `n` events, oldest first.
    pub fn last_events(&self, n: usize) -> Result<Vec<Event>> {
        let mut v: Vec<Event> = self
            .events
            .iter()
            .rev()
            .take(n)
            .map(|kv| {
                let (_, v) = kv?;
                decode("events", &v)
            })
            .collect::<Result<_>>()?;
        v.reverse();
        Ok(v)
    }

    pub fn last_event_seq(&self) -> Result<u64> {
        match self.events.last()? {
            Some((k, _)) => id_of("events", &k),
            None => Ok(0),
        }
    }
}

/// The events of a new run: its submission and each job's.
pub fn submission_events(run: &Run) -> Vec<EventDraft> {
    let mut drafts = vec![EventDraft {
        kind: "run",
        resource: run.name.clone(),
        old_status: None,
        new_status: Some(run.status.to_string()),
        reason: None,
        message: Some(format!("submitted by {}", run.user)),
    }];
    for j in &run.jobs {
        drafts.push(EventDraft {
            kind: "job",
            resource: format!("{}/{}/{}", run.name, j.replica_num, j.job_num),
            old_status: None,
            new_status: Some(j.current.status.to_string()),
            reason: None,
            message: None,
        });
    }
    drafts
}

/// The events that the change from `old` to `new` makes: one per run or job status change.
pub fn status_changes(old: &Run, new: &Run) -> Vec<EventDraft> {
    let mut out = Vec::new();
    if old.status != new.status {
        out.push(EventDraft {
            kind: "run",
            resource: new.name.clone(),
            old_status: Some(old.status.to_string()),
            new_status: Some(new.status.to_string()),
            reason: new.termination_reason.map(|r| r.to_string()),
            message: new.status_message.clone(),
        });
    }
    for j in &new.jobs {
        let prev = old.job(j.replica_num, j.job_num);
        let prev_status = prev.map(|p| {
            if p.current.id == j.current.id {
                p.current.status
            } else {
                // A new submission: its previous state is "none".
                j.current.status
            }
        });
        let is_new_submission = prev.is_some_and(|p| p.current.id != j.current.id);
        let newly_waiting = !is_new_submission
            && prev_status == Some(j.current.status)
            && j.current.waiting_reason.is_some()
            && prev.and_then(|p| p.current.waiting_reason.as_ref())
                != j.current.waiting_reason.as_ref();
        if newly_waiting {
            out.push(EventDraft {
                kind: "job",
                resource: format!("{}/{}/{}", new.name, j.replica_num, j.job_num),
                old_status: prev_status.map(|s| s.to_string()),
                new_status: Some(j.current.status.to_string()),
                reason: j.current.waiting_reason.clone(),
                message: Some("waiting".into()),
            });
        }
        if prev_status != Some(j.current.status) || is_new_submission {
            out.push(EventDraft {
                kind: "job",
                resource: format!("{}/{}/{}", new.name, j.replica_num, j.job_num),
                old_status: if is_new_submission {
                    None
                } else {
                    prev_status.map(|s| s.to_string())
                },
                new_status: Some(j.current.status.to_string()),
                reason: j
                    .current
                    .termination_reason
                    .map(|r| r.to_string())
                    .or_else(|| j.current.waiting_reason.clone()),
                message: j.current.termination_message.clone().or_else(|| {
                    j.current
                        .instance
                        .as_ref()
                        .filter(|_| j.current.status.is_on_host())
                        .map(|i| format!("on {i}"))
                }),
            });
        }
    }
    out
}
