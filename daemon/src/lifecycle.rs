//! Handle layer, pure: the lifecycle rules. A run's status from its jobs (SPEC section 4), retries,
//! stop requests, how a job's process ended, and where a job sits in its run. No I/O and no
//! clock: `now` is passed in.

use crate::scheduler::{retry_decision, retry_event, RetryDecision};
use flotilla_protocol::config::cron::next_start;
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
mod tests {
    use super::*;
    use flotilla_protocol::config::parse_configuration;

    /// The fixed clock of these tests.
    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn run_of(yaml: &str, jobs: u32) -> Run {
        Run {
            id: 1,
            name: "calm-owl-1".into(),
            user: "alice".into(),
            uid: 1000,
            status: RunStatus::Submitted,
            termination_reason: None,
            status_message: None,
            submitted_at: NOW,
            finished_at: None,
            configuration_type: "task".into(),
            configuration_path: None,
            configuration: parse_configuration("t.yml", yaml)
                .expect("a valid task")
                .as_run()
                .expect("a run configuration"),
            caller_env: Default::default(),
            retry_window_started_at: None,
            service: None,
            next_triggered_at: None,
            jobs: (0..jobs)
                .map(|j| Job {
                    replica_num: 0,
                    job_num: j,
                    job_name: format!("calm-owl-1-{j}-0"),
                    current: new_submission(10 + u64::from(j), 0, NOW),
                    previous_submissions: Vec::new(),
                })
                .collect(),
        }
    }

    fn task(jobs: u32) -> Run {
        run_of("type: task\ncommands: [\"true\"]\n", jobs)
    }

