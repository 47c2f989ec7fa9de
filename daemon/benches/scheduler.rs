//! Scheduler benchmark: one placement pass of 10,000 pending jobs against 2,000 instances in
//! 200 fleets (goal: every decision in under 100 ms), printing placements per second.
//!
//! The world is synthetic but shaped like a real one, built from a fixed seed: instances of
//! five machine shapes from the catalogs (8xH100, 8xA100, 4xL40S, 1xA10G, 2xRTX4090) split
//! into blocks, about a third partly busy; 20 SSH fleets, 20 `placement: cluster` fleets and
//! 160 cloud fleets with `nodes.max` limits; jobs from ten requirement templates with mixed
//! priorities, some with `fleets:`, `max_price` or `creation_policy: reuse`, and a few 2-node
//! replicas. Backend offers come from the real catalogs in `shared/catalogs` when present
//! (else a small synthetic list).
//!
//! Run: `cargo bench -p flotilla-daemon --bench scheduler`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flotilla_daemon::catalog::{exact_spec, load};
use flotilla_daemon::scheduler::{
    schedule_with, Decision, FleetView, InstanceSlot, JobKey, OfferSource, PendingJob, StaticOffers,
};
use flotilla_protocol::config::{
    parse_configuration, Configuration, CpuArch, CreationPolicy, GpuVendor, ResourcesSpec,
};
use flotilla_protocol::model::{Availability, Gpu, InstanceResources, InstanceStatus, Offer};
use flotilla_protocol::Timestamp;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const JOBS: usize = 10_000;
const FLEETS: usize = 200;
const INSTANCES_PER_FLEET: usize = 10;

/// A small deterministic generator (64-bit LCG), so every run sees the same world.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (GPU name, GPUs, GB per GPU, CPUs, memory GB, blocks, $/h)
const SHAPES: [(&str, usize, f64, u32, f64, u32, f64); 5] = [
    ("H100", 8, 80.0, 192, 1536.0, 8, 24.0),
    ("A100", 8, 80.0, 128, 1024.0, 4, 14.0),
    ("L40S", 4, 48.0, 64, 512.0, 4, 6.0),
    ("A10G", 1, 24.0, 16, 64.0, 1, 1.0),
    ("RTX4090", 2, 24.0, 32, 128.0, 2, 0.8),
];

const TEMPLATES: [&str; 10] = [
    "H100:1",
    "H100:1",
    "H100:2",
    "A100:1",
    "A100:4",
    "L40S:1",
    "A10G:1",
    "RTX4090:1",
    "24GB..:1",
    "H100:8",
];

fn machine(shape: usize) -> InstanceResources {
    let (name, gpus, gpu_memory, cpus, memory, _, _) = SHAPES[shape];
    InstanceResources {
        cpus,
        cpu_arch: CpuArch::X86,
        memory_gb: memory,
        disk_gb: Some(2000.0),
        gpus: vec![
            Gpu {
                name: name.to_string(),
                memory_gb: gpu_memory,
                vendor: GpuVendor::Nvidia,
            };
            gpus
        ],
    }
}

fn fleet_config(body: &str) -> Option<flotilla_protocol::config::FleetConfig> {
    match parse_configuration("fleet.yml", &format!("type: fleet\n{body}")) {
        Ok(Configuration::Fleet(c)) => Some(c),
        other => panic!("bad bench fleet: {other:?}"),
    }
}

fn world(rng: &mut Lcg) -> Vec<FleetView> {
    let mut next_id = 1;
    (0..FLEETS)
        .map(|f| {
            let name = format!("fleet-{f}");
            let instances: Vec<InstanceSlot> = (0..INSTANCES_PER_FLEET)
                .map(|n| {
                    let shape = (f + n % 2) % SHAPES.len();
                    let (_, gpus, _, _, _, blocks, price) = SHAPES[shape];
                    let busy = if rng.below(3) == 0 {
                        rng.below(u64::from(blocks) + 1) as u32
                    } else {
                        0
                    };
                    let per_block = gpus as u32 / blocks;
                    let slot = InstanceSlot {
                        id: next_id,
                        name: format!("{name}-{n}"),
                        status: if busy > 0 {
                            InstanceStatus::Busy
                        } else {
                            InstanceStatus::Idle
                        },
                        unreachable: rng.below(50) == 0,
                        resources: machine(shape),
                        total_blocks: blocks,
                        busy_blocks: busy,
                        busy_gpus: (0..busy * per_block).collect(),
                        price: price * (1.0 + (f % 7) as f64 * 0.05),
                        backend: if f % 10 == 0 { "ssh" } else { "aws" }.to_string(),
                        region: "us-east-1".to_string(),
                        ..InstanceSlot::default()
                    };
                    next_id += 1;
                    slot
                })
                .collect();
            let config = match f % 10 {
                0 => {
                    let hosts: String = instances
                        .iter()
                        .map(|i| format!("    - {}\n", i.name))
                        .collect();
                    fleet_config(&format!("ssh_config:\n  user: ubuntu\n  hosts:\n{hosts}"))
                }
                1 => fleet_config("nodes: 0..16\nplacement: cluster\n"),
                _ => fleet_config(&format!(
                    "nodes: 0..{}\nblocks: auto\n",
                    INSTANCES_PER_FLEET + f % 20
                )),
            };
            FleetView {
                name,
                instances,
                config,
                terminating: false,
            }
        })
        .collect()
}

