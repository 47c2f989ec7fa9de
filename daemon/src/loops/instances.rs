//! Driver layer: the instances loop. It provisions the hosts of SSH fleets (connect, supervisor, inventory, blocks),
//! pings them over their connection, and fails the jobs of a host unreachable past the grace.

use super::orphans::{orphan_of, record_orphans, stop_orphans};
use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::hosts::ssh::SshHost;
use crate::hosts::{supervisor, Host, HostError};
use crate::lifecycle::finish;
use crate::ops::fleets::{block_count, host_blocks};
use crate::ops::users::revoke_user_keys;
use crate::sync::LockExt;
use flotilla_protocol::model::{Instance, InstanceStatus, JobStatus, JobTerminationReason};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Default)]
struct LoopState {
    /// Instances with a provisioning or health task in flight.
    busy: HashSet<u64>,
    /// Next provisioning attempt and the backoff after it.
    retry: HashMap<u64, (Instant, Duration)>,
    last_check: HashMap<u64, Instant>,
    /// When each host's software (Docker, uv) was last looked at.
    software_check: HashMap<u64, Instant>,
}

type Shared = Arc<Mutex<LoopState>>;

const INTERVAL: Duration = Duration::from_millis(500);

/// The loop's state, shared with the provisioning and health tasks it starts.
#[derive(Default)]
pub struct InstancesLoop {
    state: Shared,
}

impl Loop for InstancesLoop {
    fn name(&self) -> &'static str {
        "instances"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Instances
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        tick(d, &self.state);
        INTERVAL
    }
}

/// Writes an instance and publishes its events; a store error is logged.
fn record(d: &Daemon, inst: &Instance) {
    match d.store().put_instance(inst) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot record instance {}: {e}", inst.name),
    }
}

fn tick(d: &Daemon, st: &Shared) {
    let instances = match d.store().list_instances() {
        Ok(i) => i,
        Err(e) => {
            warn!("instances loop: {e}");
            return;
        }
    };
    let now = Instant::now();
    let interval = Duration::from_secs(d.config().health_interval_secs);
    software_checks(d, st, &instances, now, interval * SOFTWARE_EVERY);
    for inst in instances.into_iter().filter(|i| i.ssh.is_some()) {
        let mut s = st.locked();
        if s.busy.contains(&inst.id) {
            continue;
        }
        let task = match inst.status {
            InstanceStatus::Pending | InstanceStatus::Provisioning => {
                if s.retry.get(&inst.id).is_some_and(|(at, _)| *at > now) {
                    continue;
                }
                Task::Provision
            }
            InstanceStatus::Idle | InstanceStatus::Busy => {
                let due = s
                    .last_check
                    .get(&inst.id)
                    .is_none_or(|t| now.duration_since(*t) >= interval);
                if !due {
                    continue;
                }
                s.last_check.insert(inst.id, now);
                Task::Health
            }
            _ => continue,
        };
        s.busy.insert(inst.id);
        drop(s);
        let (d, st) = (d.clone(), st.clone());
        // Each task removes its instance from `busy` when it ends.
        tokio::spawn(async move {
            match task {
                Task::Provision => provision(&d, &st, inst).await,
                Task::Health => health(&d, &st, inst).await,
            }
        });
    }
}

/// A host's software is looked at again every this many health intervals (30 s by default).
const SOFTWARE_EVERY: u32 = 6;

