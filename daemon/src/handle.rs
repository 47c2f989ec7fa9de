//! Handle layer: the daemon's one cheap-to-clone handle. Its parts are private; the layers above
//! reach them through verbs. Runs change only through [`Daemon::update_run`] (and are created and
//! removed through [`Daemon::insert_run`] and [`Daemon::delete_run`]): the one path that derives
//! statuses, records the events and publishes them in order.

use crate::backends::Backends;
use crate::catalog::CatalogService;
use crate::config::DaemonConfig;
use crate::gpu_samples::GpuSampleStore;
use crate::hosts::ssh::SshHost;
use crate::hosts::Host;
use crate::lifecycle::{derive_run_status, reschedule, resubmit_failed};
use crate::logs::LogHub;
use crate::presence::Presence;
use crate::sealing::SealingKey;
use crate::services::Services;
use crate::store::{Store, StoreError};
use crate::sync::LockExt;
use flotilla_protocol::model::{Event, Run};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// What the daemon is made of, built by its start-up.
pub struct Parts {
    pub config: DaemonConfig,
    pub store: Store,
    pub logs: LogHub,
    pub local: Host,
    pub catalog: CatalogService,
    pub backends: Backends,
    /// The daemon's key: seals the credentials it keeps.
    pub sealing: SealingKey,
    /// The SSH gateway's host key.
    pub gateway_key: russh::keys::PrivateKey,
    pub shutdown: CancellationToken,
}

/// Instances a fleet asked for (`fleet.apply` of a backend fleet), for the fleet upkeep loop.
pub struct InstanceWish {
    pub fleet: String,
    pub count: u32,
    /// Told `Ok` once all are created, or why one could not be.
    pub done: oneshot::Sender<Result<(), String>>,
}

struct Inner {
    config: DaemonConfig,
    store: Store,
    logs: LogHub,
    local: Host,
    catalog: CatalogService,
    events: broadcast::Sender<Event>,
    /// Wakes the scheduler: a job was submitted, or blocks were freed.
    scheduler_wake: Notify,
    shutdown: CancellationToken,
    started_at: Timestamp,
    /// Submissions with a runner task alive in this process.
    runners: Mutex<HashSet<u64>>,
    /// Held from a store change to its publication, so that watchers see events in order.
    publish_lock: Mutex<()>,
    /// One connection object per SSH instance, by instance id.
    ssh_hosts: Mutex<HashMap<u64, Arc<SshHost>>>,
    /// Wakes the instances loop: a fleet was applied or deleted, a user was added.
    instances_wake: Notify,
    /// Wakes the fleet upkeep loop: a fleet asks for instances.
    fleets_wake: Notify,
    /// Instances that fleets asked for and the fleet upkeep loop has still to create.
    wanted_instances: Mutex<Vec<InstanceWish>>,
    /// Backends that create instances for fleets without `ssh_config`.
    backends: Backends,
    sealing: SealingKey,
    gateway_key: russh::keys::PrivateKey,
    /// Who is attached to each run (tunnels, `attach`).
    presence: Presence,
    /// Every service's replicas: where they listen, which are ready, their traffic.
    services: Services,
    /// GPU samples of the last hour.
    gpu_samples: GpuSampleStore,
}

#[derive(Clone)]
pub struct Daemon(Arc<Inner>);

impl Daemon {
    /// The SSH gateway's host key.
    pub fn gateway_key(&self) -> &russh::keys::PrivateKey {
        &self.0.gateway_key
    }

    /// Who is attached to each run.
    pub fn presence(&self) -> &Presence {
        &self.0.presence
    }

    /// Every service's replicas (the replica side writes, the HTTP proxy reads).
    pub fn services(&self) -> &Services {
        &self.0.services
    }

    /// The daemon's key, for the credentials it keeps sealed.
    pub fn sealing(&self) -> &SealingKey {
        &self.0.sealing
    }

