//! Operations layer: the fleet occupancy read model. Which blocks and GPUs of each instance the
//! unfinished jobs hold, as the scheduler sees it ([`fleet_views`]) and as `fleet.list` shows it
//! ([`fleets_with_usage`]).

use crate::handle::Daemon;
use crate::scheduler::{FleetView, InstanceSlot};
use crate::store::StoreError;
use flotilla_protocol::model::{Fleet, FleetStatus, Instance, InstanceStatus, JobStatus, Run};
use std::collections::HashMap;
use std::sync::Arc;

/// Blocks and GPU indices that the jobs of `runs` hold, by instance id.
fn usage_by_instance(runs: &[Arc<Run>]) -> HashMap<u64, (u32, Vec<u32>)> {
    let mut usage: HashMap<u64, (u32, Vec<u32>)> = HashMap::new();
    for run in runs.iter().filter(|r| !r.status.is_finished()) {
        for job in &run.jobs {
            let s = &job.current;
            if s.status.is_on_host() || s.status == JobStatus::Provisioning {
                if let Some(id) = s.instance_id {
                    let u = usage.entry(id).or_default();
                    u.0 += s.blocks;
                    u.1.extend(&s.gpus);
                }
            }
        }
    }
    usage
}

/// The scheduler's view of `fleets`: instances with the blocks and GPUs that the jobs of
/// `runs` hold. Pure: the caller reads both once.
pub fn views_of(fleets: Vec<Fleet>, runs: &[Arc<Run>]) -> Vec<FleetView> {
    let mut usage = usage_by_instance(runs);
    fleets
        .into_iter()
        .map(|f| FleetView {
            name: f.name.clone(),
            config: f.configuration,
            terminating: matches!(
                f.status,
                FleetStatus::Terminating | FleetStatus::Terminated | FleetStatus::Failed
            ),
            instances: f
                .instances
                .into_iter()
                .map(|i| {
                    let (mut busy_blocks, mut busy_gpus) = usage.remove(&i.id).unwrap_or_default();
                    // Jobs given up while the host was away may still run there.
                    for o in &i.orphans {
                        busy_blocks += o.blocks;
                        busy_gpus.extend(&o.gpus);
                    }
                    InstanceSlot {
                        id: i.id,
                        name: i.name,
                        status: i.status,
                        unreachable: i.unreachable,
                        resources: i.resources,
                        total_blocks: i.total_blocks,
                        busy_blocks,
                        busy_gpus,
                        price: i.price,
                        backend: i.backend,
                        region: i.region,
                        created_at: i.created_at,
                        unreachable_since: i.unreachable_since,
                        software: i.software,
                        ..InstanceSlot::default()
                    }
                })
                .collect(),
        })
        .collect()
}

/// The scheduler's view of the stored fleets, with what the jobs of `runs` hold.
pub fn fleet_views(d: &Daemon, runs: &[Arc<Run>]) -> Result<Vec<FleetView>, StoreError> {
    Ok(views_of(d.store().list_fleets()?, runs))
}

/// Fleets with their instances, block usage and idle/busy status as of now.
pub fn fleets_with_usage(d: &Daemon) -> Result<Vec<Fleet>, StoreError> {
    let runs = d.store().active_runs();
    let usage = usage_by_instance(&runs);
    let mut fleets = d.store().list_fleets()?;
    for f in fleets.iter_mut() {
        for i in f.instances.iter_mut() {
            apply_usage(i, &usage);
        }
    }
    Ok(fleets)
}

fn apply_usage(i: &mut Instance, usage: &HashMap<u64, (u32, Vec<u32>)>) {
    let orphaned: u32 = i.orphans.iter().map(|o| o.blocks).sum();
    let busy_blocks = usage.get(&i.id).map(|u| u.0).unwrap_or(0) + orphaned;
    i.busy_blocks = busy_blocks;
    if matches!(i.status, InstanceStatus::Idle | InstanceStatus::Busy) {
        i.status = if busy_blocks > 0 {
            InstanceStatus::Busy
        } else {
            InstanceStatus::Idle
        };
    }
}

/// Instances that hold unfinished jobs now.
pub fn busy_instances(d: &Daemon) -> std::collections::HashSet<u64> {
    d.store()
        .active_runs()
        .iter()
        .flat_map(|r| r.jobs.iter())
        .filter(|j| !j.current.status.is_finished())
        .filter_map(|j| j.current.instance_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::model::OrphanJob;

    fn fleet_with_one_host() -> Fleet {
        let t0 = serde_json::to_value(flotilla_protocol::Timestamp(0)).expect("a time");
        serde_json::from_value(serde_json::json!({
            "id": 1, "name": "box", "status": "active", "user": "root", "created_at": t0,
            "configuration": null,
            "instances": [{
                "id": 2, "name": "box-0", "fleet": "box", "instance_num": 0, "status": "idle",
                "unreachable": false, "termination_reason": null, "backend": "ssh", "region": "-",
                "hostname": "10.0.0.1", "price": 0.0,
                "resources": {"cpus": 8, "cpu_arch": "x86", "memory_gb": 32.0, "disk_gb": 100.0, "gpus": []},
                "total_blocks": 2, "busy_blocks": 0, "created_at": t0, "error": null
            }]
        }))
        .expect("a fleet")
    }

    #[test]
    fn a_job_left_on_a_host_keeps_its_blocks_and_gpus_busy_until_it_is_gone() {
        let mut fleet = fleet_with_one_host();
        let views = views_of(vec![fleet.clone()], &[]);
        assert_eq!(views[0].instances[0].busy_blocks, 0);
        fleet.instances[0].orphans.push(OrphanJob {
            submission: 9,
            job: "orphan/0/0".into(),
            job_dir: "/home/u/.flotilla/jobs/9".into(),
            blocks: 1,
            gpus: vec![1],
        });
        let views = views_of(vec![fleet.clone()], &[]);
        let slot = &views[0].instances[0];
        assert_eq!((slot.busy_blocks, slot.busy_gpus.clone()), (1, vec![1]));
        let mut shown = fleet.instances[0].clone();
        apply_usage(&mut shown, &HashMap::new());
        assert_eq!((shown.busy_blocks, shown.status), (1, InstanceStatus::Busy));
    }
}
