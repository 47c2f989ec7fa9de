//! Placement on existing instances (SPEC section 5, steps 1, 2, 4 and 5) as tables: each case
//! is a set of fleets, pending jobs, and the decision each job must get.

#[path = "support/scheduler.rs"]
mod support;

use flotilla_daemon::scheduler::{schedule, Decision, FleetView, InstanceSlot, PendingJob};
use flotilla_protocol::config::SpotPolicy;
use flotilla_protocol::model::{InstanceStatus, JobTerminationReason};
use support::*;

struct Case {
    name: &'static str,
    fleets: Vec<FleetView>,
    jobs: Vec<PendingJob>,
    /// Per job, in the order of `jobs`: the start of its decision's [`brief`].
    expect: Vec<&'static str>,
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let decisions = schedule(&case.jobs, &case.fleets, NOW);
        assert_decisions(case.name, &case.jobs, &decisions, &case.expect);
    }
}

fn two_gpu_host() -> FleetView {
    local_fleet(vec![instance(
        1,
        "local-0",
        machine(16, 128.0, "A100", 2),
        2,
        0.0,
    )])
}

fn with<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut value);
    value
}

#[test]
fn blocks_and_gpu_pinning() {
    let eight = || {
        local_fleet(vec![instance(
            1,
            "local-0",
            machine(64, 512.0, "A100", 8),
            8,
            0.0,
        )])
    };
    run(vec![
        Case {
            name: "two 1-GPU jobs on a 2-GPU host get GPUs 0 and 1",
            fleets: vec![two_gpu_host()],
            jobs: vec![job(1, "A100:1", 1), job(2, "A100:1", 2)],
            expect: vec!["place local/local-0 1 [0]", "place local/local-0 1 [1]"],
        },
        Case {
            name: "three 1-GPU jobs on a 2-GPU host: the third waits",
            fleets: vec![two_gpu_host()],
            jobs: vec![
                job(1, "A100:1", 1),
                job(2, "A100:1", 2),
                job(3, "A100:1", 3),
            ],
            expect: vec![
                "place local/local-0 1 [0]",
                "place local/local-0 1 [1]",
                "wait",
            ],
        },
        Case {
            name: "a job takes the fewest blocks whose share fits",
            fleets: vec![eight()],
            jobs: vec![
                job(1, "A100:2", 1),
                job(2, "A100:4", 2),
                job(3, "A100:2", 3),
            ],
            expect: vec![
                "place local/local-0 2 [0, 1]",
                "place local/local-0 4 [2, 3, 4, 5]",
                "place local/local-0 2 [6, 7]",
            ],
        },
        Case {
            name: "GPUs held by running jobs are never given again",
            fleets: vec![local_fleet(vec![with(
                instance(1, "local-0", machine(64, 512.0, "A100", 4), 4, 0.0),
                |i| {
                    i.busy_blocks = 2;
                    i.busy_gpus = vec![0, 2];
                    i.status = InstanceStatus::Busy;
                },
            )])],
            jobs: vec![
                job(1, "A100:1", 1),
                job(2, "A100:1", 2),
                job(3, "A100:1", 3),
            ],
            expect: vec![
                "place local/local-0 1 [1]",
                "place local/local-0 1 [3]",
                "wait",
            ],
        },
        Case {
            name: "a job too big for the free blocks waits for the busy instance",
            fleets: vec![local_fleet(vec![busy(
                instance(1, "local-0", machine(64, 512.0, "A100", 8), 8, 0.0),
                6,
            )])],
            jobs: vec![job(1, "A100:4", 1), job(2, "A100:2", 2)],
            expect: vec!["wait", "place local/local-0 2 [6, 7]"],
        },
    ]);
}

