//! Multi-node replicas (SPEC section 5, step 6) as tables: all nodes together in one
//! `placement: cluster` fleet on whole idle instances (or new ones), master first, all or none.

#[path = "support/scheduler.rs"]
mod support;

use flotilla_daemon::scheduler::{
    schedule_with, Decision, FleetView, InstanceSlot, NoBackendOffers, OfferSource, PendingJob,
    StaticOffers,
};
use support::*;

struct Case {
    name: &'static str,
    fleets: Vec<FleetView>,
    offers: Box<dyn OfferSource>,
    jobs: Vec<PendingJob>,
    /// Per job, in the order of `jobs`: the start of its decision's [`brief`].
    expect: Vec<&'static str>,
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let decisions = schedule_with(&case.jobs, &case.fleets, case.offers.as_ref(), NOW);
        assert_decisions(case.name, &case.jobs, &decisions, &case.expect);
    }
}

fn host(fleet: &str, n: u64, price: f64) -> InstanceSlot {
    instance(
        n,
        &format!("{fleet}-{n}"),
        machine(64, 512.0, "H100", 8),
        1,
        price,
    )
}

fn cluster(name: &str, instances: Vec<InstanceSlot>) -> FleetView {
    cloud_fleet(name, "0..4", "placement: cluster\n", instances)
}

fn replica(run: u64, nodes: u32) -> Vec<PendingJob> {
    (0..nodes).map(|n| node(run, n, nodes, "H100:8")).collect()
}

#[test]
fn replicas_are_placed_together() {
    run(vec![
        Case {
            name: "two nodes on two idle instances of a cluster fleet, master on the cheapest",
            fleets: vec![cluster(
                "train",
                vec![
                    host("train", 0, 30.0),
                    host("train", 1, 20.0),
                    host("train", 2, 25.0),
                ],
            )],
            offers: Box::new(NoBackendOffers),
            jobs: replica(1, 2),
            expect: vec![
                "place train/train-1 1 [0, 1, 2, 3, 4, 5, 6, 7]",
                "place train/train-2",
            ],
        },
        Case {
            name: "one idle instance for two nodes: none is placed, both wait",
            fleets: vec![cluster(
                "train",
                vec![host("train", 0, 30.0), busy(host("train", 1, 20.0), 1)],
            )],
            offers: Box::new(NoBackendOffers),
            jobs: replica(1, 2),
            expect: vec!["wait", "wait"],
        },
        Case {
            name: "never split over two cluster fleets",
            fleets: vec![
                cluster(
                    "east",
                    vec![host("east", 0, 30.0), busy(host("east", 1, 30.0), 1)],
                ),
                cluster(
                    "west",
                    vec![host("west", 0, 30.0), busy(host("west", 1, 30.0), 1)],
                ),
            ],
            offers: Box::new(NoBackendOffers),
            jobs: replica(1, 2),
            expect: vec!["wait", "wait"],
        },
        Case {
            name: "a fleet without placement: cluster is no candidate",
            fleets: vec![cloud_fleet(
                "loose",
                "0..4",
                "",
                vec![host("loose", 0, 1.0), host("loose", 1, 1.0)],
            )],
            offers: Box::new(NoBackendOffers),
            jobs: replica(1, 2),
            expect: vec![
                "fail no fleets: a multi-node run needs a `placement: cluster` fleet",
                "fail no fleets",
            ],
        },
        Case {
            name: "idle instances first, new ones for the rest",
            fleets: vec![cluster("train", vec![host("train", 0, 30.0)])],
            offers: Box::new(StaticOffers::new(vec![offer(
                "aws",
                "p5.48xlarge",
                "H100",
                8,
                98.0,
            )])),
            jobs: replica(1, 3),
            expect: vec![
                "place train/train-0",
                "provision train p5.48xlarge",
                "provision train p5.48xlarge",
            ],
        },
        Case {
            name: "not past nodes.max: all or nothing",
            fleets: vec![cluster(
                "train",
                vec![host("train", 0, 30.0), busy(host("train", 1, 30.0), 1)],
            )],
            offers: Box::new(StaticOffers::new(vec![offer(
                "aws",
                "p5.48xlarge",
                "H100",
                8,
                98.0,
            )])),
            jobs: replica(1, 4),
            expect: vec!["wait", "wait", "wait", "wait"],
        },
        Case {
            name: "a single-node job does not take a node's instance first when it is younger",
            fleets: vec![cluster(
                "train",
                vec![host("train", 0, 30.0), host("train", 1, 30.0)],
            )],
            offers: Box::new(NoBackendOffers),
            jobs: {
                let mut jobs = replica(1, 2);
                jobs.push(job(2, "H100:8", 5));
                jobs
            },
            expect: vec!["place train/train-0", "place train/train-1", "wait"],
        },
    ]);
}

#[test]
fn other_nodes_follow_the_master() {
    let fleets = || {
        vec![
            cluster("train", vec![host("train", 0, 30.0)]),
            cluster("other", vec![host("other", 0, 1.0)]),
        ]
    };
    run(vec![
        Case {
            name: "a node waits while its master is not placed",
            fleets: fleets(),
            offers: Box::new(NoBackendOffers),
            jobs: vec![node(1, 1, 2, "H100:8")],
            expect: vec!["wait"],
        },
        Case {
            name: "a node goes to its master's fleet, not the cheaper one",
            fleets: fleets(),
            offers: Box::new(NoBackendOffers),
            jobs: vec![{
                let mut n = node(1, 1, 2, "H100:8");
                n.master_fleet = Some("train".into());
                n
            }],
            expect: vec!["place train/train-0"],
        },
    ]);
}

#[test]
fn waiting_for_the_master_is_said() {
    let decisions = schedule_with(
        &[node(1, 1, 2, "H100:8")],
        &[cluster("train", vec![host("train", 0, 30.0)])],
        &NoBackendOffers,
        NOW,
    );
    assert_eq!(
        decisions,
        vec![Decision::Wait {
            key: flotilla_daemon::scheduler::JobKey {
                run_id: 1,
                replica_num: 0,
                job_num: 1
            },
            reason: "waiting for the master job run-1/0/0 to be placed".into(),
        }]
    );
}
