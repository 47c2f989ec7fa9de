//! Driver layer: the timers loop. `max_duration`, the SIGKILL that follows a graceful stop
//! after `stop_duration`, and stops not yet signalled.

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::lifecycle::request_job_stop;
use crate::ops::stops::carry_out_stops;
use crate::presence::Attendance;
use flotilla_protocol::config::RunConfiguration;
use flotilla_protocol::model::{JobStatus, JobTerminationReason, Run};
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
        let inactive = inactive_since(d, run, now);
        if let Some(idle) = inactive {
            let stop_duration = common.policy.stop_duration;
            let r = d.update_run(run.id, |run| {
                for j in run.jobs.iter_mut() {
                    if j.current.stop.is_none() && j.current.status == JobStatus::Running {
                        request_job_stop(
                            j,
                            JobTerminationReason::InactivityDurationExceeded,
                            false,
                            stop_duration,
                            now,
                        );
                    }
                }
                run.status_message = Some(format!(
                    "no attached client or SSH session for {idle}s (inactivity_duration)"
                ));
            });
            if let Err(e) = r {
                warn!("timers: cannot stop run {}: {e}", run.name);
            }
            d.flush_or_warn("a stop past inactivity_duration").await;
        }
        let needs_stop = needs_stop || inactive.is_some();
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

/// A running dev environment with `inactivity_duration` that nobody has attached to for that
/// long (counted from the last client leaving, or from the job's start or the daemon's,
/// whichever is later): how many seconds it has been idle.
fn inactive_since(d: &Daemon, run: &Run, now: Timestamp) -> Option<u64> {
    let RunConfiguration::DevEnvironment(dev) = &run.configuration else {
        return None;
    };
    let limit = dev.inactivity_duration?;
    let job = run
        .jobs
        .iter()
        .find(|j| j.current.status == JobStatus::Running && j.current.stop.is_none())?;
    let idle_from = match d.presence().attendance(run.id) {
        Attendance::Attached => return None,
        Attendance::IdleSince(t) => t,
        Attendance::Never => job.current.started_at?.max(d.started_at()),
    };
    let idle = idle_from.secs_until(now);
    (idle >= limit).then_some(idle)
}
