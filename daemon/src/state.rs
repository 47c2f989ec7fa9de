//! The daemon's one cheap-to-clone handle: store, logs, hosts, catalog, the event bus and the scheduler's wake-up.

use crate::catalog::CatalogService;
use crate::config::DaemonConfig;
use crate::hosts::ssh::SshHost;
use crate::hosts::Host;
use crate::lifecycle::derive_run_status;
use crate::logs::LogHub;
use crate::store::{Store, StoreError};
use flotilla_protocol::model::{Event, Run};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

pub struct Inner {
    pub config: DaemonConfig,
    pub store: Store,
    pub logs: LogHub,
    pub local: Host,
    pub catalog: CatalogService,
    pub events: broadcast::Sender<Event>,
    /// Wakes the scheduler: a job was submitted, or blocks were freed.
    pub wake: Notify,
    pub shutdown: CancellationToken,
    pub started_at: Timestamp,
    /// Submissions with a runner task alive in this process.
    pub runners: Mutex<HashSet<u64>>,
    /// Held from a store change to its publication, so that watchers see events in order.
    pub publish_lock: Mutex<()>,
    /// One connection object per SSH instance, by instance id.
    pub ssh_hosts: Mutex<HashMap<u64, Arc<SshHost>>>,
    /// Wakes the instances loop: a fleet was applied or deleted.
    pub instances_wake: Notify,
    /// Backends that create instances for fleets without `ssh_config`.
    pub backends: crate::backends::Backends,
    /// GPU samples of the last hour.
    pub metrics: crate::loops::metrics::MetricsStore,
}

#[derive(Clone)]
pub struct Daemon(pub Arc<Inner>);

impl Deref for Daemon {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Daemon {
    pub fn publish(&self, events: Vec<Event>) {
        for e in events {
            let _ = self.events.send(e);
        }
    }

    /// Changes a run under the store's lock, derives its status from its jobs, records and
    /// publishes the events, and wakes the scheduler when something finished.
    pub fn update_run<T>(
        &self,
        id: u64,
        f: impl FnOnce(&mut Run) -> T,
    ) -> Result<(Run, T), StoreError> {
        let now = Timestamp::now();
        let _order = self.publish_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (run, (out, ended), events) = self.store.update_run(id, |run| {
            let running: HashSet<u64> = run
                .jobs
                .iter()
                .filter(|j| !j.current.status.is_finished())
                .map(|j| j.current.id)
                .collect();
            let out = f(run);
            let store = &self.store;
            crate::lifecycle::resubmit_failed(
                run,
                &running,
                now,
                self.config.retry_delay_scale,
                || store.next_id().ok(),
            );
            derive_run_status(run, now);
            let ended: Vec<u64> = run
                .jobs
                .iter()
                .flat_map(|j| j.previous_submissions.iter().chain([&j.current]))
                .filter(|s| s.status.is_finished() && running.contains(&s.id))
                .map(|s| s.id)
                .collect();
            (out, ended)
        })?;
        // A finished job's log is complete: followers get their final answer.
        for sub in ended {
            self.logs.complete(sub);
        }
        let freed = events.iter().any(|e| {
            e.kind == flotilla_protocol::model::EventKind::Job
                && e.new_status
                    .as_deref()
                    .is_some_and(|s| matches!(s, "done" | "failed" | "terminated" | "aborted"))
        });
        self.publish(events);
        if freed {
            self.wake.notify_one();
        }
        Ok((run, out))
    }

    /// The host an instance lives on: an SSH host for instances of SSH fleets, else this machine.
    pub fn host_for(&self, instance_id: Option<u64>) -> Host {
        let Some(id) = instance_id else {
            return self.local.clone();
        };
        if let Some(h) = self
            .ssh_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Host::Ssh(h.clone());
        }
        match self.store.get_instance(id) {
            Ok(Some(inst)) => match inst.ssh {
                Some(ep) => {
                    let host = Arc::new(SshHost::new(ep, inst.host_key, inst.host_root));
                    self.ssh_hosts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(id)
                        .or_insert(host)
                        .clone()
                        .into()
                }
                None => self.local.clone(),
            },
            _ => self.local.clone(),
        }
    }

    /// Forgets an SSH host's connection object (fleet deleted, host key changed).
    pub fn forget_host(&self, instance_id: u64) -> Option<Arc<SshHost>> {
        self.ssh_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&instance_id)
    }

    /// Marks a runner as alive; false when one already runs for this submission.
    pub fn claim_runner(&self, submission: u64) -> bool {
        self.runners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(submission)
    }

    pub fn release_runner(&self, submission: u64) {
        self.runners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&submission);
    }
}
