//! Driver layer: the cloud loop, for backends that buy machines. At its first tick it runs the
//! start scan (credentials, live offers, machines unknown to the store); then it watches
//! booting machines until the provider reports them up (the instances loop takes over from
//! there), enforces each backend's `provisioning_timeout` (also for machines up but never
//! provisioned), retries terminations the provider has not confirmed (with backoff), and
//! refreshes the live offers every minute. Every provider call runs in a task of its own, so a
//! slow API never holds the loop.

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::ops::backends::{boot_step, past_provisioning_timeout, start_scan, CHECK_TIMEOUT};
use crate::ops::instances::terminate;
use crate::sync::LockExt;
use flotilla_protocol::model::{Instance, InstanceStatus};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// How often a booting machine is looked at (the provisioning overhead is at most this).
const BOOT_POLL: Duration = Duration::from_millis(250);
/// After this long booting, look less often (providers limit request rates).
const FAST_POLL_FOR: u64 = 120;
const SLOW_POLL: Duration = Duration::from_secs(3);
const REFRESH_EVERY: Duration = Duration::from_secs(60);
const MAX_TERMINATE_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    busy: HashSet<u64>,
    next: HashMap<u64, Instant>,
    backoff: HashMap<u64, Duration>,
    scanning: bool,
}

#[derive(Default)]
pub struct CloudLoop {
    state: Arc<Mutex<State>>,
    started: bool,
    last_refresh: Option<Instant>,
}

impl Loop for CloudLoop {
    fn name(&self) -> &'static str {
        "cloud"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Timer
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        if d.backends().list().iter().all(|b| b.cloud().is_none()) {
            return Duration::from_secs(3600);
        }
        if !self.started {
            self.started = true;
            self.last_refresh = Some(Instant::now());
            self.state.locked().scanning = true;
            let (d, st) = (d.clone(), self.state.clone());
            tokio::spawn(async move {
                start_scan(&d).await;
                st.locked().scanning = false;
            });
        }
        if self.state.locked().scanning {
            // Instances without a machine id may yet be adopted by the scan.
            return BOOT_POLL;
        }
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
        {
            self.last_refresh = Some(Instant::now());
            let d = d.clone();
            tokio::spawn(async move {
                for e in d.backends().refresh(CHECK_TIMEOUT).await {
                    warn!("live offers: {e}");
                }
            });
        }
        let instances = match d.store().list_instances() {
            Ok(i) => i,
            Err(e) => {
                warn!("cloud loop: {e}");
                return BOOT_POLL;
            }
        };
        let now = Instant::now();
        let stamp = Timestamp::now();
        {
            // Forget what is kept about instances that are gone.
            let mut s = self.state.locked();
            let ids: HashSet<u64> = instances.iter().map(|i| i.id).collect();
            s.next.retain(|id, _| ids.contains(id));
            s.backoff.retain(|id, _| ids.contains(id));
        }
        for inst in instances {
            let cloud = d
                .backends()
                .get(&inst.backend)
                .is_some_and(|b| b.cloud().is_some());
            if !cloud || inst.backend_id.is_none() {
                continue;
            }
            let job = match inst.status {
                InstanceStatus::Pending if inst.ssh.is_none() => Job::Boot,
                InstanceStatus::Pending | InstanceStatus::Provisioning
                    if past_provisioning_timeout(d, &inst, stamp) =>
                {
                    Job::Timeout
                }
                InstanceStatus::Terminating => Job::Terminate,
                _ => continue,
            };
            let mut s = self.state.locked();
            if s.busy.contains(&inst.id) || s.next.get(&inst.id).is_some_and(|t| *t > now) {
                continue;
            }
            s.busy.insert(inst.id);
            drop(s);
            let (d, st) = (d.clone(), self.state.clone());
            tokio::spawn(async move {
                run(&d, &st, job, inst).await;
            });
        }
        BOOT_POLL
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Boot,
    Timeout,
    Terminate,
}

async fn run(d: &Daemon, st: &Arc<Mutex<State>>, job: Job, inst: Instance) {
    let id = inst.id;
    let next = match job {
        Job::Boot => {
            boot_step(d, &inst).await;
            if inst.created_at.secs_until(Timestamp::now()) < FAST_POLL_FOR {
                BOOT_POLL
            } else {
                SLOW_POLL
            }
        }
        Job::Timeout => {
            let mut i = inst.clone();
            i.error = Some(
                "the machine was not provisioned within provisioning_timeout; terminating it"
                    .into(),
            );
            terminate(d, &i, "provisioning_timeout").await;
            BOOT_POLL
        }
        Job::Terminate => {
            let reason = inst
                .termination_reason
                .clone()
                .unwrap_or_else(|| "terminated".into());
            if terminate(d, &inst, &reason).await {
                st.locked().backoff.remove(&id);
                BOOT_POLL
            } else {
                let mut s = st.locked();
                let b = s
                    .backoff
                    .get(&id)
                    .map(|b| (*b * 2).min(MAX_TERMINATE_BACKOFF))
                    .unwrap_or(Duration::from_secs(1));
                s.backoff.insert(id, b);
                b
            }
        }
    };
    let mut s = st.locked();
    s.next.insert(id, Instant::now() + next);
    s.busy.remove(&id);
}
