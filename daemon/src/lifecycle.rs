//! Handle layer, pure: the lifecycle rules. A run's status from its jobs (SPEC section 4), retries,
//! stop requests, how a job's process ended, and where a job sits in its run. No I/O and no
//! clock: `now` is passed in.

use crate::scheduler::{retry_decision, retry_event, RetryDecision};
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
    let jobs = &run.jobs;
    let all_finished = jobs.iter().all(|j| j.current.status.is_finished());
    let failed = jobs.iter().find(|j| j.current.status == JobStatus::Failed);
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
        if all_finished {
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
    let Some(retry) = run.configuration.common().retry.clone() else {
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
    } else {
        JobStatus::Terminated
    }
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
        finish(
            sub,
            final_status(stop.reason, stop.abort),
            Some(stop.reason),
            None,
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
    JobSubmission {
        id,
        submission_num,
        status: JobStatus::Submitted,
        termination_reason: None,
        termination_message: None,
        exit_code: None,
        instance: None,
        instance_id: None,
        fleet: None,
        gpus: Vec::new(),
        blocks: 0,
        price: None,
        submitted_at: now,
        started_at: None,
        finished_at: None,
        waiting_reason: None,
        job_dir: None,
        retry_at: None,
        stop: None,
    }
}

/// The job `replica`/`job_num` of a run.
pub fn find_job(run: &Run, replica: u32, job_num: u32) -> Option<&Job> {
    run.jobs
        .iter()
        .find(|j| j.replica_num == replica && j.job_num == job_num)
}

/// The job `replica`/`job_num` of a run, to change.
pub fn find_job_mut(run: &mut Run, replica: u32, job_num: u32) -> Option<&mut Job> {
    run.jobs
        .iter_mut()
        .find(|j| j.replica_num == replica && j.job_num == job_num)
}
