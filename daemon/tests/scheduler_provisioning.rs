//! Backend offers and the choice of fleet (SPEC section 5, steps 1, 3 and 4) as tables: the
//! "cannot fit for sure" pre-check, where new instances may be created, the fleet priority
//! tuple, `creation_policy`, `max_price` and how run and fleet profiles combine.

#[path = "support/scheduler.rs"]
mod support;

use flotilla_daemon::scheduler::{
    schedule_with, Decision, FleetView, OfferSource, PendingJob, PerFleetOffers, StaticOffers,
    MAX_PROVISION_OFFERS,
};
use flotilla_protocol::config::{CreationPolicy, SpotPolicy};
use flotilla_protocol::model::Offer;
use std::collections::HashMap;
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

fn with<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut value);
    value
}

/// The same offers for every fleet.
fn everywhere(offers: Vec<Offer>) -> Box<dyn OfferSource> {
    Box::new(StaticOffers::new(offers))
}

fn per_fleet(offers: Vec<(&str, Vec<Offer>)>) -> Box<dyn OfferSource> {
    let map: HashMap<String, Vec<Offer>> = offers
        .into_iter()
        .map(|(f, o)| (f.to_string(), o))
        .collect();
    Box::new(PerFleetOffers::new(map))
}

fn h100(fleet: &str, n: u64, price: f64) -> flotilla_daemon::scheduler::InstanceSlot {
    instance(
        n,
        &format!("{fleet}-{n}"),
        machine(16, 128.0, "H100", 1),
        1,
        price,
    )
}

