//! Multi-node replicas (SPEC section 5, step 6): all pending jobs of a replica are placed
//! together in one `placement: cluster` fleet, each on a whole idle instance or a new one,
//! master (job 0) first; when they cannot all be placed now, none is. Jobs other than the
//! master wait until the master is placed, then follow it into its fleet.

use super::messages;
use super::pass::{Entry, GroupFleet, InstState, Pass};
use super::{Decision, PendingJob};
use flotilla_protocol::config::CreationPolicy;
use std::cmp::Ordering;

/// Where one job of the replica would go: an idle instance, or a new one from the offers of
/// candidate `k` of group `g`.
enum Slot {
    Pool(Entry),
    New { g: usize, k: usize },
}

/// The replica in one fleet, and the fleet's priority tuple.
struct Plan {
    slots: Vec<Slot>,
    /// `(needs a new instance, cheapest pool price, cheapest backend price)`.
    priority: (bool, f64, f64),
}

fn compare(a: &(bool, f64, f64), b: &(bool, f64, f64)) -> Ordering {
    a.0.cmp(&b.0)
        .then(a.1.total_cmp(&b.1))
        .then(a.2.total_cmp(&b.2))
}

/// Decides every pending job of one replica (`members`, sorted by job number).
pub(super) fn place_replica<'a>(pass: &mut Pass<'a>, members: &[&'a PendingJob]) -> Vec<Decision> {
    let Some(master) = members.first() else {
        return Vec::new();
    };
    if master.key.job_num != 0 && members.iter().any(|j| j.master_fleet.is_none()) {
        return members
            .iter()
            .map(|j| Decision::Wait {
                key: j.key,
                reason: messages::waiting_for_master(j),
            })
            .collect();
    }
    let groups: Vec<usize> = members.iter().map(|j| pass.group_of(j)).collect();
    let nodes = members.len() as u32;
    let mut best: Option<Plan> = None;
    for c in 0..pass.groups[groups[0]].fleets.len() {
        let f = pass.groups[groups[0]].fleets[c].fleet;
        if !pass.has_room(f, nodes) {
            continue;
        }
        let Some(plan) = plan_in_fleet(pass, f, members, &groups) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|b| compare(&plan.priority, &b.priority) == Ordering::Less)
        {
            best = Some(plan);
        }
    }
    let Some(plan) = best else {
        return pass.no_room_for(groups[0], members);
    };
    let mut out = Vec::with_capacity(members.len());
    for (job, slot) in members.iter().zip(plan.slots) {
        match slot {
            Slot::Pool(e) => out.push(pass.take(job.key, e.inst, e.blocks, e.price)),
            Slot::New { g, k } => {
                if let Some(d) = pass.provision(job, g, k) {
                    out.push(d);
                }
            }
        }
    }
    out
}

/// The first whole idle instance of `gf` not in `used`; entries too full are skipped for
/// good (blocks are only ever taken during a pass).
fn first_free(insts: &[InstState<'_>], gf: &mut GroupFleet, used: &[usize]) -> Option<Entry> {
    while let Some(e) = gf.entries.get(gf.cursor) {
        if insts[e.inst].fits(e.blocks) {
            break;
        }
        gf.cursor += 1;
    }
    gf.entries[gf.cursor..]
        .iter()
        .find(|e| !used.contains(&e.inst) && insts[e.inst].fits(e.blocks))
        .copied()
}

/// Every job of the replica in fleet `f`: whole idle instances first (cheapest first), new
/// instances for the rest where the fleet may create them; `None` when they do not all fit.
fn plan_in_fleet(
    pass: &mut Pass<'_>,
    f: usize,
    members: &[&PendingJob],
    groups: &[usize],
) -> Option<Plan> {
    let mut used = Vec::new();
    let mut slots = Vec::with_capacity(members.len());
    let mut new_instances = 0u32;
    let mut master_k = None;
    for (job, &g) in members.iter().zip(groups) {
        let k = pass.groups[g].fleets.iter().position(|gf| gf.fleet == f)?;
        master_k.get_or_insert(k);
        if let Some(e) = first_free(&pass.insts, &mut pass.groups[g].fleets[k], &used) {
            used.push(e.inst);
            slots.push(Slot::Pool(e));
            continue;
        }
        if job.terms.creation_policy == CreationPolicy::Reuse {
            return None;
        }
        pass.fleet_offers(g, k, job).cheapest()?;
        new_instances += 1;
        slots.push(Slot::New { g, k });
    }
    if new_instances > 0 && !pass.may_provision(f, new_instances) {
        return None;
    }
    let pool = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Pool(e) => Some(e.price),
            Slot::New { .. } => None,
        })
        .fold(f64::INFINITY, f64::min);
    let backend = pass.cheapest_backend(groups[0], master_k?, members[0], new_instances.max(1));
    Some(Plan {
        slots,
        priority: (new_instances > 0, pool, backend),
    })
}
