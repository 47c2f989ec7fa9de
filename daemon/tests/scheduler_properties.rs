//! Properties of the placement pass over random fleets and jobs: a block or GPU is never given
//! to two jobs, no job lands on an unusable instance, one pass never provisions past
//! `nodes.max`, every job gets one decision, and a replica is placed whole or not at all.

#[path = "support/scheduler.rs"]
mod support;

use flotilla_daemon::scheduler::{
    schedule_with, Decision, FleetView, InstanceSlot, JobKey, PendingJob, StaticOffers,
};
use flotilla_protocol::config::CreationPolicy;
use flotilla_protocol::model::InstanceStatus;
use flotilla_protocol::Timestamp;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use support::*;

#[derive(Debug, Clone)]
struct InstanceSeed {
    gpu: &'static str,
    gpus: usize,
    /// Index into the divisors of `gpus` for the block count.
    blocks: usize,
    busy_blocks: u32,
    busy_gpus: Vec<u32>,
    status: InstanceStatus,
    unreachable: bool,
    unhealthy: bool,
    price: f64,
}

#[derive(Debug, Clone)]
struct FleetSeed {
    /// 0 = local, 1 = SSH, 2.. = cloud.
    kind: u8,
    max: Option<u32>,
    blocks: u32,
    cluster: bool,
    instances: Vec<InstanceSeed>,
}

#[derive(Debug, Clone)]
struct JobSeed {
    gpu: &'static str,
    priority: u32,
    nodes: u32,
    reuse: bool,
    only_first_fleet: bool,
}

fn instance_seed() -> impl Strategy<Value = InstanceSeed> {
    (
        prop::sample::select(vec!["A100", "A100", "H100"]),
        prop::sample::select(vec![1usize, 2, 4, 8]),
        0usize..4,
        prop::sample::select(vec![0u32, 0, 0, 1, 2, 8]),
        prop::collection::vec(0u32..9, 0..3),
        prop::sample::select(vec![
            InstanceStatus::Idle,
            InstanceStatus::Busy,
            InstanceStatus::Idle,
            InstanceStatus::Idle,
            InstanceStatus::Provisioning,
            InstanceStatus::Terminating,
        ]),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
        0u32..20,
    )
        .prop_map(
            |(gpu, gpus, blocks, busy_blocks, busy_gpus, status, unreachable, unhealthy, price)| {
                InstanceSeed {
                    gpu,
                    gpus,
                    blocks,
                    busy_blocks,
                    busy_gpus,
                    status,
                    unreachable,
                    unhealthy,
                    price: f64::from(price) / 2.0,
                }
            },
        )
}

fn fleet_seed() -> impl Strategy<Value = FleetSeed> {
    (
        0u8..4,
        prop::option::of(0u32..4),
        prop::sample::select(vec![1u32, 2]),
        any::<bool>(),
        prop::collection::vec(instance_seed(), 0..6),
    )
        .prop_map(|(kind, max, blocks, cluster, instances)| FleetSeed {
            kind,
            max,
            blocks,
            cluster,
            instances,
        })
}

fn job_seed() -> impl Strategy<Value = JobSeed> {
    (
        prop::sample::select(vec![
            "A100:1", "A100:1", "A100:2", "H100:1", "A100:4", "H100:8", "1..",
        ]),
        0u32..3,
        prop::sample::select(vec![1u32, 1, 1, 1, 1, 2, 3]),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(gpu, priority, nodes, reuse, only_first_fleet)| JobSeed {
            gpu,
            priority,
            nodes,
            reuse,
            only_first_fleet,
        })
}

fn build_fleets(seeds: &[FleetSeed]) -> Vec<FleetView> {
    let mut next_id = 1;
    seeds
        .iter()
        .enumerate()
        .map(|(f, seed)| {
            let name = format!("fleet-{f}");
            let instances: Vec<InstanceSlot> = seed
                .instances
                .iter()
                .map(|s| {
                    let divisors: Vec<u32> = [1u32, 2, 4, 8]
                        .into_iter()
                        .filter(|d| (s.gpus as u32).is_multiple_of(*d))
                        .collect();
                    let blocks = divisors[s.blocks % divisors.len()];
                    let mut slot = instance(
                        next_id,
                        &format!("{name}-{next_id}"),
                        machine(8 * s.gpus as u32, 64.0 * s.gpus as f64, s.gpu, s.gpus),
                        blocks,
                        s.price,
                    );
                    next_id += 1;
                    slot.busy_blocks = s.busy_blocks.min(blocks);
                    slot.busy_gpus = s.busy_gpus.clone();
                    slot.status = s.status;
                    slot.unreachable = s.unreachable;
                    slot.unhealthy = s.unhealthy;
                    slot
                })
                .collect();
            let placement = if seed.cluster {
                "placement: cluster\n"
            } else {
                ""
            };
            match seed.kind {
                0 => FleetView {
                    name,
                    ..local_fleet(instances)
                },
                1 => ssh_fleet(&name, instances),
                _ => {
                    let nodes = match seed.max {
                        Some(max) => format!("0..{max}"),
                        None => "0..".to_string(),
                    };
                    cloud_fleet(
                        &name,
                        &nodes,
                        &format!("blocks: {}\n{placement}", seed.blocks),
                        instances,
                    )
                }
            }
        })
        .collect()
}