/// Looks again at what each usable host runs for jobs (Docker may have stopped or started):
/// a change is recorded and wakes the scheduler, so image jobs go to hosts whose Docker answers.
fn software_checks(d: &Daemon, st: &Shared, instances: &[Instance], now: Instant, every: Duration) {
    for inst in instances {
        if !matches!(inst.status, InstanceStatus::Idle | InstanceStatus::Busy) || inst.unreachable {
            continue;
        }
        {
            let mut s = st.locked();
            match s.software_check.get(&inst.id) {
                Some(t) if now.duration_since(*t) < every => continue,
                None => {
                    // Just provisioned (or the daemon just started): inventory is fresh.
                    s.software_check.insert(inst.id, now);
                    continue;
                }
                Some(_) => {}
            }
            s.software_check.insert(inst.id, now);
        }
        let (d, id, label) = (d.clone(), inst.id, inst.name.clone());
        tokio::spawn(async move {
            let host = d.host_for(Some(id));
            let software = match supervisor::software(&host).await {
                Ok(s) => s,
                Err(e) => {
                    warn!("cannot look at the software of {label}: {e}");
                    return;
                }
            };
            let Ok(Some(mut current)) = d.store().get_instance(id) else {
                return;
            };
            if current.software == software {
                return;
            }
            info!(instance = %label, docker = software.docker, uv = software.uv, "the host's software changed");
            current.software = software;
            if software.docker
                && current
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("Docker is not running"))
            {
                current.error = None;
            }
            record(&d, &current);
            d.flush_or_warn("an instance's software").await;
            d.wake_scheduler();
        });
    }
}

enum Task {
    Provision,
    Health,
}

fn ssh_host(d: &Daemon, id: u64) -> Option<Arc<SshHost>> {
    match d.host_for(Some(id)) {
        Host::Ssh(h) => Some(h),
        Host::Local(_) => None,
    }
}

async fn provision(d: &Daemon, st: &Shared, mut inst: Instance) {
    let id = inst.id;
    let Some(host) = ssh_host(d, id) else {
        st.locked().busy.remove(&id);
        return;
    };
    if inst.status == InstanceStatus::Pending {
        inst.status = InstanceStatus::Provisioning;
        record(d, &inst);
    }
    let result = host.prepare().await;
    // The fleet may have been deleted meanwhile.
    let Ok(Some(current)) = d.store().get_instance(id) else {
        st.locked().busy.remove(&id);
        return;
    };
    let mut inst = current;
    match result {
        Ok(p) => {
            // A backend may know better than the host's inventory (a Slurm slot: its nodes).
            let res = d
                .backends()
                .get(&inst.backend)
                .and_then(|b| b.instance_resources(&inst))
                .unwrap_or_else(|| p.inventory.resources());
            let software = p.inventory.software();
            let fleet_cfg = match d.store().get_fleet(&inst.fleet) {
                Ok(f) => f.and_then(|f| f.configuration),
                Err(e) => {
                    // Still provisioning: the next tick tries again.
                    warn!(host = %host.label(), "cannot read fleet {}: {e}", inst.fleet);
                    st.locked().busy.remove(&id);
                    return;
                }
            };
            let blocks = fleet_cfg
                .as_ref()
                .map(|c| host_blocks(c, inst.hostname.as_deref().unwrap_or_default()))
                .unwrap_or_default();
            match block_count(blocks, &res) {
                Ok(n) => {
                    inst.total_blocks = n;
                    inst.status = InstanceStatus::Idle;
                    inst.error = None;
                }
                Err(e) => {
                    inst.status = InstanceStatus::Failed;
                    inst.error = Some(e);
                }
            }
            inst.resources = res;
            inst.software = software;
            inst.host_key = p.host_key;
            inst.jump_host_key = p.jump_host_key;
            inst.host_root = Some(p.root);
            inst.unreachable = false;
            inst.unreachable_since = None;
            // Users reach their jobs through the daemon's gateway: no user's key stays on a
            // host (an earlier version of the daemon installed them).
            if let Err(e) = revoke_user_keys(d, &Host::Ssh(host.clone())).await {
                warn!("{}: cannot remove the users' keys: {e}", host.label());
            }
            info!(host = %host.label(), status = %inst.status, "host provisioned");
            st.locked().retry.remove(&id);
        }
        Err(e) => {
            let (status, backoff) = match &e {
                HostError::HostKeyChanged { .. } => {
                    (InstanceStatus::Failed, Duration::from_secs(60))
                }
                _ => {
                    let prev = st
                        .locked()
                        .retry
                        .get(&id)
                        .map(|(_, b)| *b)
                        .unwrap_or(Duration::from_secs(1));
                    (
                        InstanceStatus::Pending,
                        (prev * 2).min(Duration::from_secs(60)),
                    )
                }
            };
            warn!(host = %host.label(), "provisioning failed: {e}; next try in {}s", backoff.as_secs());
            inst.status = status;
            inst.error = Some(e.to_string());
            st.locked()
                .retry
                .insert(id, (Instant::now() + backoff, backoff));
        }
    }
    record(d, &inst);
    d.flush_or_warn("an instance's state").await;
    d.wake_scheduler();
    st.locked().busy.remove(&id);
}