#[test]
fn pre_check_skips_fleets_that_cannot_fit() {
    run(vec![
        Case {
            name: "a blocks-1 fleet at nodes.max with every instance busy is skipped",
            fleets: vec![
                cloud_fleet(
                    "full",
                    "0..2",
                    "",
                    vec![busy(h100("full", 0, 0.5), 1), busy(h100("full", 1, 0.5), 1)],
                ),
                cloud_fleet("roomy", "0..", "", vec![]),
            ],
            offers: everywhere(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["provision roomy p5.h100"],
        },
        Case {
            name: "the full fleet alone: the job waits for its busy instances",
            fleets: vec![cloud_fleet(
                "full",
                "0..2",
                "",
                vec![busy(h100("full", 0, 0.5), 1), busy(h100("full", 1, 0.5), 1)],
            )],
            offers: everywhere(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["wait"],
        },
        Case {
            name: "an SSH fleet without idle blocks is skipped, however cheap",
            fleets: vec![
                ssh_fleet("hosts", vec![busy(h100("hosts", 0, 0.0), 1)]),
                cloud_fleet("cloud", "0..", "", vec![h100("cloud", 0, 6.0)]),
            ],
            offers: everywhere(vec![]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["place cloud/cloud-0"],
        },
        Case {
            name: "an SSH fleet never provisions: the job waits for its host",
            fleets: vec![ssh_fleet("hosts", vec![busy(h100("hosts", 0, 0.0), 1)])],
            offers: everywhere(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["wait"],
        },
        Case {
            name: "a fleet at nodes.max with its instances busy has no room: no fleets",
            fleets: vec![cloud_fleet(
                "capped",
                "0..1",
                "",
                vec![busy(h100("capped", 0, 2.0), 1)],
            )],
            offers: everywhere(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]),
            jobs: vec![job(1, "A100:1", 1)],
            expect: vec!["fail no fleets: no room in capped (nodes.max 1, 1 busy)"],
        },
        Case {
            name: "a fleet at nodes.max does not provision",
            fleets: vec![cloud_fleet(
                "capped",
                "0..1",
                "",
                vec![instance(
                    0,
                    "capped-0",
                    machine(16, 128.0, "A100", 1),
                    1,
                    1.0,
                )],
            )],
            offers: everywhere(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["fail no offers: no instance in capped fits"],
        },
        Case {
            name: "one pass provisions at most nodes.max - active instances",
            fleets: vec![cloud_fleet(
                "grow",
                "0..3",
                "",
                vec![busy(h100("grow", 0, 2.0), 1)],
            )],
            offers: everywhere(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]),
            jobs: (1..=4).map(|r| job(r, "H100:1", r)).collect(),
            expect: vec!["provision grow", "provision grow", "wait", "wait"],
        },
    ]);
}

#[test]
fn fleet_priority_tuple() {
    run(vec![
        Case {
            name: "pool capacity beats a cheaper backend offer",
            fleets: vec![
                cloud_fleet("empty", "0..", "", vec![]),
                cloud_fleet("pool", "0..", "", vec![h100("pool", 0, 9.0)]),
            ],
            offers: per_fleet(vec![("empty", vec![offer("aws", "cheap", "H100", 1, 1.0)])]),
            jobs: vec![job(1, "H100:1", 1), job(2, "H100:1", 2)],
            expect: vec!["place pool/pool-0", "provision empty cheap"],
        },
        Case {
            name: "the cheapest pool offer decides between fleets with capacity",
            fleets: vec![
                cloud_fleet("dear", "0..", "", vec![h100("dear", 0, 5.0)]),
                cloud_fleet("cheap", "0..", "", vec![h100("cheap", 0, 2.0)]),
            ],
            offers: everywhere(vec![]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["place cheap/cheap-0"],
        },
        Case {
            name: "equal pool prices: the fleet with the cheaper backend offer",
            fleets: vec![
                ssh_fleet("hosts", vec![h100("hosts", 0, 2.0)]),
                cloud_fleet("first", "0..", "", vec![h100("first", 0, 2.0)]),
                cloud_fleet("second", "0..", "", vec![h100("second", 0, 2.0)]),
            ],
            offers: per_fleet(vec![
                ("first", vec![offer("aws", "a", "H100", 1, 7.0)]),
                ("second", vec![offer("aws", "b", "H100", 1, 3.0)]),
            ]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["place second/second-0"],
        },
        Case {
            name: "no pool capacity: the cheapest backend offer over the fleets",
            fleets: vec![
                cloud_fleet("one", "0..", "", vec![]),
                cloud_fleet("two", "0..", "", vec![]),
            ],
            offers: per_fleet(vec![
                ("one", vec![offer("aws", "a", "H100", 1, 3.0)]),
                ("two", vec![offer("gcp", "b", "H100", 1, 2.0)]),
            ]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["provision two b"],
        },
        Case {
            name: "nothing anywhere: no offers",
            fleets: vec![cloud_fleet("one", "0..", "", vec![])],
            offers: everywhere(vec![offer("aws", "a", "A100", 1, 3.0)]),
            jobs: vec![job(1, "H100:1", 1)],
            expect: vec!["fail no offers: no instance in one fits"],
        },
    ]);
}

#[test]
fn run_profile_meets_fleet_profile() {
    let offers = || {
        everywhere(vec![
            offer("aws", "aws-1", "H100", 1, 4.0),
            offer("gcp", "gcp-1", "H100", 1, 3.0),
            with(offer("aws", "aws-spot", "H100", 1, 1.0), |o| o.spot = true),
        ])
    };
    run(vec![
        Case {
            name: "creation_policy: reuse never provisions",
            fleets: vec![cloud_fleet("grow", "0..", "", vec![])],
            offers: offers(),
            jobs: vec![with(job(1, "H100:1", 1), |j| {
                j.terms.creation_policy = CreationPolicy::Reuse
            })],
            expect: vec!["fail no offers: no instance in grow fits"],
        },
        Case {
            name: "creation_policy: reuse still takes an idle instance",
            fleets: vec![cloud_fleet("grow", "0..", "", vec![h100("grow", 0, 9.0)])],
            offers: offers(),
            jobs: vec![with(job(1, "H100:1", 1), |j| {
                j.terms.creation_policy = CreationPolicy::Reuse
            })],
            expect: vec!["place grow/grow-0"],
        },
        Case {
            name: "max_price of the run",
            fleets: vec![cloud_fleet("grow", "0..", "", vec![])],
            offers: offers(),
            jobs: vec![
                with(job(1, "H100:1", 1), |j| j.max_price = Some(3.5)),
                with(job(2, "H100:1", 2), |j| j.max_price = Some(2.0)),
            ],
            expect: vec!["provision grow gcp-1", "fail no offers"],
        },
        Case {
            name: "the lower max_price wins: the fleet's",
            fleets: vec![cloud_fleet("grow", "0..", "max_price: 2.5\n", vec![])],
            offers: offers(),
            jobs: vec![with(job(1, "H100:1", 1), |j| j.max_price = Some(5.0))],
            expect: vec!["fail no offers"],
        },
        Case {
            name: "backends intersect",
            fleets: vec![cloud_fleet(
                "grow",
                "0..",
                "backends: [aws, lambda]\n",
                vec![],
            )],
            offers: offers(),
            jobs: vec![
                job(1, "H100:1", 1),
                with(job(2, "H100:1", 2), |j| {
                    j.terms.backends = Some(vec!["gcp".into()])
                }),
            ],
            expect: vec!["provision grow aws-1", "fail no offers"],
        },
        Case {
            name: "spot: auto in the run gives way to the fleet's spot",
            fleets: vec![cloud_fleet("spotty", "0..", "spot_policy: spot\n", vec![])],
            offers: offers(),
            jobs: vec![
                with(job(1, "H100:1", 1), |j| {
                    j.terms.spot_policy = SpotPolicy::Auto
                }),
                job(2, "H100:1", 2),
            ],
            expect: vec!["provision spotty aws-spot", "fail no offers"],
        },
        Case {
            name: "fleet resources narrow the offers",
            fleets: vec![cloud_fleet(
                "big",
                "0..",
                "resources:\n  gpu: H100:8\n",
                vec![],
            )],
            offers: everywhere(vec![
                offer("aws", "one", "H100", 1, 4.0),
                offer("aws", "eight", "H100", 8, 30.0),
            ]),
            jobs: vec![job(1, "H100:1..", 1)],
            expect: vec!["provision big eight"],
        },
    ]);
}

#[test]
fn provisioning_carries_fallbacks_blocks_and_idle_limit() {
    let offers: Vec<Offer> = (0..30)
        .map(|i| offer("aws", &format!("t{i:02}"), "H100", 8, 40.0 - f64::from(i)))
        .collect();
    let fleets = [cloud_fleet(
        "split",
        "0..",
        "blocks: 4\nidle_duration: 1h\n",
        vec![],
    )];
    let mut j = job(1, "H100:2", 1);
    j.terms.idle_duration = Some(300);
    let decisions = schedule_with(&[j], &fleets, &StaticOffers::new(offers), NOW);
    let Decision::Provision(p) = &decisions[0] else {
        panic!("expected a provision, got {decisions:?}");
    };
    assert_eq!(p.offer.instance_type, "t29", "the cheapest first");
    assert_eq!(p.fallback_offers.len(), MAX_PROVISION_OFFERS - 1);
    let prices: Vec<f64> = p.fallback_offers.iter().map(|o| o.price).collect();
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]),
        "fallbacks cheapest first"
    );
    assert!(prices.iter().all(|&pr| pr >= p.offer.price));
    assert_eq!(
        (p.blocks, p.total_blocks),
        (1, 4),
        "2 of 8 GPUs = 1 of 4 blocks"
    );
    assert_eq!(p.gpus, vec![0, 1]);
    assert_eq!(p.offer.fleet.as_deref(), Some("split"));
    assert!(p
        .fallback_offers
        .iter()
        .all(|o| o.blocks == Some(1) && o.total_blocks == Some(4)));
    assert_eq!(
        p.idle_duration,
        Some(300),
        "the run's 5m is lower than the fleet's 1h"
    );

    let mut forever = job(2, "H100:2", 1);
    forever.terms.idle_duration = None;
    let decisions = schedule_with(
        &[forever],
        &fleets,
        &StaticOffers::new(vec![offer("aws", "x", "H100", 8, 1.0)]),
        NOW,
    );
    let Decision::Provision(p) = &decisions[0] else {
        panic!("expected a provision, got {decisions:?}");
    };
    assert_eq!(
        p.idle_duration,
        Some(3600),
        "off in the run: the fleet's limit"
    );
}

#[test]
fn failure_messages_say_why() {
    let offers = StaticOffers::new(vec![offer("aws", "p5.h100", "H100", 1, 4.0)]);
    let a100 = |id, name: &str| instance(id, name, machine(16, 128.0, "A100", 1), 1, 1.0);
    let reuse_under = |max| {
        with(job(1, "H100:1", 1), |j| {
            j.terms.creation_policy = CreationPolicy::Reuse;
            j.max_price = Some(max);
        })
    };
    let table = [
        (
            vec![cloud_fleet("capped", "0..1", "", vec![a100(0, "capped-0")])],
            job(1, "H100:1", 1),
            "no offers: no instance in capped fits cpu=2.. mem=8GB.. disk=100GB.. gpu=H100:1; \
             capped cannot grow (nodes.max reached)",
        ),
        (
            vec![cloud_fleet("grow", "0..", "", vec![])],
            reuse_under(2.5),
            "no offers: no instance in grow fits cpu=2.. mem=8GB.. disk=100GB.. gpu=H100:1 \
             at $2.5/h or less (creation_policy: reuse, so no new instance)",
        ),
        (
            vec![ssh_fleet("hosts", vec![a100(0, "h1")])],
            job(1, "H100:1", 1),
            "no offers: no instance in hosts fits cpu=2.. mem=8GB.. disk=100GB.. gpu=H100:1",
        ),
        (
            vec![cloud_fleet("grow", "0..", "", vec![])],
            job(1, "A100:1", 1),
            "no offers: no instance in grow fits cpu=2.. mem=8GB.. disk=100GB.. gpu=A100:1 \
             and no backend offer does",
        ),
    ];
    for (fleets, job, want) in table {
        let decisions = schedule_with(&[job], &fleets, &offers, NOW);
        match &decisions[0] {
            Decision::Fail { message, .. } => assert_eq!(message, want),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

#[test]
fn configured_backends_are_an_offer_source() {
    use flotilla_daemon::backends::pool::{PoolBackend, PoolConfig, PoolHost};
    use flotilla_daemon::backends::Backends;
    use std::sync::Arc;
    let host = |name: &str, gpus: usize, price: f64| PoolHost {
        hostname: name.to_string(),
        port: 22,
        user: None,
        identity_file: None,
        instance_type: format!("pool-{gpus}x"),
        region: None,
        price,
        resources: machine(8 * gpus as u32, 64.0 * gpus as f64, "H100", gpus),
    };
    let pool = PoolBackend::new(PoolConfig {
        name: "rack".to_string(),
        user: None,
        identity_file: None,
        hosts: vec![host("h1", 8, 20.0), host("h2", 1, 3.0)],
    });
    let backends = Backends::new(vec![Arc::new(pool)]);
    let fleets = [cloud_fleet("grow", "0..", "", vec![])];
    let jobs = [
        job(1, "H100:1", 1),
        job(2, "H100:4..", 2),
        job(3, "A100:1", 3),
    ];
    let decisions = schedule_with(&jobs, &fleets, &backends, NOW);
    let briefs: Vec<String> = decisions.iter().map(brief).collect();
    assert_eq!(briefs[0], "provision grow pool-1x");
    assert_eq!(briefs[1], "provision grow pool-8x");
    assert!(briefs[2].starts_with("fail no offers"), "{}", briefs[2]);
    // The daemon's scheduling loop takes one snapshot of the backends' offers per pass:
    // the pass decides the same on it.
    let snapshot = flotilla_daemon::scheduler::StaticOffers::new(backends.available_offers());
    assert_eq!(schedule_with(&jobs, &fleets, &snapshot, NOW), decisions);
}
