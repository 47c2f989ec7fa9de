//! Pure placement: (pending jobs, fleets with their instances and block usage, now) -> decisions.
//!
//! No I/O and no clock: the caller passes everything in and applies the decisions. Jobs are
//! taken by priority (high first), then oldest first (SPEC section 5).

use crate::catalog::matching::resources_match;
use flotilla_protocol::config::ResourcesSpec;
use flotilla_protocol::model::{
    Availability, InstanceResources, InstanceStatus, JobTerminationReason, Offer,
};
use flotilla_protocol::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub run_id: u64,
    pub replica_num: u32,
    pub job_num: u32,
}

#[derive(Debug, Clone)]
pub struct PendingJob {
    pub key: JobKey,
    /// `run/replica/job`, for messages.
    pub label: String,
    pub priority: u32,
    pub submitted_at: Timestamp,
    pub requirements: ResourcesSpec,
    /// The run's `fleets:`; `None` = any fleet.
    pub fleets: Option<Vec<String>>,
    pub max_price: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct InstanceSlot {
    pub id: u64,
    pub name: String,
    pub status: InstanceStatus,
    pub unreachable: bool,
    pub resources: InstanceResources,
    pub total_blocks: u32,
    pub busy_blocks: u32,
    /// GPU indices held by running jobs.
    pub busy_gpus: Vec<u32>,
    pub price: f64,
    pub backend: String,
    pub region: String,
}

#[derive(Debug, Clone)]
pub struct FleetView {
    pub name: String,
    pub instances: Vec<InstanceSlot>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub key: JobKey,
    pub fleet: String,
    pub instance_id: u64,
    pub instance: String,
    pub blocks: u32,
    pub gpus: Vec<u32>,
    /// The job's share of the instance's hourly price.
    pub price: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Place(Placement),
    /// Something in a fleet could take the job once it is free.
    Wait {
        key: JobKey,
        reason: String,
    },
    Fail {
        key: JobKey,
        reason: JobTerminationReason,
        message: String,
    },
}

impl InstanceSlot {
    fn usable(&self) -> bool {
        matches!(self.status, InstanceStatus::Idle | InstanceStatus::Busy) && !self.unreachable
    }

    fn gpus_per_block(&self) -> u32 {
        self.resources.gpus.len() as u32 / self.total_blocks.max(1)
    }

    /// The smallest number of blocks whose share of this instance satisfies `req`,
    /// looking at `available` blocks.
    pub fn blocks_for(&self, req: &ResourcesSpec, available: u32) -> Option<u32> {
        (1..=available)
            .find(|&n| resources_match(req, &self.resources.share(n, self.total_blocks.max(1))))
    }
}

/// Decides, for every pending job, where it goes now, or why it waits or fails.
pub fn schedule(jobs: &[PendingJob], fleets: &[FleetView], _now: Timestamp) -> Vec<Decision> {
    let mut order: Vec<&PendingJob> = jobs.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.submitted_at.cmp(&b.submitted_at))
            .then(a.key.cmp(&b.key))
    });
    let mut fleets: Vec<FleetView> = fleets.to_vec();
    let mut out = Vec::with_capacity(order.len());
    for job in order {
        out.push(place_job(job, &mut fleets));
    }
    out
}

