//! Handle layer, pure: the lifecycle rules. A run's status from its jobs (SPEC section 4), retries,
//! stop requests, how a job's process ended, and where a job sits in its run. No I/O and no
//! clock: `now` is passed in.

use crate::scheduler::{retry_decision, retry_event, RetryDecision};
use flotilla_protocol::config::cron::next_start;
use flotilla_protocol::config::RunConfiguration;
use flotilla_protocol::model::{
    Job, JobStatus, JobSubmission, JobTerminationReason, Run, RunStatus, RunTerminationReason,
    StopRequest,
};
use flotilla_protocol::Timestamp;
use std::collections::HashSet;

/// Sets the run's status (and termination reason, finish time) from its jobs.
pub fn derive_run_status(run: &mut Run, now: Timestamp) {
    if run.status.is_finished() {
        return;
    }
    let service = service_min(run);
    // A service's replicas scaled down (stopping or stopped) are no part of its status.
    let jobs: Vec<&Job> = run
        .jobs
        .iter()
        .filter(|j| service.is_none() || !scaled_down(j))
        .collect();
    let all_finished = jobs.iter().all(|j| j.current.status.is_finished());
    let failed = jobs
        .iter()
        .find(|j| j.current.status == JobStatus::Failed)
        .filter(|_| service.is_none_or(|min| failure_ends_service(run, min)));
    if let Some(f) = failed {
        if run.termination_reason.is_none() {
            run.termination_reason = Some(RunTerminationReason::JobFailed);
            run.status_message = Some(format!(
                "job {}/{} failed: {}",
                f.replica_num,
                f.job_num,
                f.current
                    .termination_message
                    .clone()
                    .or(f.current.termination_reason.map(|r| r.to_string()))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(reason) = run.termination_reason {
        if run.jobs.iter().all(|j| j.current.status.is_finished()) {
            run.status = match reason {
                RunTerminationReason::AllJobsDone => RunStatus::Done,
                RunTerminationReason::JobFailed
                | RunTerminationReason::RetryLimitExceeded
                | RunTerminationReason::ServerError => RunStatus::Failed,
                _ => RunStatus::Terminated,
            };
            run.finished_at = Some(now);
        } else {
            run.status = RunStatus::Terminating;
        }
        return;
    }
    let none_done = !jobs.iter().any(|j| j.current.status == JobStatus::Done);
    let idle = run.jobs.is_empty() || jobs.len() < run.jobs.len() || failed_replicas(&jobs);
    if all_finished && service.is_some() && idle && none_done {
        // A service scaled to zero, or whose failed replicas wait for their replacement (or
        // for a request, with `replicas: 0..N`): pending, as dstack shows it.
        run.status = RunStatus::Pending;
        return;
    }
    if all_finished {
        if jobs.iter().all(|j| j.current.status == JobStatus::Done) {
            run.status = RunStatus::Done;
            run.termination_reason = Some(RunTerminationReason::AllJobsDone);
        } else {
            // Jobs ended without a failure and without a stop of the run: a job-level stop.
            let reason = jobs
                .iter()
                .find_map(|j| j.current.termination_reason)
                .unwrap_or(JobTerminationReason::TerminatedByUser);
            run.termination_reason = Some(match reason {
                JobTerminationReason::MaxDurationExceeded => {
                    RunTerminationReason::MaxDurationExceeded
                }
                JobTerminationReason::AbortedByUser => RunTerminationReason::AbortedByUser,
                _ => RunTerminationReason::StoppedByUser,
            });
            run.status = RunStatus::Terminated;
        }
        run.finished_at = Some(now);
        return;
    }
    let any = |s: &[JobStatus]| jobs.iter().any(|j| s.contains(&j.current.status));
    let retrying = jobs.iter().any(|j| {
        j.current.status == JobStatus::Submitted && j.current.retry_at.is_some_and(|t| t > now)
    });
    run.status = if any(&[JobStatus::Running]) {
        RunStatus::Running
    } else if any(&[JobStatus::Provisioning, JobStatus::Pulling]) {
        RunStatus::Provisioning
    } else if any(&[JobStatus::Terminating]) {
        RunStatus::Terminating
    } else if retrying {
        RunStatus::Pending
    } else {
        RunStatus::Submitted
    };
}

/// A service's minimum replica count (the sum over its groups); `None` for other runs.
fn service_min(run: &Run) -> Option<u32> {
    match &run.configuration {
        RunConfiguration::Service(s) => Some(s.replicas.min.unwrap_or(0)),
        _ => None,
    }
}

/// A service replica stopped by its scaler (or a rolling update).
fn scaled_down(job: &Job) -> bool {
    let reason = job
        .current
        .stop
        .as_ref()
        .map(|s| s.reason)
        .or(job.current.termination_reason);
    reason == Some(JobTerminationReason::ScaledDown)
}

fn failed_replicas(jobs: &[&Job]) -> bool {
    jobs.iter().any(|j| j.current.status == JobStatus::Failed)
}

/// Whether a failed replica ends its service: only when no other replica runs to keep serving
/// and the service must keep some (`min` above 0). Otherwise the replicas loop replaces it
/// (dstack's issue #2660: one failed replica must not stop the healthy ones).
fn failure_ends_service(run: &Run, min: u32) -> bool {
    let serving = run
        .jobs
        .iter()
        .any(|j| j.current.status == JobStatus::Running && j.current.stop.is_none());
    !serving && min > 0
}

/// Whether a failed job of `run` ends it (its other jobs are stopped): always for a task or a
/// dev environment; for a service only when nothing else serves (see [`derive_run_status`]).
pub fn failure_stops_run(run: &Run) -> bool {
    service_min(run).is_none_or(|min| failure_ends_service(run, min))
}

/// Jobs that failed in this change with a reason the run's `retry` covers get a new submission
/// after the backoff; past the retry `duration`, the run ends with `retry_limit_exceeded`.
/// `was_active` holds the submissions that were unfinished before the change.
pub fn resubmit_failed(
    run: &mut Run,
    was_active: &HashSet<u64>,
    now: Timestamp,
    delay_scale: f64,
    mut next_id: impl FnMut() -> Option<u64>,
) {
    if run.termination_reason.is_some() {
        return;
    }
    let Some(retry) = run.configuration.common().profile.retry.clone() else {
        return;
    };
    for i in 0..run.jobs.len() {
        let sub = &run.jobs[i].current;
        if sub.status != JobStatus::Failed || !was_active.contains(&sub.id) {
            continue;
        }
        let Some(event) = sub.termination_reason.and_then(retry_event) else {
            continue;
        };
        let attempt = sub.submission_num;
        let started = run.retry_window_started_at.unwrap_or(now);
        let at = match retry_decision(Some(&retry), event, attempt, started, now) {
            RetryDecision::NotRetried => continue,
            // A service keeps its other replicas: the run's status decides whether it goes on.
            RetryDecision::LimitExceeded if service_min(run).is_some() => continue,
            RetryDecision::LimitExceeded => {
                run.termination_reason = Some(RunTerminationReason::RetryLimitExceeded);
                run.status_message =
                    Some(format!("retry duration of {}s exceeded", retry.duration));
                return;
            }
            RetryDecision::Resubmit { at } => at,
        };
        run.retry_window_started_at = Some(started);
        let Some(id) = next_id() else { return };
        let job = &mut run.jobs[i];
        let delay = at.millis().saturating_sub(now.millis()) as f64 * delay_scale.max(0.0);
        let mut fresh = new_submission(id, attempt + 1, now);
        fresh.retry_at = Some(Timestamp(now.millis() + delay as u64));
        let old = std::mem::replace(&mut job.current, fresh);
        job.previous_submissions.push(old);
    }
}

/// Asks a job to stop: a job not yet on a host ends at once; one on a host goes `terminating`
/// with a stop request that the runner carries out. Returns true when the host must be signalled.
pub fn request_job_stop(
    job: &mut Job,
    reason: JobTerminationReason,
    abort: bool,
    stop_duration: Option<u64>,
    now: Timestamp,
) -> bool {
    let sub = &mut job.current;
    if sub.status.is_finished() {
        return false;
    }
    let on_host = sub.status.is_on_host() || sub.status == JobStatus::Provisioning;
    if !on_host {
        finish(sub, final_status(reason, abort), Some(reason), None, now);
        return false;
    }
    let kill_at = if abort {
        Some(now)
    } else {
        stop_duration.map(|s| now.plus_secs(s))
    };
    match &mut sub.stop {
        // A second, harsher stop (an abort after a stop) brings the kill forward.
        Some(stop) => {
            if abort && !stop.abort {
                stop.abort = true;
                stop.kill_at = Some(now);
                stop.reason = reason;
                return true;
            }
            false
        }
        None => {
            sub.stop = Some(StopRequest {
                requested_at: now,
                abort,
                kill_at,
                reason,
                signalled: false,
                killed: false,
            });
            if sub.status != JobStatus::Provisioning {
                sub.status = JobStatus::Terminating;
            }
            true
        }
    }
}

fn final_status(reason: JobTerminationReason, abort: bool) -> JobStatus {
    if abort || reason == JobTerminationReason::AbortedByUser {
        JobStatus::Aborted
    } else if reason == JobTerminationReason::DoneByRunner {
        // The workers of a `stop_criteria: master-done` run, stopped because the master is done.
        JobStatus::Done
    } else {
        JobStatus::Terminated
    }
}

/// `stop_criteria: master-done`: once the master (job 0) of a replica is done, the run ends
/// with `all_jobs_done` and its other jobs are stopped and end `done`, as dstack does. Returns
/// true when a host must be signalled.
pub fn stop_on_master_done(run: &mut Run, replica: u32, now: Timestamp) -> bool {
    use flotilla_protocol::config::StopCriteria;
    if run.configuration.common().policy.stop_criteria != Some(StopCriteria::MasterDone)
        || run.termination_reason.is_some()
    {
        return false;
    }
    let master_done = run
        .job(replica, 0)
        .is_some_and(|j| j.current.status == JobStatus::Done);
    if !master_done {
        return false;
    }
    run.termination_reason = Some(RunTerminationReason::AllJobsDone);
    let stop_duration = run.configuration.common().policy.stop_duration;
    let mut signal = false;
    for job in run.jobs.iter_mut() {
        signal |= request_job_stop(
            job,
            JobTerminationReason::DoneByRunner,
            false,
            stop_duration,
            now,
        );
    }
    signal
}

/// dstack's `startup_order`: why job `job_num` of `replica` must wait before it starts, or
/// `None`. With `master-first` a worker waits until the master (job 0) runs; with
/// `workers-first` the master waits until every worker runs. A node that already ended has
/// run: nobody waits for it (dstack would wait forever).
pub fn startup_wait(run: &Run, replica: u32, job_num: u32) -> Option<&'static str> {
    use flotilla_protocol::config::StartupOrder;
    let started =
        |j: &Job| j.current.status == JobStatus::Running || j.current.status.is_finished();
    match run.configuration.common().policy.startup_order? {
        StartupOrder::MasterFirst if job_num != 0 => {
            let master = run.job(replica, 0)?;
            (!started(master))
                .then_some("waiting for the master node to run (startup_order: master-first)")
        }
        StartupOrder::WorkersFirst if job_num == 0 => run
            .jobs
            .iter()
            .any(|j| j.replica_num == replica && j.job_num != 0 && !started(j))
            .then_some("waiting for the worker nodes to run (startup_order: workers-first)"),
        _ => None,
    }
}

/// `utilization_policy`: job `job_num` of `replica` idled below the threshold for the window.
/// It is stopped with `terminated_due_to_utilization_policy` and dstack's message, and the run
/// ends `failed` (`job_failed`: dstack does not retry it) with the other jobs stopped by the
/// server. Returns true when a host must be signalled.
pub fn stop_for_utilization(
    run: &mut Run,
    replica: u32,
    job_num: u32,
    message: &str,
    now: Timestamp,
) -> bool {
    if run.termination_reason.is_some() {
        return false;
    }
    let stop_duration = run.configuration.common().policy.stop_duration;
    let Some(job) = run.job_mut(replica, job_num) else {
        return false;
    };
    if job.current.status != JobStatus::Running {
        return false;
    }
    let mut signal = request_job_stop(
        job,
        JobTerminationReason::TerminatedDueToUtilizationPolicy,
        false,
        stop_duration,
        now,
    );
    job.current.termination_message = Some(message.to_string());
    run.termination_reason = Some(RunTerminationReason::JobFailed);
    run.status_message = Some(format!("job {replica}/{job_num}: {message}"));
    for other in run.jobs.iter_mut() {
        signal |= request_job_stop(
            other,
            JobTerminationReason::TerminatedByServer,
            false,
            stop_duration,
            now,
        );
    }
    signal
}

pub fn finish(
    sub: &mut JobSubmission,
    status: JobStatus,
    reason: Option<JobTerminationReason>,
    message: Option<String>,
    now: Timestamp,
) {
    sub.status = status;
    sub.termination_reason = reason;
    sub.termination_message = message;
    sub.finished_at = Some(now);
    sub.waiting_reason = None;
}

/// How the job's process ended, in job terms: a stop asked for wins over the exit code.
pub fn finish_from_exit(sub: &mut JobSubmission, exit: Option<i32>, now: Timestamp) {
    sub.exit_code = exit;
    if let Some(stop) = sub.stop.clone() {
        // A message given with the stop (the utilization policy's) stays.
        let message = sub.termination_message.clone();
        finish(
            sub,
            final_status(stop.reason, stop.abort),
            Some(stop.reason),
            message,
            now,
        );
        return;
    }
    match exit {
        Some(0) => finish(
            sub,
            JobStatus::Done,
            Some(JobTerminationReason::DoneByRunner),
            None,
            now,
        ),
        Some(code) => finish(
            sub,
            JobStatus::Failed,
            Some(JobTerminationReason::ContainerExitedWithError),
            Some(format!("exit code {code}")),
            now,
        ),
        None => finish(
            sub,
            JobStatus::Failed,
            Some(JobTerminationReason::ExecutorError),
            Some("the job's process disappeared without an exit code".into()),
            now,
        ),
    }
}

/// A fresh submission of a job, waiting to be placed.
pub fn new_submission(id: u64, submission_num: u32, now: Timestamp) -> JobSubmission {
    JobSubmission::submitted(id, submission_num, now)
}

/// A submission of a run with `schedule` waits for the run's start at `at`.
pub fn scheduled_wait(sub: &mut JobSubmission, at: Timestamp) {
    sub.retry_at = Some(at);
    sub.waiting_reason = Some(format!("scheduled: starts at {at}"));
}

/// A run with `schedule` that just ended, other than by a user's stop or abort, waits for its
/// next start with a new submission of each job, as dstack does (back to `pending` with the
/// next `next_triggered_at`). `next_id` gives the submissions' ids.
pub fn reschedule(run: &mut Run, now: Timestamp, mut next_id: impl FnMut() -> Option<u64>) {
    let Some(schedule) = &run.configuration.common().policy.schedule else {
        return;
    };
    if !run.status.is_finished()
        || matches!(
            run.termination_reason,
            Some(RunTerminationReason::StoppedByUser | RunTerminationReason::AbortedByUser)
        )
    {
        return;
    }
    let Some(at) = next_start(&schedule.cron, now) else {
        return;
    };
    let mut fresh = Vec::with_capacity(run.jobs.len());
    for job in &run.jobs {
        let Some(id) = next_id() else { return };
        let mut sub = new_submission(id, job.current.submission_num + 1, now);
        scheduled_wait(&mut sub, at);
        fresh.push(sub);
    }
    for (job, sub) in run.jobs.iter_mut().zip(fresh) {
        let old = std::mem::replace(&mut job.current, sub);
        job.previous_submissions.push(old);
    }
    run.status = RunStatus::Pending;
    run.termination_reason = None;
    run.status_message = None;
    run.finished_at = None;
    run.retry_window_started_at = None;
    run.next_triggered_at = Some(at);
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