    #[test]
    fn a_run_follows_its_jobs_and_ends_done_when_all_are_done() {
        let mut run = task(2);
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Submitted);
        run.jobs[0].current.status = JobStatus::Provisioning;
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Provisioning);
        run.jobs[1].current.status = JobStatus::Running;
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Running);
        let later = NOW.plus_secs(60);
        for j in run.jobs.iter_mut() {
            finish_from_exit(&mut j.current, Some(0), later);
        }
        derive_run_status(&mut run, later);
        assert_eq!(run.status, RunStatus::Done);
        assert_eq!(
            run.termination_reason,
            Some(RunTerminationReason::AllJobsDone)
        );
        assert_eq!(run.finished_at, Some(later));
        // A finished run stays as it is.
        run.jobs[0].current.status = JobStatus::Running;
        derive_run_status(&mut run, later.plus_secs(1));
        assert_eq!(run.status, RunStatus::Done);
    }

    #[test]
    fn a_failed_job_fails_its_run_once_the_others_end() {
        let mut run = task(2);
        run.jobs[1].current.status = JobStatus::Running;
        finish_from_exit(&mut run.jobs[0].current, Some(3), NOW);
        assert_eq!(run.jobs[0].current.status, JobStatus::Failed);
        assert_eq!(
            run.jobs[0].current.termination_reason,
            Some(JobTerminationReason::ContainerExitedWithError)
        );
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Terminating, "job 1 still runs");
        assert_eq!(
            run.status_message.as_deref(),
            Some("job 0/0 failed: exit code 3")
        );
        finish_from_exit(&mut run.jobs[1].current, Some(0), NOW);
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(
            run.termination_reason,
            Some(RunTerminationReason::JobFailed)
        );
    }

    #[test]
    fn a_job_waiting_for_its_retry_makes_the_run_pending() {
        let mut run = task(1);
        run.jobs[0].current.retry_at = Some(NOW.plus_secs(30));
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Pending);
        derive_run_status(&mut run, NOW.plus_secs(31));
        assert_eq!(run.status, RunStatus::Submitted, "the backoff is over");
    }

    #[test]
    fn a_process_gone_without_an_exit_code_is_an_executor_error() {
        let mut sub = new_submission(1, 0, NOW);
        finish_from_exit(&mut sub, None, NOW);
        assert_eq!(sub.status, JobStatus::Failed);
        assert_eq!(
            sub.termination_reason,
            Some(JobTerminationReason::ExecutorError)
        );
        assert_eq!(sub.finished_at, Some(NOW));
    }

    #[test]
    fn stopping_a_job_not_on_a_host_ends_it_at_once() {
        let mut run = task(1);
        let signal = request_job_stop(
            &mut run.jobs[0],
            JobTerminationReason::TerminatedByUser,
            false,
            Some(30),
            NOW,
        );
        assert!(!signal, "nothing runs on a host");
        let sub = &run.jobs[0].current;
        assert_eq!(sub.status, JobStatus::Terminated);
        assert_eq!(sub.finished_at, Some(NOW));
        assert!(sub.stop.is_none());
    }

    #[test]
    fn stopping_a_running_job_asks_the_host_and_an_abort_brings_the_kill_forward() {
        let mut run = task(1);
        run.jobs[0].current.status = JobStatus::Running;
        let signal = request_job_stop(
            &mut run.jobs[0],
            JobTerminationReason::TerminatedByUser,
            false,
            Some(30),
            NOW,
        );
        assert!(signal);
        let sub = &run.jobs[0].current;
        assert_eq!(sub.status, JobStatus::Terminating);
        let stop = sub.stop.as_ref().expect("a stop request");
        assert_eq!(stop.kill_at, Some(NOW.plus_secs(30)));
        assert!(!stop.signalled && !stop.abort);
        // The same stop again changes nothing.
        assert!(!request_job_stop(
            &mut run.jobs[0],
            JobTerminationReason::TerminatedByUser,
            false,
            Some(30),
            NOW.plus_secs(1),
        ));
        let later = NOW.plus_secs(5);
        assert!(request_job_stop(
            &mut run.jobs[0],
            JobTerminationReason::AbortedByUser,
            true,
            Some(30),
            later,
        ));
        let stop = run.jobs[0].current.stop.clone().expect("a stop request");
        assert_eq!(stop.kill_at, Some(later));
        assert!(stop.abort);
        // The process then exits: the stop decides how the job ended, not the exit code.
        finish_from_exit(&mut run.jobs[0].current, Some(137), later);
        assert_eq!(run.jobs[0].current.status, JobStatus::Aborted);
        assert_eq!(run.jobs[0].current.exit_code, Some(137));
    }

    #[test]
    fn a_failed_job_with_retry_gets_a_new_submission_after_the_backoff() {
        let mut run = run_of(
            "type: task\ncommands: [\"true\"]\nretry: {on_events: [error], duration: 1h}\n",
            1,
        );
        run.jobs[0].current.status = JobStatus::Running;
        let was_active: HashSet<u64> = [run.jobs[0].current.id].into();
        finish_from_exit(&mut run.jobs[0].current, Some(1), NOW);
        let mut ids = 100..;
        resubmit_failed(&mut run, &was_active, NOW, 1.0, || ids.next());
        let job = &run.jobs[0];
        assert_eq!(job.previous_submissions.len(), 1);
        assert_eq!(job.current.id, 100);
        assert_eq!(job.current.submission_num, 1);
        assert_eq!(job.current.status, JobStatus::Submitted);
        assert!(job.current.retry_at.is_some_and(|t| t > NOW));
        assert_eq!(run.retry_window_started_at, Some(NOW));
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Pending);
    }

    #[test]
    fn a_failure_past_the_retry_duration_ends_the_run() {
        let mut run = run_of(
            "type: task\ncommands: [\"true\"]\nretry: {on_events: [error], duration: 1m}\n",
            1,
        );
        run.retry_window_started_at = Some(NOW);
        let later = NOW.plus_secs(120);
        let was_active: HashSet<u64> = [run.jobs[0].current.id].into();
        finish_from_exit(&mut run.jobs[0].current, Some(1), later);
        resubmit_failed(&mut run, &was_active, later, 1.0, || Some(100));
        assert!(run.jobs[0].previous_submissions.is_empty());
        assert_eq!(
            run.termination_reason,
            Some(RunTerminationReason::RetryLimitExceeded)
        );
        derive_run_status(&mut run, later);
        assert_eq!(run.status, RunStatus::Failed);
    }

    #[test]
    fn jobs_are_found_by_replica_and_number() {
        let mut run = task(2);
        assert_eq!(run.job(0, 1).map(|j| j.current.id), Some(11));
        assert!(run.job(1, 0).is_none());
        run.job_mut(0, 0).expect("job 0").current.status = JobStatus::Running;
        assert_eq!(run.jobs[0].current.status, JobStatus::Running);
    }

    #[test]
    fn a_scheduled_run_that_ends_waits_for_its_next_start_with_new_submissions() {
        // NOW is 2023-11-14T22:13:20Z; the next `0 * * * *` is 23:00.
        let mut run = run_of(
            "type: task\nnodes: 2\nschedule:\n  cron: [\"0 * * * *\", \"30 23 * * *\"]\ncommands: [\"true\"]\n",
            2,
        );
        for j in run.jobs.iter_mut() {
            j.current.status = JobStatus::Done;
        }
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Done);
        let mut ids = 100..;
        reschedule(&mut run, NOW, || ids.next());
        let at = Timestamp::parse_rfc3339("2023-11-14T23:00:00Z").expect("a time");
        assert_eq!(run.status, RunStatus::Pending);
        assert_eq!(run.next_triggered_at, Some(at));
        assert!(run.termination_reason.is_none() && run.finished_at.is_none());
        for (j, id) in run.jobs.iter().zip([100, 101]) {
            assert_eq!(j.current.id, id);
            assert_eq!(j.current.submission_num, 1);
            assert_eq!(j.current.status, JobStatus::Submitted);
            assert_eq!(j.current.retry_at, Some(at));
            assert_eq!(j.previous_submissions[0].status, JobStatus::Done);
        }
        // The waiting run derives `pending` until its time.
        derive_run_status(&mut run, NOW);
        assert_eq!(run.status, RunStatus::Pending);

        // A user's stop ends the schedule; a run without one is left alone.
        let mut stopped = run_of(
            "type: task\nschedule:\n  cron: \"0 * * * *\"\ncommands: [\"true\"]\n",
            1,
        );
        stopped.status = RunStatus::Terminated;
        stopped.termination_reason = Some(RunTerminationReason::StoppedByUser);
        reschedule(&mut stopped, NOW, || ids.next());
        assert_eq!(stopped.status, RunStatus::Terminated);
        let mut plain = task(1);
        plain.status = RunStatus::Failed;
        reschedule(&mut plain, NOW, || ids.next());
        assert_eq!(plain.status, RunStatus::Failed);
    }
}
