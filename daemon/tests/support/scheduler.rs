//! Builders shared by the scheduler tests (included with `#[path]`; a file under `tests/support/`
//! is no test target of its own): machines, instances,
//! fleets from real fleet YAML, pending jobs, backend offers, and decision helpers.
#![allow(dead_code)]

use flotilla_daemon::catalog::exact_spec;
use flotilla_daemon::scheduler::{Decision, FleetView, InstanceSlot, JobKey, PendingJob};
use flotilla_protocol::config::{
    parse_configuration, Configuration, CpuArch, GpuVendor, ResourcesSpec,
};
use flotilla_protocol::model::{Availability, Gpu, InstanceResources, InstanceStatus, Offer};
use flotilla_protocol::Timestamp;

/// A machine with `cpus`, `memory` GB and `count` GPUs `name` of 80 GB each (no stated disk).
pub fn machine(cpus: u32, memory: f64, name: &str, count: usize) -> InstanceResources {
    InstanceResources {
        cpus,
        cpu_arch: CpuArch::X86,
        memory_gb: memory,
        disk_gb: None,
        gpus: vec![
            Gpu {
                name: name.to_string(),
                memory_gb: 80.0,
                vendor: GpuVendor::Nvidia,
            };
            count
        ],
    }
}

/// An idle, reachable instance of `resources` split into `blocks`, at `price` $/h.
pub fn instance(
    id: u64,
    name: &str,
    resources: InstanceResources,
    blocks: u32,
    price: f64,
) -> InstanceSlot {
    InstanceSlot {
        id,
        name: name.to_string(),
        status: InstanceStatus::Idle,
        resources,
        total_blocks: blocks,
        price,
        backend: "aws".to_string(),
        region: "us-east-1".to_string(),
        ..InstanceSlot::default()
    }
}

/// `instance` with `busy` of its blocks held (and the GPUs of those blocks).
pub fn busy(mut slot: InstanceSlot, busy: u32) -> InstanceSlot {
    let per_block = slot.resources.gpus.len() as u32 / slot.total_blocks.max(1);
    slot.busy_blocks = busy;
    slot.busy_gpus = (0..busy * per_block).collect();
    slot.status = if busy > 0 {
        InstanceStatus::Busy
    } else {
        InstanceStatus::Idle
    };
    slot
}

/// A fleet named `name` from the body of a fleet file (everything after `type: fleet`).
pub fn fleet(name: &str, yaml_body: &str, instances: Vec<InstanceSlot>) -> FleetView {
    let text = format!("type: fleet\n{yaml_body}");
    let config = match parse_configuration("fleet.yml", &text) {
        Ok(Configuration::Fleet(mut c)) => {
            c.name = Some(name.to_string());
            c
        }
        Ok(other) => panic!("not a fleet: {}", other.type_name()),
        Err(e) => panic!("fleet {name}: {e}"),
    };
    FleetView {
        name: name.to_string(),
        instances,
        config: Some(config),
        terminating: false,
    }
}

/// A cloud fleet of `nodes` (`"0..4"`, `2`, ...) with extra YAML lines.
pub fn cloud_fleet(
    name: &str,
    nodes: &str,
    extra: &str,
    instances: Vec<InstanceSlot>,
) -> FleetView {
    fleet(name, &format!("nodes: {nodes}\n{extra}"), instances)
}

/// An SSH fleet whose hosts are `instances`.
pub fn ssh_fleet(name: &str, instances: Vec<InstanceSlot>) -> FleetView {
    let mut hosts: String = instances
        .iter()
        .map(|i| format!("    - {}\n", i.name))
        .collect();
    if hosts.is_empty() {
        // A fleet file lists at least one host; this one has not come up.
        hosts.push_str("    - unreachable-host\n");
    }
    let mut f = fleet(
        name,
        &format!("ssh_config:\n  user: ubuntu\n  hosts:\n{hosts}"),
        instances,
    );
    for i in &mut f.instances {
        i.backend = "ssh".to_string();
        i.region = "remote".to_string();
    }
    f
}