fn build_jobs(seeds: &[JobSeed]) -> Vec<PendingJob> {
    let mut jobs = Vec::new();
    for (r, seed) in seeds.iter().enumerate() {
        for n in 0..seed.nodes {
            let mut j = node(r as u64 + 1, n, seed.nodes, seed.gpu);
            j.submitted_at = Timestamp(r as u64 * 1000);
            j.priority = seed.priority;
            if seed.reuse {
                j.terms.creation_policy = CreationPolicy::Reuse;
            }
            if seed.only_first_fleet {
                j.fleets = Some(vec!["fleet-0".to_string()]);
            }
            jobs.push(j);
        }
    }
    jobs
}

fn offers() -> StaticOffers {
    StaticOffers::new(vec![
        offer("aws", "a100-1", "A100", 1, 2.0),
        offer("aws", "a100-8", "A100", 8, 15.0),
        offer("gcp", "h100-8", "H100", 8, 30.0),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn placement_invariants(
        fleet_seeds in prop::collection::vec(fleet_seed(), 1..5),
        job_seeds in prop::collection::vec(job_seed(), 1..16),
    ) {
        let fleets = build_fleets(&fleet_seeds);
        let jobs = build_jobs(&job_seeds);
        let decisions = schedule_with(&jobs, &fleets, &offers(), Timestamp(0));

        // Every job gets exactly one decision.
        let keys: HashSet<JobKey> = decisions.iter().map(|d| d.key()).collect();
        prop_assert_eq!(keys.len(), decisions.len());
        prop_assert_eq!(decisions.len(), jobs.len());

        let slots: HashMap<u64, (&FleetView, &InstanceSlot)> = fleets
            .iter()
            .flat_map(|f| f.instances.iter().map(move |i| (i.id, (f, i))))
            .collect();
        let mut blocks_taken: HashMap<u64, u32> = HashMap::new();
        let mut gpus_taken: HashMap<u64, HashSet<u32>> = HashMap::new();
        let mut provisions: HashMap<&str, u32> = HashMap::new();
        for d in &decisions {
            match d {
                Decision::Place(p) => {
                    let (fleet, slot) = slots[&p.instance_id];
                    prop_assert_eq!(&fleet.name, &p.fleet);
                    // Never on an unusable instance.
                    prop_assert!(!slot.unreachable && !slot.unhealthy, "{:?} on {:?}", p, slot);
                    prop_assert!(matches!(slot.status, InstanceStatus::Idle | InstanceStatus::Busy));
                    // Never a GPU held already or given twice.
                    let taken = gpus_taken.entry(p.instance_id).or_default();
                    for g in &p.gpus {
                        prop_assert!((*g as usize) < slot.resources.gpus.len());
                        prop_assert!(!slot.busy_gpus.contains(g), "GPU {} is busy on {}", g, slot.name);
                        prop_assert!(taken.insert(*g), "GPU {} given twice on {}", g, slot.name);
                    }
                    // Never more blocks than are free.
                    let blocks = blocks_taken.entry(p.instance_id).or_default();
                    *blocks += p.blocks;
                    prop_assert!(*blocks + slot.busy_blocks <= slot.total_blocks);
                }
                Decision::Provision(p) => {
                    *provisions.entry(p.fleet.as_str()).or_default() += 1;
                    prop_assert!(!p.offer.instance_type.is_empty());
                }
                Decision::Wait { .. } | Decision::Fail { .. } => {}
            }
        }
        // One pass never provisions past nodes.max, and never in a fleet of existing hosts.
        for fleet in &fleets {
            let made = provisions.get(fleet.name.as_str()).copied().unwrap_or(0);
            if fleet.is_host_fleet() {
                prop_assert_eq!(made, 0);
            }
            if let Some(max) = fleet.config.as_ref().and_then(|c| c.nodes).and_then(|n| n.max) {
                let active = fleet.instances.iter().filter(|i| i.active()).count() as u32;
                prop_assert!(made <= max.saturating_sub(active), "{} made {} with max {} and {} active", fleet.name, made, max, active);
            }
        }
        // A replica is placed whole, in one fleet, or not at all.
        let mut replicas: HashMap<u64, Vec<&Decision>> = HashMap::new();
        for d in &decisions {
            replicas.entry(d.key().run_id).or_default().push(d);
        }
        for (run, ds) in replicas {
            let placed: Vec<&str> = ds
                .iter()
                .filter_map(|d| match d {
                    Decision::Place(p) => Some(p.fleet.as_str()),
                    Decision::Provision(p) => Some(p.fleet.as_str()),
                    _ => None,
                })
                .collect();
            prop_assert!(placed.is_empty() || placed.len() == ds.len(), "run {} split: {:?}", run, ds);
            prop_assert!(placed.windows(2).all(|w| w[0] == w[1]), "run {} over fleets: {:?}", run, ds);
        }
    }
}
