//! Driver layer: the scheduling loop. Wakes on every submission or freed block, takes one
//! snapshot of the runs and the fleets' occupancy, asks the pure scheduler for decisions and
//! applies them.

use super::runners;
use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::lifecycle::finish;
use crate::ops::instances::create_from_offers;
use crate::ops::occupancy::views_of;
use crate::scheduler::{
    self, Decision, FleetView, JobKey, JobTerms, PendingJob, Provisioning, StaticOffers,
};
use crate::store::StoreError;
use crate::sync::LockExt;
use flotilla_protocol::model::{InstanceStatus, JobStatus, JobTerminationReason, Run};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::warn;

/// Jobs for which a new instance is being created: `None` while the backend works, then the
/// instance, until it is provisioned (the job is then placed like any other).
pub type Inflight = Arc<Mutex<HashMap<JobKey, Option<u64>>>>;

/// The slow safety net between passes; submissions and freed blocks wake the loop at once.
const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Scheduling {
    inflight: Inflight,
}

impl Loop for Scheduling {
    fn name(&self) -> &'static str {
        "scheduling"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Scheduler
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        let next_due = match schedule_once(d, &self.inflight).await {
            Ok(due) => due,
            Err(e) => {
                warn!("scheduling pass failed: {e}");
                None
            }
        };
        // The timer is for retry backoffs (and a slow safety net).
        match next_due {
            Some(due) => {
                let ms = due.millis().saturating_sub(Timestamp::now().millis());
                INTERVAL.min(Duration::from_millis(ms.max(10)))
            }
            None => INTERVAL,
        }
    }
}

/// What one pass looks at, read once at its start: nothing is read behind a lock during it.
struct Snapshot {
    runs: Vec<Arc<Run>>,
    /// The fleets with their occupancy.
    fleets: Vec<FleetView>,
    /// What the configured backends can create now.
    offers: StaticOffers,
}

impl Snapshot {
    fn take(d: &Daemon) -> Result<Snapshot, StoreError> {
        let runs = d.store().active_runs();
        let fleets = views_of(d.store().list_fleets()?, &runs);
        let offers = StaticOffers::new(d.backends().available_offers());
        Ok(Snapshot {
            runs,
            fleets,
            offers,
        })
    }

    /// Whether an instance is still on its way up (pending or provisioning).
    fn exists(&self, instance_id: u64) -> bool {
        self.fleets
            .iter()
            .flat_map(|f| f.instances.iter())
            .any(|i| i.id == instance_id)
    }

    fn coming_up(&self, instance_id: u64) -> bool {
        self.fleets
            .iter()
            .flat_map(|f| f.instances.iter())
            .find(|i| i.id == instance_id)
            .is_some_and(|i| {
                matches!(
                    i.status,
                    InstanceStatus::Pending | InstanceStatus::Provisioning
                )
            })
    }
}