/// The built-in local fleet (no configuration).
pub fn local_fleet(instances: Vec<InstanceSlot>) -> FleetView {
    FleetView {
        name: "local".to_string(),
        instances,
        config: None,
        terminating: false,
    }
}

/// A requirement in the CLI's GPU grammar (`A100:1`, `0`, `H100:8`); the other parts keep
/// their defaults (the disk filter does not apply: test machines state no disk).
pub fn req(gpu: &str) -> ResourcesSpec {
    ResourcesSpec {
        gpu: ResourcesSpec::parse_gpu(gpu).unwrap_or_else(|e| panic!("gpu {gpu}: {e}")),
        ..ResourcesSpec::default()
    }
}

/// A single-node job of run `run` asking for `gpu`, submitted at second `at`.
pub fn job(run: u64, gpu: &str, at: u64) -> PendingJob {
    PendingJob {
        key: JobKey {
            run_id: run,
            replica_num: 0,
            job_num: 0,
        },
        label: format!("run-{run}/0/0"),
        submitted_at: Timestamp(at * 1000),
        requirements: req(gpu),
        ..PendingJob::default()
    }
}

/// Job `job_num` of a `nodes`-node replica of run `run`.
pub fn node(run: u64, job_num: u32, nodes: u32, gpu: &str) -> PendingJob {
    let mut j = job(run, gpu, 0);
    j.key.job_num = job_num;
    j.label = format!("run-{run}/0/{job_num}");
    j.nodes = nodes;
    j
}

/// A backend offer of `count` GPUs `name` (8 CPUs and 64 GB per GPU).
pub fn offer(backend: &str, instance_type: &str, name: &str, count: usize, price: f64) -> Offer {
    let cpus = 8 * count.max(1) as u32;
    let resources = machine(cpus, 64.0 * count.max(1) as f64, name, count);
    Offer {
        backend: backend.to_string(),
        region: "us-east-1".to_string(),
        instance_type: instance_type.to_string(),
        resources: exact_spec(&resources),
        price,
        spot: false,
        availability: Availability::Available,
        fleet: None,
        instance: None,
        blocks: None,
        total_blocks: None,
    }
}

pub fn key(run: u64) -> JobKey {
    JobKey {
        run_id: run,
        replica_num: 0,
        job_num: 0,
    }
}

/// A short, comparable form of a decision: `place fleet/instance blocks [gpus]`,
/// `provision fleet type`, `wait`, `fail <message>`.
pub fn brief(d: &Decision) -> String {
    match d {
        Decision::Place(p) => format!("place {}/{} {} {:?}", p.fleet, p.instance, p.blocks, p.gpus),
        Decision::Provision(p) => format!("provision {} {}", p.fleet, p.offer.instance_type),
        Decision::Wait { .. } => "wait".to_string(),
        Decision::Fail { message, .. } => format!("fail {message}"),
    }
}

/// The decision about `key`.
pub fn about(decisions: &[Decision], key: JobKey) -> &Decision {
    decisions
        .iter()
        .find(|d| d.key() == key)
        .unwrap_or_else(|| panic!("no decision about {key:?} in {decisions:?}"))
}

/// The fixed "now" of the scheduler tables.
pub const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// One decision per job, and each job's decision starting as `expect` says (in job order).
pub fn assert_decisions(case: &str, jobs: &[PendingJob], decisions: &[Decision], expect: &[&str]) {
    assert_eq!(decisions.len(), jobs.len(), "{case}: one decision per job");
    for (job, want) in jobs.iter().zip(expect) {
        let got = brief(about(decisions, job.key));
        assert!(
            got.starts_with(want),
            "{case}: job {}: expected `{want}...`, got `{got}`",
            job.label
        );
    }
}
