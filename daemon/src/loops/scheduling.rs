//! The submitted-jobs loop: wakes on every submission or freed block and applies the scheduler's decisions.

use super::runner;
use crate::lifecycle::finish;
use crate::scheduler::{self, Decision, FleetView, InstanceSlot, JobKey, JobTerms, PendingJob};
use crate::state::Daemon;
use crate::store::StoreError;
use flotilla_protocol::model::{FleetStatus, JobStatus, Run};
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::warn;

/// Jobs for which a new instance is being created: `None` while the backend works, then the
/// instance, until it is provisioned (the job is then placed like any other).
pub type Inflight = Arc<Mutex<HashMap<JobKey, Option<u64>>>>;

pub async fn run(d: Daemon) {
    let inflight: Inflight = Arc::default();
    loop {
        let next_due = match schedule_once(&d, &inflight).await {
            Ok(due) => due,
            Err(e) => {
                warn!("scheduling pass failed: {e}");
                None
            }
        };
        // Submissions and freed blocks wake the loop at once; the timer is for retry backoffs
        // (and a slow safety net).
        let mut sleep = Duration::from_secs(5);
        if let Some(due) = next_due {
            let ms = due.millis().saturating_sub(Timestamp::now().millis());
            sleep = sleep.min(Duration::from_millis(ms.max(10)));
        }
        tokio::select! {
            _ = d.shutdown.cancelled() => break,
            _ = d.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// The scheduler's view of the fleets: instances with the blocks and GPUs that jobs hold.
pub fn fleet_views(d: &Daemon, runs: &[Arc<Run>]) -> Result<Vec<FleetView>, StoreError> {
    let mut usage: HashMap<u64, (u32, Vec<u32>)> = HashMap::new();
    for run in runs.iter().filter(|r| !r.status.is_finished()) {
        for job in &run.jobs {
            let s = &job.current;
            if s.status.is_on_host() || s.status == JobStatus::Provisioning {
                if let Some(id) = s.instance_id {
                    let u = usage.entry(id).or_default();
                    u.0 += s.blocks;
                    u.1.extend(&s.gpus);
                }
            }
        }
    }
    let fleets = d.store.list_fleets()?;
    Ok(fleets
        .into_iter()
        .map(|f| FleetView {
            name: f.name.clone(),
            config: f.configuration,
            terminating: matches!(
                f.status,
                FleetStatus::Terminating | FleetStatus::Terminated | FleetStatus::Failed
            ),
            instances: f
                .instances
                .into_iter()
                .map(|i| {
                    let (busy_blocks, busy_gpus) = usage.remove(&i.id).unwrap_or_default();
                    InstanceSlot {
                        id: i.id,
                        name: i.name,
                        status: i.status,
                        unreachable: i.unreachable,
                        resources: i.resources,
                        total_blocks: i.total_blocks,
                        busy_blocks,
                        busy_gpus,
                        price: i.price,
                        backend: i.backend,
                        region: i.region,
                        created_at: i.created_at,
                        unreachable_since: i.unreachable_since,
                        ..InstanceSlot::default()
                    }
                })
                .collect(),
        })
        .collect())
}

/// One pass; returns when the next retry backoff ends, if any job waits for one.
pub async fn schedule_once(
    d: &Daemon,
    inflight: &Inflight,
) -> Result<Option<Timestamp>, StoreError> {
    let runs = d.store.active_runs();
    // Forget creations whose instance is up (or gone): their jobs are placed normally now.
    let waiting_for_instance: std::collections::HashSet<JobKey> = {
        let mut map = inflight.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, inst| match inst {
            None => true,
            Some(id) => d.store.get_instance(*id).ok().flatten().is_some_and(|i| {
                matches!(
                    i.status,
                    flotilla_protocol::model::InstanceStatus::Pending
                        | flotilla_protocol::model::InstanceStatus::Provisioning
                )
            }),
        });
        map.keys().copied().collect()
    };
    let now = Timestamp::now();
    let mut next_due: Option<Timestamp> = None;
    let mut pending = Vec::new();
    let mut subs: HashMap<JobKey, u64> = HashMap::new();
    for run in runs.iter().filter(|r| !r.status.is_finished()) {
        let common = run.configuration.common();
        for job in &run.jobs {
            if job.current.status != JobStatus::Submitted || job.current.stop.is_some() {
                continue;
            }
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
                requirements: common.resources.clone(),
                fleets: common.fleets.clone(),
                max_price: common.max_price,
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
    let fleets = fleet_views(d, &runs)?;
    let decisions = scheduler::schedule_with(&pending, &fleets, &d.backends, now);
    let mut to_create = Vec::new();
    let mut started = Vec::new();
    for decision in decisions {
        let key = decision.key();
        let Some(&sub_id) = subs.get(&key) else {
            continue;
        };
        let host = match &decision {
            Decision::Place(p) => d.host_for(Some(p.instance_id)),
            _ => d.local.clone(),
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
    d.store.flush().await?;
    for (key, sub_id) in started {
        runner::spawn(d, key.run_id, key.replica_num, key.job_num, sub_id);
    }
    for p in to_create {
        inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.key, None);
        tokio::spawn(create_for_job(d.clone(), inflight.clone(), p));
    }
    Ok(next_due)
}

/// Creates the instance a job waits for; when no offer can be created, the job fails with
/// `failed_to_start_due_to_no_capacity` (its run's `retry` may resubmit it).
async fn create_for_job(d: Daemon, inflight: Inflight, p: Box<scheduler::Provisioning>) {
    let mut offers = vec![p.offer.clone()];
    offers.extend(p.fallback_offers.iter().cloned());
    match super::fleets::create_from_offers(&d, &p.fleet, &offers).await {
        Ok(inst) => {
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p.key, Some(inst.id));
        }
        Err(e) => {
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&p.key);
            let now = Timestamp::now();
            let r = d.update_run(p.key.run_id, |run| {
                if let Some(job) = super::runner::find_job(run, p.key.replica_num, p.key.job_num) {
                    if job.current.status == JobStatus::Submitted {
                        finish(
                            &mut job.current,
                            JobStatus::Failed,
                            Some(flotilla_protocol::model::JobTerminationReason::FailedToStartDueToNoCapacity),
                            Some(format!("no offers could be created: {e}")),
                            now,
                        );
                    }
                }
            });
            if let Err(e) = r {
                warn!("cannot record the failed creation: {e}");
            }
            let _ = d.store.flush().await;
        }
    }
}