/// One pass; returns when the next retry backoff ends, if any job waits for one.
pub async fn schedule_once(
    d: &Daemon,
    inflight: &Inflight,
) -> Result<Option<Timestamp>, StoreError> {
    let snapshot = Snapshot::take(d)?;
    let runs = &snapshot.runs;
    // Forget creations whose instance is up (or gone): their jobs are placed normally now.
    // A job whose instance went before it came up (provisioning_timeout, lost by the provider)
    // fails for want of capacity, as a failed creation does (its retry policy may resubmit it).
    let mut lost: Vec<(JobKey, u64)> = Vec::new();
    let waiting_for_instance: HashSet<JobKey> = {
        let mut map = inflight.locked();
        map.retain(|key, inst| match inst {
            None => true,
            Some(id) => {
                if !snapshot.exists(*id) {
                    lost.push((*key, *id));
                }
                snapshot.coming_up(*id)
            }
        });
        map.keys().copied().collect()
    };
    for (key, id) in lost {
        fail_for_no_capacity(
            d,
            key,
            format!("the instance created for it (id {id}) went before it came up (provisioning_timeout, or the provider lost it); `flotilla event` shows why"),
        )
        .await;
    }
    let now = Timestamp::now();
    let mut next_due: Option<Timestamp> = None;
    let mut pending = Vec::new();
    let mut subs: HashMap<JobKey, u64> = HashMap::new();
    for run in runs.iter().filter(|r| !r.status.is_finished()) {
        for job in &run.jobs {
            if job.current.status != JobStatus::Submitted || job.current.stop.is_some() {
                continue;
            }
            // A service's replica group asks for its own resources.
            let configuration = run
                .configuration
                .for_replica_group(job.replica_group.as_deref());
            let common = configuration.common();
            if let Some(at) = job.current.retry_at.filter(|t| *t > now) {
                next_due = Some(next_due.map_or(at, |n| n.min(at)));
                continue;
            }
            let key = JobKey {
                run_id: run.id,
                replica_num: job.replica_num,
                job_num: job.job_num,
            };
            if waiting_for_instance.contains(&key) {
                continue;
            }
            subs.insert(key, job.current.id);
            pending.push(PendingJob {
                key,
                label: format!("{}/{}/{}", run.name, job.replica_num, job.job_num),
                priority: common.priority,
                submitted_at: job.current.submitted_at,
                requirements: run.configuration.job_resources(job.job_num).clone(),
                fleets: common.policy.fleets.clone(),
                max_price: common.profile.max_price,
                nodes: run.configuration.nodes(),
                master_fleet: run
                    .job(job.replica_num, 0)
                    .filter(|m| m.current.status != JobStatus::Submitted)
                    .and_then(|m| m.current.fleet.clone()),
                terms: JobTerms::from_run(common),
            });
        }
    }
    if pending.is_empty() {
        return Ok(next_due);
    }
    let decisions = scheduler::schedule_with(&pending, &snapshot.fleets, &snapshot.offers, now);
    let mut to_create = Vec::new();
    let mut started = Vec::new();
    for decision in decisions {
        let key = decision.key();
        let Some(&sub_id) = subs.get(&key) else {
            continue;
        };
        let host = match &decision {
            Decision::Place(p) => d.host_for(Some(p.instance_id)),
            _ => d.local_host(),
        };
        let (_, placed) = d.update_run(key.run_id, |run| {
            let Some(job) = run.job_mut(key.replica_num, key.job_num) else {
                return false;
            };
            let sub = &mut job.current;
            // The run may have been stopped since the snapshot.
            if sub.id != sub_id || sub.status != JobStatus::Submitted || sub.stop.is_some() {
                return false;
            }
            match &decision {
                Decision::Place(p) => {
                    sub.status = JobStatus::Provisioning;
                    sub.instance = Some(p.instance.clone());
                    sub.instance_id = Some(p.instance_id);
                    sub.fleet = Some(p.fleet.clone());
                    sub.gpus = p.gpus.clone();
                    sub.blocks = p.blocks;
                    sub.price = Some(p.price);
                    sub.job_dir = Some(host.job_dir(sub.id));
                    sub.waiting_reason = None;
                    true
                }
                Decision::Provision(p) => {
                    let reason = format!(
                        "provisioning a new instance in fleet {}: {} {} (${}/h)",
                        p.fleet, p.offer.backend, p.offer.instance_type, p.offer.price
                    );
                    if sub.waiting_reason.as_deref() != Some(reason.as_str()) {
                        sub.waiting_reason = Some(reason);
                    }
                    to_create.push(p.clone());
                    false
                }
                Decision::Wait { reason, .. } => {
                    if sub.waiting_reason.as_deref() != Some(reason) {
                        sub.waiting_reason = Some(reason.clone());
                    }
                    false
                }
                Decision::Fail {
                    reason, message, ..
                } => {
                    finish(
                        sub,
                        JobStatus::Failed,
                        Some(*reason),
                        Some(message.clone()),
                        now,
                    );
                    false
                }
            }
        })?;
        if placed {
            started.push((key, sub_id));
        }
    }
    d.store().flush().await?;
    for (key, sub_id) in started {
        runners::spawn(d, key.run_id, key.replica_num, key.job_num, sub_id);
    }
    for p in to_create {
        inflight.locked().insert(p.key, None);
        tokio::spawn(create_for_job(d.clone(), inflight.clone(), p));
    }
    Ok(next_due)
}

/// Creates the instance a job waits for; when no offer can be created, the job fails with
/// `failed_to_start_due_to_no_capacity` (its run's `retry` may resubmit it).
async fn create_for_job(d: Daemon, inflight: Inflight, p: Box<Provisioning>) {
    let mut offers = vec![p.offer.clone()];
    offers.extend(p.fallback_offers.iter().cloned());
    match create_from_offers(&d, &p.fleet, &offers).await {
        Ok(inst) => {
            inflight.locked().insert(p.key, Some(inst.id));
        }
        Err(e) => {
            inflight.locked().remove(&p.key);
            fail_for_no_capacity(&d, p.key, format!("no offers could be created: {e}")).await;
        }
    }
}

/// Fails a job still waiting to be placed with `failed_to_start_due_to_no_capacity`.
async fn fail_for_no_capacity(d: &Daemon, key: JobKey, message: String) {
    let now = Timestamp::now();
    let r = d.update_run(key.run_id, |run| {
        if let Some(job) = run.job_mut(key.replica_num, key.job_num) {
            if job.current.status == JobStatus::Submitted {
                finish(
                    &mut job.current,
                    JobStatus::Failed,
                    Some(JobTerminationReason::FailedToStartDueToNoCapacity),
                    Some(message),
                    now,
                );
            }
        }
    });
    if let Err(e) = r {
        warn!("cannot record the failed creation: {e}");
    }
    d.flush_or_warn("a failed creation").await;
}
