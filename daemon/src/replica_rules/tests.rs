use super::*;
use crate::lifecycle::new_submission;
use flotilla_protocol::config::{parse_configuration, RunConfiguration};
use flotilla_protocol::model::{JobTerminationReason, RunStatus};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn service_run(yaml: &str, groups: &[(&str, u32)]) -> Run {
    let configuration = parse_configuration("s.yml", yaml)
        .expect("a valid service")
        .as_run()
        .expect("a run");
    let mut jobs = Vec::new();
    let mut replica_num = 0;
    for (group, count) in groups {
        for _ in 0..*count {
            jobs.push(Job {
                replica_num,
                job_num: 0,
                job_name: format!("svc-0-{replica_num}"),
                replica_group: Some(group.to_string()),
                deployment_num: 0,
                current: new_submission(100 + u64::from(replica_num), 0, NOW),
                previous_submissions: Vec::new(),
            });
            replica_num += 1;
        }
    }
    Run {
        id: 1,
        name: "svc".into(),
        user: "ana".into(),
        uid: 1000,
        status: RunStatus::Running,
        termination_reason: None,
        status_message: None,
        submitted_at: NOW,
        finished_at: None,
        configuration_type: "service".into(),
        configuration_path: None,
        configuration,
        caller_env: Default::default(),
        retry_window_started_at: None,
        next_triggered_at: None,
        deployment_num: 0,
        desired_replicas: Default::default(),
        last_scaled_at: None,
        archives: Vec::new(),
        cluster_key: None,
        service: None,
        jobs,
    }
}

fn service(run: &Run) -> &ServiceConfig {
    match &run.configuration {
        RunConfiguration::Service(s) => s,
        _ => panic!("a service"),
    }
}

fn running(run: &mut Run, replica: u32) -> u64 {
    let job = run.job_mut(replica, 0).expect("the replica");
    job.current.status = JobStatus::Running;
    job.current.id
}

fn ready(ids: &[u64]) -> HashMap<u64, Live> {
    ids.iter()
        .map(|id| {
            (
                *id,
                Live {
                    ready: true,
                    in_flight: 0,
                },
            )
        })
        .collect()
}

fn idle(_: u64) -> Traffic {
    Traffic {
        rps: 0.0,
        waiting: 0,
    }
}

fn decide(run: &Run, live: &HashMap<u64, Live>, traffic: impl Fn(u64) -> Traffic) -> Plan {
    plan(run, service(run), live, traffic, NOW, 1.0)
}

const TWO: &str = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 2\n";
const RANGE: &str = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 1..3\nscaling:\n  metric: rps\n  target: 10\n  scale_up_delay: 30s\n  scale_down_delay: 60s\n";

#[test]
fn a_steady_service_is_left_alone() {
    let mut run = service_run(TWO, &[("0", 2)]);
    let ids = [running(&mut run, 0), running(&mut run, 1)];
    let p = decide(&run, &ready(&ids), idle);
    assert_eq!(p.desired.get("0"), Some(&2));
    assert!(
        p.start.is_empty() && p.stop.is_empty() && !p.scaled,
        "{p:?}"
    );
}

#[test]
fn a_failed_replica_is_replaced_on_its_own_job_at_once_then_with_backoff() {
    let mut run = service_run(TWO, &[("0", 2)]);
    let ids = [running(&mut run, 0), running(&mut run, 1)];
    let job = run.job_mut(1, 0).expect("replica 1");
    job.current.status = JobStatus::Failed;
    job.current.termination_reason = Some(JobTerminationReason::ContainerExitedWithError);
    job.current.finished_at = Some(NOW);
    let p = decide(&run, &ready(&ids[..1]), idle);
    assert_eq!(
        p.start,
        vec![Start {
            group: "0".into(),
            replica_num: 1,
            new_job: false,
            not_before: None,
        }]
    );
    // It failed again right after: the next replacement waits for the backoff.
    let job = run.job_mut(1, 0).expect("replica 1");
    let again = job.current.clone();
    job.previous_submissions.push(again);
    let p = decide(&run, &ready(&ids[..1]), idle);
    assert_eq!(p.start[0].not_before, Some(NOW.plus_secs(15)));
}

#[test]
fn a_range_keeps_min_without_traffic_and_scales_up_after_the_delay() {
    let mut run = service_run(RANGE, &[("0", 1)]);
    let ids = [running(&mut run, 0)];
    let p = decide(&run, &ready(&ids), idle);
    assert_eq!(p.desired.get("0"), Some(&1));
    assert!(p.start.is_empty());
    run.desired_replicas.insert("0".into(), 1);
    let busy = |_| Traffic {
        rps: 25.0,
        waiting: 0,
    };
    // Scaled 10s ago: the 30s up delay holds.
    run.last_scaled_at = Some(Timestamp(NOW.millis() - 10_000));
    assert!(decide(&run, &ready(&ids), busy).start.is_empty());
    run.last_scaled_at = Some(Timestamp(NOW.millis() - 30_000));
    let p = decide(&run, &ready(&ids), busy);
    assert_eq!(p.desired.get("0"), Some(&3));
    assert!(p.scaled);
    assert_eq!(
        p.start
            .iter()
            .map(|s| (s.replica_num, s.new_job))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, true)]
    );
}