fn place_job(job: &PendingJob, fleets: &mut [FleetView]) -> Decision {
    let candidates: Vec<usize> = fleets
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            job.fleets
                .as_ref()
                .is_none_or(|names| names.contains(&f.name))
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return Decision::Fail {
            key: job.key,
            reason: JobTerminationReason::FailedToStartDueToNoCapacity,
            message: match &job.fleets {
                Some(names) => format!("no fleets: none of {} exists", names.join(", ")),
                None => "no fleets".to_string(),
            },
        };
    }
    // The cheapest free share of an instance, over all candidate fleets.
    let mut best: Option<(f64, u32, usize, usize)> = None; // (price, blocks, fleet, instance)
    let mut busy_fits: Vec<String> = Vec::new();
    for &fi in &candidates {
        for (ii, inst) in fleets[fi].instances.iter().enumerate() {
            if !inst.usable() {
                continue;
            }
            let total = inst.total_blocks.max(1);
            let Some(needed) = inst.blocks_for(&job.requirements, total) else {
                continue;
            };
            let free = total.saturating_sub(inst.busy_blocks);
            let price = inst.price * f64::from(needed) / f64::from(total);
            if job.max_price.is_some_and(|m| price > m) {
                continue;
            }
            if needed > free {
                busy_fits.push(format!(
                    "{}/{} {}/{} busy",
                    fleets[fi].name, inst.name, inst.busy_blocks, total
                ));
                continue;
            }
            let better = best.is_none_or(|(p, b, _, _)| price < p || (price == p && needed < b));
            if better {
                best = Some((price, needed, fi, ii));
            }
        }
    }
    if let Some((price, blocks, fi, ii)) = best {
        let fleet_name = fleets[fi].name.clone();
        let inst = &mut fleets[fi].instances[ii];
        let want = (inst.gpus_per_block() * blocks) as usize;
        let gpus: Vec<u32> = (0..inst.resources.gpus.len() as u32)
            .filter(|g| !inst.busy_gpus.contains(g))
            .take(want)
            .collect();
        inst.busy_blocks += blocks;
        inst.busy_gpus.extend(&gpus);
        return Decision::Place(Placement {
            key: job.key,
            fleet: fleet_name,
            instance_id: inst.id,
            instance: inst.name.clone(),
            blocks,
            gpus,
            price,
        });
    }
    if !busy_fits.is_empty() {
        return Decision::Wait {
            key: job.key,
            reason: format!(
                "no fleet has a free block for {}: {}",
                describe(&job.requirements),
                busy_fits.join(", ")
            ),
        };
    }
    Decision::Fail {
        key: job.key,
        reason: JobTerminationReason::FailedToStartDueToNoCapacity,
        message: format!(
            "no offers: no instance in {} matches {}",
            candidates
                .iter()
                .map(|&i| fleets[i].name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            describe(&job.requirements)
        ),
    }
}

/// Offers from instances already in fleets: each usable instance whose share fits `req`,
/// `idle` when that many blocks are free now, `busy` otherwise (SPEC section 3).
pub fn pool_offers(
    fleets: &[FleetView],
    req: &ResourcesSpec,
    only: Option<&[String]>,
) -> Vec<Offer> {
    let mut out = Vec::new();
    for f in fleets {
        if only.is_some_and(|names| !names.contains(&f.name)) {
            continue;
        }
        for inst in f.instances.iter().filter(|i| i.usable()) {
            let total = inst.total_blocks.max(1);
            let Some(n) = inst.blocks_for(req, total) else {
                continue;
            };
            let free = total.saturating_sub(inst.busy_blocks);
            out.push(Offer {
                backend: inst.backend.clone(),
                region: inst.region.clone(),
                instance_type: inst.name.clone(),
                resources: crate::catalog::matching::exact_spec(&inst.resources.share(n, total)),
                price: inst.price * f64::from(n) / f64::from(total),
                spot: false,
                availability: if n <= free {
                    Availability::Idle
                } else {
                    Availability::Busy
                },
                fleet: Some(f.name.clone()),
                instance: Some(inst.name.clone()),
                blocks: Some(n),
                total_blocks: Some(total),
            });
        }
    }
    out
}

/// `A100 GPU`, `2 GPUs`, or `a CPU-only job`, for messages.
fn describe(req: &ResourcesSpec) -> String {
    if req.gpu.count.max == Some(0) || req.gpu.count.min.unwrap_or(0) == 0 {
        return "a CPU job".to_string();
    }
    match &req.gpu.name {
        Some(names) if !names.is_empty() => format!("a {} GPU", names.join("/")),
        _ => "a GPU".to_string(),
    }
}