    pub fn new(parts: Parts) -> Daemon {
        let (events, _) = broadcast::channel(4096);
        Daemon(Arc::new(Inner {
            config: parts.config,
            store: parts.store,
            logs: parts.logs,
            local: parts.local,
            catalog: parts.catalog,
            events,
            scheduler_wake: Notify::new(),
            shutdown: parts.shutdown,
            started_at: Timestamp::now(),
            runners: Mutex::new(HashSet::new()),
            publish_lock: Mutex::new(()),
            ssh_hosts: Mutex::new(HashMap::new()),
            instances_wake: Notify::new(),
            fleets_wake: Notify::new(),
            wanted_instances: Mutex::new(Vec::new()),
            backends: parts.backends,
            sealing: parts.sealing,
            gateway_key: parts.gateway_key,
            presence: Presence::default(),
            services: Services::default(),
            gpu_samples: GpuSampleStore::default(),
        }))
    }

    // ---- parts, read-only ----

    pub fn config(&self) -> &DaemonConfig {
        &self.0.config
    }

    /// The store, for reads and for the records that are not runs (fleets, instances, users).
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn logs(&self) -> &LogHub {
        &self.0.logs
    }

    pub fn catalog(&self) -> &CatalogService {
        &self.0.catalog
    }

    pub fn backends(&self) -> &Backends {
        &self.0.backends
    }

    pub fn gpu_samples(&self) -> &GpuSampleStore {
        &self.0.gpu_samples
    }

