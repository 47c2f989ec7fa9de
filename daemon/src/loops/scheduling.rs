//! The submitted-jobs loop: wakes on every submission or freed block and applies the scheduler's decisions.

use super::runner;
use crate::lifecycle::finish;
use crate::scheduler::{self, Decision, FleetView, InstanceSlot, JobKey, PendingJob};
use crate::state::Daemon;
use crate::store::StoreError;
use flotilla_protocol::model::{JobStatus, Run};
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

pub async fn run(d: Daemon) {
    loop {
        let next_due = match schedule_once(&d).await {
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
                    }
                })
                .collect(),
        })
        .collect())
}

/// One pass; returns when the next retry backoff ends, if any job waits for one.
pub async fn schedule_once(d: &Daemon) -> Result<Option<Timestamp>, StoreError> {
    let runs = d.store.active_runs();
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
            subs.insert(key, job.current.id);
            pending.push(PendingJob {
                key,
                label: format!("{}/{}/{}", run.name, job.replica_num, job.job_num),
                priority: common.priority,
                submitted_at: job.current.submitted_at,
                requirements: common.resources.clone(),
                fleets: common.fleets.clone(),
                max_price: common.max_price,
            });
        }
    }
    if pending.is_empty() {
        return Ok(next_due);
    }
    let fleets = fleet_views(d, &runs)?;
    let decisions = scheduler::schedule(&pending, &fleets, now);
    let mut started = Vec::new();
    for decision in decisions {
        let key = match &decision {
            Decision::Place(p) => p.key,
            Decision::Wait { key, .. } | Decision::Fail { key, .. } => *key,
        };
        let Some(&sub_id) = subs.get(&key) else {
            continue;
        };
        let host = match &decision {
            Decision::Place(p) => d.host_for(Some(p.instance_id)),
            _ => d.local.clone(),
        };
        let (_, placed) = d.update_run(key.run_id, |run| {
            let Some(job) = run
                .jobs
                .iter_mut()
                .find(|j| j.replica_num == key.replica_num && j.job_num == key.job_num)
            else {
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
    Ok(next_due)
}