async fn health(d: &Daemon, st: &Shared, inst: Instance) {
    let id = inst.id;
    let Some(host) = ssh_host(d, id) else {
        st.locked().busy.remove(&id);
        return;
    };
    let timeout = Duration::from_secs(d.config().health_interval_secs.max(3));
    let result = match tokio::time::timeout(timeout, host.ping()).await {
        Ok(r) => r,
        Err(_) => Err(HostError::Unreachable {
            host: host.label(),
            message: format!("no answer within {}s", timeout.as_secs()),
        }),
    };
    let Ok(Some(mut inst)) = d.store().get_instance(id) else {
        st.locked().busy.remove(&id);
        return;
    };
    let now = Timestamp::now();
    match result {
        Ok(()) => {
            if inst.unreachable {
                info!(host = %host.label(), "host reachable again");
                inst.unreachable = false;
                inst.unreachable_since = None;
                inst.error = None;
                record(d, &inst);
                d.wake_scheduler();
            }
            if !inst.orphans.is_empty()
                && stop_orphans(d, &Host::Ssh(host.clone()), &mut inst).await
            {
                record(d, &inst);
            }
        }
        Err(e) => {
            if let HostError::HostKeyChanged { .. } = e {
                inst.status = InstanceStatus::Failed;
            }
            if !inst.unreachable {
                warn!(host = %host.label(), "host unreachable: {e}");
                inst.unreachable = true;
                inst.unreachable_since = Some(now);
            }
            inst.error = Some(e.to_string());
            record(d, &inst);
            host.disconnect().await;
            let since = inst.unreachable_since.unwrap_or(now);
            if since.secs_until(now) >= d.config().unreachable_grace_secs {
                fail_jobs_on(d, &inst, since.secs_until(now)).await;
            }
        }
    }
    d.flush_or_warn("an instance's state").await;
    st.locked().busy.remove(&id);
}

/// Fails every job still on an instance that stayed unreachable past the grace; those that
/// started there are recorded as orphans, stopped when the host is back.
async fn fail_jobs_on(d: &Daemon, inst: &Instance, secs: u64) {
    let now = Timestamp::now();
    let host = d.host_for(Some(inst.id));
    for run in d.store().active_runs() {
        let affected = run
            .jobs
            .iter()
            .any(|j| j.current.instance_id == Some(inst.id) && !j.current.status.is_finished());
        if !affected {
            continue;
        }
        let message = format!("{} unreachable for {secs}s", inst.name);
        let mut orphans = Vec::new();
        let r = d.update_run(run.id, |run| {
            let name = run.name.clone();
            for job in run.jobs.iter_mut() {
                let sub = &mut job.current;
                if sub.instance_id == Some(inst.id) && !sub.status.is_finished() {
                    let label = format!("{name}/{}/{}", job.replica_num, job.job_num);
                    orphans.extend(orphan_of(&host, label, sub));
                    finish(
                        sub,
                        JobStatus::Failed,
                        Some(JobTerminationReason::InstanceUnreachable),
                        Some(message.clone()),
                        now,
                    );
                }
            }
        });
        match r {
            Ok(_) => record_orphans(d, inst.id, orphans),
            Err(e) => warn!("cannot fail the jobs of {}: {e}", inst.name),
        }
    }
}
