//! Operations layer: dstack's `utilization_policy`. After each GPU sampling pass, a running job
//! of a run with a policy whose GPUs (one of them suffices) stayed below `min_gpu_utilization`
//! percent in every sample of the last `time_window` is stopped with
//! `terminated_due_to_utilization_policy` and dstack's message; the run ends `failed`.

use super::stops::carry_out_stops;
use crate::gpu_samples::{idle_below, SAMPLE_INTERVAL_SECS};
use crate::handle::Daemon;
use crate::lifecycle::stop_for_utilization;
use flotilla_protocol::model::{Job, JobStatus, Run};
use flotilla_protocol::Timestamp;
use tracing::{info, warn};

/// Stops the jobs that idled for their run's whole window.
pub async fn enforce(d: &Daemon, now: Timestamp) {
    let scale = d.config().utilization_window_scale.max(0.0);
    for run in d.store().active_runs() {
        let Some(policy) = run.configuration.common().policy.utilization_policy.clone() else {
            continue;
        };
        let window_ms = (policy.time_window as f64 * 1000.0 * scale) as u64;
        // dstack's minute of slack; never under two sampling intervals (a shortened window
        // would otherwise never hold a sample close enough to its start).
        let slack_ms = ((60_000.0 * scale) as u64).max(2 * SAMPLE_INTERVAL_SECS * 1000);
        for job in run.jobs.iter().filter(|j| is_watched(j)) {
            if !idle(d, job, policy.min_gpu_utilization, window_ms, slack_ms, now) {
                continue;
            }
            let message = format!(
                "The job GPU utilization below {}% for {} seconds",
                policy.min_gpu_utilization, policy.time_window
            );
            stop(d, &run, job, &message, now).await;
        }
    }
}

/// A running job with GPUs on an instance.
fn is_watched(job: &Job) -> bool {
    let sub = &job.current;
    sub.status == JobStatus::Running
        && sub.stop.is_none()
        && !sub.gpus.is_empty()
        && sub.instance.is_some()
        && sub.fleet.is_some()
}

/// Whether the job's GPUs idled for the whole window (samples since it started only).
fn idle(d: &Daemon, job: &Job, min: u32, window_ms: u64, slack_ms: u64, now: Timestamp) -> bool {
    let sub = &job.current;
    let (Some(fleet), Some(instance)) = (&sub.fleet, &sub.instance) else {
        return false;
    };
    let after = Timestamp(now.millis().saturating_sub(window_ms));
    let since = sub
        .started_at
        .map_or(after, |s| Timestamp(s.millis().max(after.millis())));
    let label = format!("{fleet}/{instance}");
    let window_secs = window_ms.div_ceil(1000) + 1;
    let series: Vec<Vec<_>> = d
        .gpu_samples()
        .get(Some(&label), window_secs, now)
        .into_iter()
        .filter(|s| sub.gpus.contains(&s.gpu))
        .map(|s| {
            s.samples
                .into_iter()
                .filter(|x| x.time.millis() >= since.millis())
                .collect()
        })
        .collect();
    if series.len() != sub.gpus.len() {
        return false;
    }
    idle_below(min, &series, after, slack_ms) == Some(true)
}

async fn stop(d: &Daemon, run: &Run, job: &Job, message: &str, now: Timestamp) {
    let (replica, job_num, sub_id) = (job.replica_num, job.job_num, job.current.id);
    let updated = d.update_run(run.id, |run| {
        let current = run
            .job(replica, job_num)
            .is_some_and(|j| j.current.id == sub_id);
        current && stop_for_utilization(run, replica, job_num, message, now)
    });
    match updated {
        Ok((_, signal)) => {
            info!(run = %run.name, job = job_num, "{message}: stopping the run (utilization_policy)");
            d.flush_or_warn("a utilization policy stop").await;
            if signal {
                carry_out_stops(d, run.id).await;
            }
        }
        Err(e) => warn!(
            "run {}: cannot stop it for its utilization policy: {e}",
            run.name
        ),
    }
}
