//! The lifecycle rules' tests (`lifecycle.rs`).

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
        next_triggered_at: None,
        archives: Vec::new(),
        cluster_key: None,
        service: None,
        deployment_num: 0,
        desired_replicas: Default::default(),
        last_scaled_at: None,
        jobs: (0..jobs)
            .map(|j| Job {
                replica_num: 0,
                job_num: j,
                job_name: format!("calm-owl-1-{j}-0"),
                replica_group: None,
                deployment_num: 0,
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
fn master_done_ends_the_run_done_and_utilization_ends_it_failed_with_dstacks_reason() {
    let multi = "type: task\nnodes: 2\nstop_criteria: master-done\ncommands: [\"true\"]\n";
    let mut run = run_of(multi, 2);
    for j in run.jobs.iter_mut() {
        j.current.status = JobStatus::Running;
    }
    assert!(
        !stop_on_master_done(&mut run, 0, NOW),
        "the master still runs"
    );
    finish_from_exit(&mut run.jobs[0].current, Some(0), NOW);
    assert!(
        stop_on_master_done(&mut run, 0, NOW),
        "the worker is signalled"
    );
    finish_from_exit(&mut run.jobs[1].current, Some(143), NOW);
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Done);
    assert_eq!(run.jobs[1].current.status, JobStatus::Done);
    let reason = run.jobs[1].current.termination_reason;
    assert_eq!(reason, Some(JobTerminationReason::DoneByRunner));
    // all-done (the default): the master's end alone ends nothing.
    let mut all = task(2);
    all.jobs[0].current.status = JobStatus::Done;
    assert!(!stop_on_master_done(&mut all, 0, NOW));
    assert_eq!(all.termination_reason, None);

    let mut idle = task(2);
    for j in idle.jobs.iter_mut() {
        j.current.status = JobStatus::Running;
    }
    let message = "The job GPU utilization below 10% for 600 seconds";
    assert!(stop_for_utilization(&mut idle, 0, 1, message, NOW));
    for j in idle.jobs.iter_mut() {
        finish_from_exit(&mut j.current, Some(143), NOW);
    }
    derive_run_status(&mut idle, NOW);
    assert_eq!(idle.status, RunStatus::Failed);
    assert_eq!(
        idle.termination_reason,
        Some(RunTerminationReason::JobFailed)
    );
    let job = &idle.jobs[1].current;
    assert_eq!(job.status, JobStatus::Terminated);
    let reason = Some(JobTerminationReason::TerminatedDueToUtilizationPolicy);
    assert_eq!(job.termination_reason, reason);
    assert_eq!(job.termination_message.as_deref(), Some(message));
    let other = idle.jobs[0].current.termination_reason;
    assert_eq!(other, Some(JobTerminationReason::TerminatedByServer));
}

#[test]
fn startup_order_holds_back_the_master_or_the_workers_until_the_others_run() {
    let order = |o: &str| {
        run_of(
            &format!("type: task\nnodes: 2\nstartup_order: {o}\ncommands: [\"true\"]\n"),
            2,
        )
    };
    let mut run = order("master-first");
    assert!(startup_wait(&run, 0, 1).is_some_and(|w| w.contains("master node")));
    assert_eq!(startup_wait(&run, 0, 0), None);
    run.jobs[0].current.status = JobStatus::Running;
    assert_eq!(startup_wait(&run, 0, 1), None);
    let mut run = order("workers-first");
    assert!(startup_wait(&run, 0, 0).is_some_and(|w| w.contains("worker nodes")));
    assert_eq!(startup_wait(&run, 0, 1), None);
    // A worker that already ended has run: the master does not wait for it forever.
    run.jobs[1].current.status = JobStatus::Done;
    assert_eq!(startup_wait(&run, 0, 0), None);
    assert_eq!(startup_wait(&order("any"), 0, 1), None);
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

fn service(yaml: &str, replicas: u32) -> Run {
    let mut run = run_of(yaml, replicas);
    for (i, job) in run.jobs.iter_mut().enumerate() {
        job.replica_num = i as u32;
        job.job_num = 0;
        job.replica_group = Some("0".into());
    }
    run
}

#[test]
fn a_failed_replica_leaves_its_service_running_while_another_serves() {
    let mut run = service(
        "type: service\nport: 8000\ncommands: [serve]\nreplicas: 2\n",
        2,
    );
    run.jobs[0].current.status = JobStatus::Running;
    run.jobs[1].current.status = JobStatus::Running;
    finish_from_exit(&mut run.jobs[1].current, Some(1), NOW);
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.termination_reason, None);
    // The last one fails too: nothing serves, the run fails.
    finish_from_exit(&mut run.jobs[0].current, Some(1), NOW);
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.termination_reason,
        Some(RunTerminationReason::JobFailed)
    );
}

#[test]
fn a_service_scaled_to_zero_is_pending_not_finished() {
    let yaml = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 0..2\nscaling:\n  metric: rps\n  target: 1\n";
    let mut run = service(yaml, 1);
    run.jobs[0].current.status = JobStatus::Running;
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Running);
    request_job_stop(
        &mut run.jobs[0],
        JobTerminationReason::ScaledDown,
        false,
        None,
        NOW,
    );
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Pending, "stopping for a scale-down");
    finish_from_exit(&mut run.jobs[0].current, Some(143), NOW);
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.termination_reason, None);
    // A 0..N service whose only replica fails waits for the next request.
    let mut run = service(yaml, 1);
    run.jobs[0].current.status = JobStatus::Running;
    finish_from_exit(&mut run.jobs[0].current, Some(1), NOW);
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Pending);
    // With no replica at all (created with 0), too.
    let mut run = service(yaml, 0);
    derive_run_status(&mut run, NOW);
    assert_eq!(run.status, RunStatus::Pending);
}