#[test]
fn waiting_reason_names_the_busy_instance() {
    let jobs = vec![
        job(1, "A100:1", 1),
        job(2, "A100:1", 2),
        job(3, "A100:1", 3),
    ];
    let decisions = schedule(&jobs, &[two_gpu_host()], NOW);
    match about(&decisions, key(3)) {
        Decision::Wait { reason, .. } => {
            assert_eq!(
                reason,
                "no fleet has a free A100 block: local/local-0 2/2 busy"
            )
        }
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn job_order() {
    let one_slot = || {
        local_fleet(vec![instance(
            1,
            "local-0",
            machine(16, 128.0, "A100", 1),
            1,
            0.0,
        )])
    };
    run(vec![
        Case {
            name: "the higher priority goes first even when newer",
            fleets: vec![one_slot()],
            jobs: vec![
                job(1, "A100:1", 1),
                with(job(2, "A100:1", 9), |j| j.priority = 50),
            ],
            expect: vec!["wait", "place local/local-0"],
        },
        Case {
            name: "same priority: the oldest goes first",
            fleets: vec![one_slot()],
            jobs: vec![job(1, "A100:1", 9), job(2, "A100:1", 1)],
            expect: vec!["wait", "place local/local-0"],
        },
    ]);
}

#[test]
fn unusable_instances_take_no_job() {
    let pair = |change: fn(&mut InstanceSlot)| {
        local_fleet(vec![
            with(
                instance(1, "local-0", machine(16, 128.0, "A100", 1), 1, 0.0),
                change,
            ),
            instance(2, "local-1", machine(16, 128.0, "A100", 1), 1, 5.0),
        ])
    };
    run(vec![
        Case {
            name: "unreachable",
            fleets: vec![pair(|i| i.unreachable = true)],
            jobs: vec![job(1, "A100:1", 1), job(2, "A100:1", 2)],
            expect: vec!["place local/local-1", "wait"],
        },
        Case {
            name: "failing health checks",
            fleets: vec![pair(|i| i.unhealthy = true)],
            jobs: vec![job(1, "A100:1", 1)],
            expect: vec!["place local/local-1"],
        },
        Case {
            name: "still provisioning",
            fleets: vec![pair(|i| i.status = InstanceStatus::Provisioning)],
            jobs: vec![job(1, "A100:1", 1)],
            expect: vec!["place local/local-1"],
        },
        Case {
            name: "terminating",
            fleets: vec![pair(|i| i.status = InstanceStatus::Terminating)],
            jobs: vec![job(1, "A100:1", 1)],
            expect: vec!["place local/local-1"],
        },
    ]);
}

#[test]
fn candidate_fleets_and_terms() {
    let a100 = |fleet: &str, price: f64| {
        cloud_fleet(
            fleet,
            "0..2",
            "",
            vec![instance(
                1,
                &format!("{fleet}-0"),
                machine(16, 128.0, "A100", 1),
                1,
                price,
            )],
        )
    };
    run(vec![
        Case {
            name: "the cheapest idle pool offer wins",
            fleets: vec![a100("a", 3.0), a100("b", 1.0), a100("c", 2.0)],
            jobs: vec![job(1, "A100:1", 1), job(2, "A100:1", 2)],
            expect: vec!["place b/b-0", "place c/c-0"],
        },
        Case {
            name: "fleets: restricts the candidates",
            fleets: vec![a100("a", 3.0), a100("b", 1.0)],
            jobs: vec![with(job(1, "A100:1", 1), |j| {
                j.fleets = Some(vec!["a".into()])
            })],
            expect: vec!["place a/a-0"],
        },
        Case {
            name: "fleets: naming no existing fleet fails with no fleets",
            fleets: vec![a100("a", 3.0)],
            jobs: vec![with(job(1, "A100:1", 1), |j| {
                j.fleets = Some(vec!["zz".into()])
            })],
            expect: vec!["fail no fleets: none of zz exists"],
        },
        Case {
            name: "no fleet at all fails with no fleets",
            fleets: vec![],
            jobs: vec![job(1, "A100:1", 1)],
            expect: vec!["fail no fleets"],
        },
        Case {
            name: "a fleet being deleted is no candidate",
            fleets: vec![with(a100("a", 1.0), |f| f.terminating = true)],
            jobs: vec![job(1, "A100:1", 1)],
            expect: vec!["fail no fleets"],
        },
        Case {
            name: "max_price: a share above it is no offer",
            fleets: vec![a100("a", 3.0), a100("b", 1.0)],
            jobs: vec![
                with(job(1, "A100:1", 1), |j| j.max_price = Some(1.5)),
                with(job(2, "A100:1", 2), |j| j.max_price = Some(0.5)),
            ],
            expect: vec!["place b/b-0", "fail no offers"],
        },
        Case {
            name: "max_price: waits for a busy instance within it",
            fleets: vec![a100("a", 3.0), a100("b", 1.0)],
            jobs: vec![
                job(1, "A100:1", 1),
                with(job(2, "A100:1", 2), |j| j.max_price = Some(1.5)),
            ],
            expect: vec!["place b/b-0", "wait"],
        },
        Case {
            name: "nothing matches: no offers",
            fleets: vec![a100("a", 3.0)],
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["fail no offers: no instance in a fits"],
        },
        Case {
            name: "on-demand runs skip spot instances; auto takes them",
            fleets: vec![cloud_fleet(
                "a",
                "0..2",
                "",
                vec![
                    with(
                        instance(1, "a-0", machine(16, 128.0, "A100", 1), 1, 1.0),
                        |i| i.spot = true,
                    ),
                    instance(2, "a-1", machine(16, 128.0, "A100", 1), 1, 3.0),
                ],
            )],
            jobs: vec![
                job(1, "A100:1", 1),
                with(job(2, "A100:1", 2), |j| {
                    j.terms.spot_policy = SpotPolicy::Auto
                }),
            ],
            expect: vec!["place a/a-1", "place a/a-0"],
        },
        Case {
            name: "backends: a run limited to other backends skips the pool",
            fleets: vec![a100("a", 1.0)],
            jobs: vec![with(job(1, "A100:1", 1), |j| {
                j.terms.backends = Some(vec!["gcp".into()])
            })],
            expect: vec!["fail no offers"],
        },
    ]);
}

#[test]
fn failures_carry_the_no_capacity_reason() {
    let decisions = schedule(&[job(1, "A100:1", 1)], &[], NOW);
    match &decisions[0] {
        Decision::Fail { reason, .. } => {
            assert_eq!(*reason, JobTerminationReason::FailedToStartDueToNoCapacity)
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
