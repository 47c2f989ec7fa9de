//! Driver layer: the timers loop. `max_duration`, the SIGKILL that follows a graceful stop
//! after `stop_duration`, and stops not yet signalled.

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::lifecycle::request_job_stop;
use crate::ops::stops::carry_out_stops;
use flotilla_protocol::model::{JobStatus, JobTerminationReason};
use flotilla_protocol::Timestamp;
use std::time::Duration;
use tracing::warn;

pub struct Timers;

impl Loop for Timers {
    fn name(&self) -> &'static str {
        "timers"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Timer
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        tick(d).await;
        Duration::from_secs(1)
    }
}

async fn tick(d: &Daemon) {
    let runs = d.store().active_runs();
    let now = Timestamp::now();
    for run in runs.iter().filter(|r| !r.status.is_finished()) {
        let common = run.configuration.common();
        let over = |started: Option<Timestamp>| {
            common
                .policy
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
            let stop_duration = common.policy.stop_duration;
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
            d.flush_or_warn("a stop past max_duration").await;
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