#[test]
fn scaling_down_stops_the_least_important_replica_after_its_requests() {
    let mut run = service_run(RANGE, &[("0", 3)]);
    let ids = [
        running(&mut run, 0),
        running(&mut run, 1),
        running(&mut run, 2),
    ];
    run.desired_replicas.insert("0".into(), 3);
    run.last_scaled_at = Some(Timestamp(NOW.millis() - 60_000));
    // Replica 1 is running but not ready: it goes first, then the highest number.
    let mut live = ready(&[ids[0], ids[2]]);
    live.insert(ids[1], Live::default());
    let p = decide(&run, &live, idle);
    assert_eq!(p.desired.get("0"), Some(&1));
    assert_eq!(p.stop, vec![1, 2]);
    // A replica with a request in flight is drained, not stopped.
    live.insert(
        ids[2],
        Live {
            ready: true,
            in_flight: 2,
        },
    );
    let p = decide(&run, &live, idle);
    assert_eq!(p.stop, vec![1]);
    assert_eq!(p.draining, vec![ids[2]]);
}

#[test]
fn zero_to_n_goes_to_zero_when_idle_and_back_up_when_a_request_waits() {
    let yaml = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 0..2\nscaling:\n  metric: rps\n  target: 5\n  scale_down_delay: 60s\n";
    let mut run = service_run(yaml, &[("0", 1)]);
    let ids = [running(&mut run, 0)];
    run.desired_replicas.insert("0".into(), 1);
    run.last_scaled_at = Some(Timestamp(NOW.millis() - 61_000));
    let p = decide(&run, &ready(&ids), idle);
    assert_eq!(p.desired.get("0"), Some(&0));
    assert_eq!(p.stop, vec![0]);
    // Scaled to zero: the replica is finished, nothing runs.
    let job = run.job_mut(0, 0).expect("replica 0");
    job.current.status = JobStatus::Terminated;
    job.current.termination_reason = Some(JobTerminationReason::ScaledDown);
    run.desired_replicas.insert("0".into(), 0);
    run.last_scaled_at = Some(NOW);
    assert!(decide(&run, &HashMap::new(), idle).start.is_empty());
    let held = |_| Traffic {
        rps: 0.0,
        waiting: 1,
    };
    let p = decide(&run, &HashMap::new(), held);
    assert_eq!(p.desired.get("0"), Some(&1));
    assert_eq!(
        p.start,
        vec![Start {
            group: "0".into(),
            replica_num: 0,
            new_job: false,
            not_before: None,
        }]
    );
}

#[test]
fn a_rolling_update_surges_one_then_stops_the_old_replica_once_the_new_is_ready() {
    let mut run = service_run(
        "type: service\nport: 8000\ncommands: [serve]\n",
        &[("0", 1)],
    );
    let old = running(&mut run, 0);
    run.desired_replicas.insert("0".into(), 1);
    run.deployment_num = 1;
    // The old replica serves: one new replica starts beside it, nothing stops.
    let p = decide(&run, &ready(&[old]), idle);
    assert_eq!(p.start.len(), 1, "{p:?}");
    assert!(p.start[0].new_job && p.start[0].replica_num == 1);
    assert!(p.stop.is_empty());
    // The new replica is on its way: no second one, the old one keeps serving.
    run.jobs.push(Job {
        replica_num: 1,
        job_num: 0,
        job_name: "svc-0-1".into(),
        replica_group: Some("0".into()),
        deployment_num: 1,
        current: new_submission(201, 0, NOW),
        previous_submissions: Vec::new(),
    });
    let new = running(&mut run, 1);
    let mut live = ready(&[old]);
    live.insert(new, Live::default());
    let p = decide(&run, &live, idle);
    assert!(p.start.is_empty() && p.stop.is_empty(), "{p:?}");
    // The new one is ready: the old one stops.
    let p = decide(&run, &ready(&[old, new]), idle);
    assert!(p.start.is_empty(), "{p:?}");
    assert_eq!(p.stop, vec![0]);
}

#[test]
fn replica_groups_keep_their_own_counts_and_removed_groups_stop() {
    let yaml = "type: service\nport: 8000\nreplicas:\n  - name: a\n    count: 1\n    commands: [serve-a]\n  - name: b\n    count: 2\n    commands: [serve-b]\n";
    let mut run = service_run(yaml, &[("a", 1), ("b", 1), ("gone", 1)]);
    let ids = [
        running(&mut run, 0),
        running(&mut run, 1),
        running(&mut run, 2),
    ];
    let p = decide(&run, &ready(&ids), idle);
    assert_eq!(p.desired.get("a"), Some(&1));
    assert_eq!(p.desired.get("b"), Some(&2));
    assert_eq!(
        p.start,
        vec![Start {
            group: "b".into(),
            replica_num: 3,
            new_job: true,
            not_before: None,
        }]
    );
    assert_eq!(p.stop, vec![2]);
}

#[test]
fn a_service_past_its_max_duration_is_not_replaced() {
    let mut run = service_run(TWO, &[("0", 2)]);
    let ids = [running(&mut run, 0), running(&mut run, 1)];
    for job in run.jobs.iter_mut() {
        crate::lifecycle::request_job_stop(
            job,
            JobTerminationReason::MaxDurationExceeded,
            false,
            None,
            NOW,
        );
    }
    let p = decide(&run, &ready(&ids), idle);
    assert!(p.start.is_empty() && p.stop.is_empty(), "{p:?}");
}
