//! Timers: `max_duration`, the SIGKILL that follows a graceful stop after `stop_duration`, and stops not yet signalled.

use super::runner::find_job;
use crate::hosts::supervisor;
use crate::lifecycle::request_job_stop;
use crate::state::Daemon;
use flotilla_protocol::model::{JobStatus, JobTerminationReason};
use flotilla_protocol::Timestamp;
use std::time::Duration;
use tracing::warn;

pub async fn run(d: Daemon) {
    loop {
        tick(&d).await;
        tokio::select! {
            _ = d.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn tick(d: &Daemon) {
    let runs = d.store.active_runs();
    let now = Timestamp::now();
    for run in runs.iter().filter(|r| !r.status.is_finished()) {
        let common = run.configuration.common();
        let over = |started: Option<Timestamp>| {
            common
                .max_duration
                .zip(started)
                .is_some_and(|(max, s)| s.plus_secs(max) <= now)
        };
        let needs_stop = run.jobs.iter().any(|j| {
            j.current.stop.is_none()
                && j.current.status == JobStatus::Running
                && over(j.current.started_at)
        });
        if needs_stop {
            let stop_duration = common.stop_duration;
            let r = d.update_run(run.id, |run| {
                for j in run.jobs.iter_mut() {
                    if j.current.stop.is_none()
                        && j.current.status == JobStatus::Running
                        && over(j.current.started_at)
                    {
                        request_job_stop(
                            j,
                            JobTerminationReason::MaxDurationExceeded,
                            false,
                            stop_duration,
                            now,
                        );
                    }
                }
            });
            if let Err(e) = r {
                warn!("timers: cannot stop run {}: {e}", run.name);
            }
            let _ = d.store.flush().await;
        }
        let pending_signal = run.jobs.iter().any(|j| {
            j.current
                .stop
                .as_ref()
                .is_some_and(|s| !s.signalled || (!s.killed && s.kill_at.is_some_and(|k| k <= now)))
        });
        if needs_stop || pending_signal {
            carry_out_stops(d, run.id).await;
        }
    }
}

/// Sends the signals that the run's stop requests call for: TERM once, KILL when due.
pub async fn carry_out_stops(d: &Daemon, run_id: u64) {
    let Ok(Some(run)) = d.store.get_run(run_id) else {
        return;
    };
    let now = Timestamp::now();
    for job in &run.jobs {
        let sub = &job.current;
        let Some(stop) = &sub.stop else { continue };
        if !sub.status.is_on_host() {
            continue;
        }
        let kill_due = stop.kill_at.is_some_and(|k| k <= now);
        if stop.signalled && (stop.killed || !kill_due) {
            continue;
        }
        let Some(job_dir) = sub.job_dir.clone() else {
            continue;
        };
        let host = d.host_for(sub.instance_id);
        let signal = if kill_due { "KILL" } else { "TERM" };
        if let Err(e) = supervisor::signal(&host, &job_dir, signal).await {
            warn!("cannot signal job {}/{}: {e}", run.name, job.job_num);
            continue;
        }
        let (replica, job_num, sub_id) = (job.replica_num, job.job_num, sub.id);
        let r = d.update_run(run_id, |run| {
            if let Some(j) = find_job(run, replica, job_num) {
                if j.current.id == sub_id {
                    if let Some(s) = j.current.stop.as_mut() {
                        s.signalled = true;
                        s.killed |= kill_due;
                    }
                }
            }
        });
        if let Err(e) = r {
            warn!("cannot record the signal to {}: {e}", run.name);
        }
    }
    let _ = d.store.flush().await;
}