fn jobs(rng: &mut Lcg) -> Vec<PendingJob> {
    let mut out = Vec::with_capacity(JOBS);
    let mut run = 0u64;
    while out.len() < JOBS {
        run += 1;
        let template = TEMPLATES[rng.below(TEMPLATES.len() as u64) as usize];
        let nodes = if rng.below(100) == 0 { 2 } else { 1 };
        let mut job = PendingJob {
            priority: rng.below(4) as u32,
            submitted_at: Timestamp(run * 1000),
            requirements: ResourcesSpec {
                gpu: ResourcesSpec::parse_gpu(if nodes > 1 { "H100:8" } else { template })
                    .unwrap_or_default(),
                ..ResourcesSpec::default()
            },
            nodes,
            ..PendingJob::default()
        };
        match rng.below(20) {
            0 => job.fleets = Some(vec![format!("fleet-{}", rng.below(FLEETS as u64))]),
            1 => job.terms.creation_policy = CreationPolicy::Reuse,
            2 => job.max_price = Some(10.0),
            _ => {}
        }
        for n in 0..nodes {
            let mut j = job.clone();
            j.key = JobKey {
                run_id: run,
                replica_num: 0,
                job_num: n,
            };
            j.label = format!("run-{run}/0/{n}");
            out.push(j);
        }
    }
    out.truncate(JOBS);
    out
}

/// The real catalogs when they are there, else a few offers per shape.
fn offer_source() -> (Box<dyn OfferSource>, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/catalogs");
    if let Ok(catalog) = load::load_dir(&dir) {
        if !catalog.is_empty() {
            let rows = catalog.len();
            return (Box::new(catalog), format!("{rows} catalog rows"));
        }
    }
    let offers: Vec<Offer> = (0..SHAPES.len())
        .flat_map(|shape| {
            (0..5).map(move |k| Offer {
                backend: format!("cloud-{k}"),
                region: "us-east-1".to_string(),
                instance_type: format!("{}-{k}", SHAPES[shape].0),
                resources: exact_spec(&machine(shape)),
                price: SHAPES[shape].6 * (1.2 + k as f64 * 0.1),
                spot: false,
                availability: Availability::Available,
                fleet: None,
                instance: None,
                blocks: None,
                total_blocks: None,
            })
        })
        .collect();
    let count = offers.len();
    (
        Box::new(StaticOffers::new(offers)),
        format!("{count} synthetic offers"),
    )
}

fn bench_scheduler(c: &mut Criterion) {
    let mut rng = Lcg(0x5eed);
    let fleets = world(&mut rng);
    let jobs = jobs(&mut rng);
    let (offers, source) = offer_source();
    let now = Timestamp(1_700_000_000_000);

    // One pass on its own, to report what it decided and how fast.
    let started = Instant::now();
    let decisions = schedule_with(&jobs, &fleets, offers.as_ref(), now);
    let elapsed = started.elapsed();
    let count = |f: fn(&Decision) -> bool| decisions.iter().filter(|d| f(d)).count();
    let placed = count(|d| matches!(d, Decision::Place(_)));
    let provisioned = count(|d| matches!(d, Decision::Provision(_)));
    let waiting = count(|d| matches!(d, Decision::Wait { .. }));
    let failed = count(|d| matches!(d, Decision::Fail { .. }));
    println!(
        "scheduler: {} jobs, {} instances in {} fleets, {source}: {placed} placed, \
         {provisioned} provisioned, {waiting} waiting, {failed} failed in {:.1} ms \
         ({:.0} decisions/s)",
        jobs.len(),
        FLEETS * INSTANCES_PER_FLEET,
        FLEETS,
        elapsed.as_secs_f64() * 1000.0,
        decisions.len() as f64 / elapsed.as_secs_f64(),
    );

    let mut group = c.benchmark_group("scheduler");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("schedule_10k_jobs_2k_instances_200_fleets", |b| {
        b.iter(|| schedule_with(black_box(&jobs), black_box(&fleets), offers.as_ref(), now))
    });
    group.finish();

    // The median of ten passes outside criterion, as placements and decisions per second.
    let mut times: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            black_box(schedule_with(&jobs, &fleets, offers.as_ref(), now));
            t.elapsed()
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    let secs = median.as_secs_f64();
    println!(
        "scheduler: median pass {:.1} ms (goal: under 100 ms): {:.0} placements/s \
         ({} placed or provisioned), {:.0} decisions/s",
        secs * 1000.0,
        (placed + provisioned) as f64 / secs,
        placed + provisioned,
        JOBS as f64 / secs
    );
}

criterion_group!(benches, bench_scheduler);
criterion_main!(benches);