    /// This machine.
    pub fn local_host(&self) -> Host {
        self.0.local.clone()
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    pub fn started_at(&self) -> Timestamp {
        self.0.started_at
    }

    // ---- events and wake-ups ----

    pub fn publish(&self, events: Vec<Event>) {
        for e in events {
            // No subscriber is no error: watchers replay from the store when they come.
            let _ = self.0.events.send(e);
        }
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }

    /// A job was submitted or blocks were freed: the scheduler makes a pass.
    pub fn wake_scheduler(&self) {
        self.0.scheduler_wake.notify_one();
    }

    pub async fn scheduler_woken(&self) {
        self.0.scheduler_wake.notified().await
    }

    /// Hosts or keys changed: the instances loop looks at once.
    pub fn wake_instances(&self) {
        self.0.instances_wake.notify_one();
    }

    pub async fn instances_woken(&self) {
        self.0.instances_wake.notified().await
    }

    /// Records that `fleet` wants `count` more instances and wakes the fleet upkeep loop, which
    /// creates them; the answer says when they are created, or why not.
    pub fn want_instances(&self, fleet: &str, count: u32) -> oneshot::Receiver<Result<(), String>> {
        let (done, answer) = oneshot::channel();
        self.0.wanted_instances.locked().push(InstanceWish {
            fleet: fleet.to_string(),
            count,
            done,
        });
        self.0.fleets_wake.notify_one();
        answer
    }

    /// Takes the instances that fleets asked for (the fleet upkeep loop creates them).
    pub fn take_wanted_instances(&self) -> Vec<InstanceWish> {
        std::mem::take(&mut *self.0.wanted_instances.locked())
    }

    pub async fn fleets_woken(&self) {
        self.0.fleets_wake.notified().await
    }

    /// Makes the changes so far durable where no client waits for the answer: a failure is
    /// logged, never dropped.
    pub async fn flush_or_warn(&self, what: &str) {
        if let Err(e) = self.0.store.flush().await {
            tracing::warn!("cannot make {what} durable: {e}");
        }
    }

    // ---- runs ----

    /// Stores a new run (events recorded and published) and wakes the scheduler.
    pub async fn insert_run(&self, run: &Run) -> Result<(), StoreError> {
        let events = self.0.store.insert_run(run)?;
        self.0.store.flush().await?;
        self.publish(events);
        self.wake_scheduler();
        Ok(())
    }

    /// Removes a finished run with its logs.
    pub fn delete_run(&self, run: &Run) -> Result<(), StoreError> {
        {
            let _order = self.0.publish_lock.locked();
            self.publish(self.0.store.delete_run(run.id)?);
        }
        for job in &run.jobs {
            for sub in job.previous_submissions.iter().chain([&job.current]) {
                self.0.logs.remove(sub.id);
            }
        }
        Ok(())
    }

    /// Changes a run under the store's lock, derives its status from its jobs, records and
    /// publishes the events, and wakes the scheduler when something finished.
    pub fn update_run<T>(
        &self,
        id: u64,
        f: impl FnOnce(&mut Run) -> T,
    ) -> Result<(Run, T), StoreError> {
        let now = Timestamp::now();
        let _order = self.0.publish_lock.locked();
        let store = &self.0.store;
        let retry_scale = self.0.config.retry_delay_scale;
        let (run, (out, ended, id_error), events) = store.update_run(id, |run| {
            let running: HashSet<u64> = run
                .jobs
                .iter()
                .filter(|j| !j.current.status.is_finished())
                .map(|j| j.current.id)
                .collect();
            let out = f(run);
            let mut id_error = None;
            resubmit_failed(run, &running, now, retry_scale, || match store.next_id() {
                Ok(id) => Some(id),
                Err(e) => {
                    id_error = Some(e);
                    None
                }
            });
            derive_run_status(run, now);
            reschedule(run, now, || match store.next_id() {
                Ok(id) => Some(id),
                Err(e) => {
                    id_error = Some(e);
                    None
                }
            });
            let ended: Vec<u64> = run
                .jobs
                .iter()
                .flat_map(|j| j.previous_submissions.iter().chain([&j.current]))
                .filter(|s| s.status.is_finished() && running.contains(&s.id))
                .map(|s| s.id)
                .collect();
            (out, ended, id_error)
        })?;
        if let Some(e) = id_error {
            tracing::warn!("run {}: no id for a resubmission: {e}", run.name);
        }
        // A finished job's log is complete: followers get their final answer.
        for sub in ended {
            self.0.logs.complete(sub);
        }
        let freed = events.iter().any(|e| {
            e.kind == flotilla_protocol::model::EventKind::Job
                && e.new_status
                    .as_deref()
                    .is_some_and(|s| matches!(s, "done" | "failed" | "terminated" | "aborted"))
        });
        self.publish(events);
        if freed {
            self.wake_scheduler();
        }
        Ok((run, out))
    }

    // ---- hosts and runners ----

    /// The host an instance lives on: an SSH host for instances of SSH fleets, else this machine.
    pub fn host_for(&self, instance_id: Option<u64>) -> Host {
        let Some(id) = instance_id else {
            return self.local_host();
        };
        if let Some(h) = self.0.ssh_hosts.locked().get(&id) {
            return Host::Ssh(h.clone());
        }
        match self.0.store.get_instance(id) {
            Ok(Some(inst)) => match inst.ssh {
                Some(ep) => {
                    let slurm = self
                        .0
                        .backends
                        .get(&inst.backend)
                        .is_some_and(|b| b.slurm().is_some());
                    let host = Arc::new(
                        SshHost::new(ep, inst.host_key, inst.host_root)
                            .with_jump_key(inst.jump_host_key)
                            .with_slurm_verbs(slurm),
                    );
                    self.0
                        .ssh_hosts
                        .locked()
                        .entry(id)
                        .or_insert(host)
                        .clone()
                        .into()
                }
                None => self.local_host(),
            },
            Ok(None) => self.local_host(),
            Err(e) => {
                tracing::warn!("cannot read instance {id}: {e}; using this machine");
                self.local_host()
            }
        }
    }

    /// Forgets an SSH host's connection object (fleet deleted, host key changed).
    pub fn forget_host(&self, instance_id: u64) -> Option<Arc<SshHost>> {
        self.0.ssh_hosts.locked().remove(&instance_id)
    }

    /// Marks a runner as alive; false when one already runs for this submission.
    pub fn claim_runner(&self, submission: u64) -> bool {
        self.0.runners.locked().insert(submission)
    }

    pub fn release_runner(&self, submission: u64) {
        self.0.runners.locked().remove(&submission);
    }
}
