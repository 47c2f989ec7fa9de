//! The placement pass (SPEC section 5): jobs by priority, then age; for each, the candidate
//! fleets, their pool and backend offers, the fleet priority tuple, and the decision.
//!
//! Jobs with the same requirements and terms form a group. A group computes once which
//! instances could hold its jobs and how many blocks each takes, kept per fleet cheapest
//! first; the pass only ever consumes blocks, so an instance too full for the group now stays
//! too full, and each fleet's list is walked with a cursor that never goes back. Backend offers
//! are asked for lazily, once per (group, fleet). A group that found no room once gives every
//! later job of the pass the same answer.

use super::offer_sources::{NoBackendOffers, OfferSource};
use super::pass::{Entry, Pass};
use super::{Decision, FleetView, PendingJob};
use flotilla_protocol::config::CreationPolicy;
use flotilla_protocol::Timestamp;
use std::collections::HashMap;

/// How many backend offers a new instance may be tried from, cheapest first.
pub const MAX_PROVISION_OFFERS: usize = 25;

/// Decides, for every pending job, where it goes now, or why it waits or fails, using
/// existing instances only (no backend offers).
pub fn schedule(jobs: &[PendingJob], fleets: &[FleetView], now: Timestamp) -> Vec<Decision> {
    schedule_with(jobs, fleets, &NoBackendOffers, now)
}

/// Decides, for every pending job, where it goes now: an existing instance, a new one from
/// `offers`, or why it waits or fails. Decisions come in the order the jobs were taken.
pub fn schedule_with(
    jobs: &[PendingJob],
    fleets: &[FleetView],
    offers: &dyn OfferSource,
    _now: Timestamp,
) -> Vec<Decision> {
    let mut order: Vec<&PendingJob> = jobs.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.submitted_at.cmp(&b.submitted_at))
            .then(a.key.cmp(&b.key))
    });
    let mut replicas: HashMap<(u64, u32), Vec<&PendingJob>> = HashMap::new();
    for job in order.iter().filter(|j| j.nodes > 1) {
        replicas
            .entry((job.key.run_id, job.key.replica_num))
            .or_default()
            .push(job);
    }
    let mut pass = Pass::new(fleets, offers);
    let mut out = Vec::with_capacity(jobs.len());
    for job in order {
        if job.nodes > 1 {
            // The whole replica is decided when its first job in the order comes up.
            let Some(mut members) = replicas.remove(&(job.key.run_id, job.key.replica_num)) else {
                continue;
            };
            members.sort_by_key(|j| j.key.job_num);
            members.dedup_by_key(|j| j.key.job_num);
            out.extend(super::replicas::place_replica(&mut pass, &members));
        } else {
            out.push(pass.place_single(job));
        }
    }
    out
}

impl<'a> Pass<'a> {
    /// SPEC section 5 for a single-node job.
    fn place_single(&mut self, job: &'a PendingJob) -> Decision {
        let g = self.group_of(job);
        if let Some(outcome) = &self.groups[g].outcome {
            return outcome.for_job(job.key);
        }
        // Pool: the cheapest idle share per fleet with room; the smallest price wins.
        let mut best: Option<(usize, Entry)> = None;
        let mut tied = false;
        for k in 0..self.groups[g].fleets.len() {
            let Some(e) = self.pool_offer(g, k) else {
                continue;
            };
            match best {
                Some((_, b)) if e.price == b.price => tied = true,
                Some((_, b)) if e.price > b.price => {}
                _ => {
                    best = Some((k, e));
                    tied = false;
                }
            }
        }
        if let Some((first, mut chosen)) = best {
            if tied {
                // Equal pool prices: the fleet with the cheaper backend offer, then fleet order.
                let mut chosen_backend = self.cheapest_backend(g, first, job, 1);
                for k in first + 1..self.groups[g].fleets.len() {
                    let Some(e) = self.pool_offer(g, k).filter(|e| e.price == chosen.price) else {
                        continue;
                    };
                    let backend = self.cheapest_backend(g, k, job, 1);
                    if backend < chosen_backend {
                        chosen = e;
                        chosen_backend = backend;
                    }
                }
            }
            return self.take(job.key, chosen.inst, chosen.blocks, chosen.price);
        }
        // Backend: the cheapest offer of a fleet that may create an instance.
        if job.terms.creation_policy != CreationPolicy::Reuse {
            let mut cheapest: Option<(f64, usize)> = None;
            for k in 0..self.groups[g].fleets.len() {
                let f = self.groups[g].fleets[k].fleet;
                if !self.has_room(f, 1) || !self.may_provision(f, 1) {
                    continue;
                }
                let price = self.cheapest_backend(g, k, job, 1);
                if price.is_finite() && cheapest.is_none_or(|(p, _)| price < p) {
                    cheapest = Some((price, k));
                }
            }
            if let Some((_, k)) = cheapest {
                if let Some(decision) = self.provision(job, g, k) {
                    return decision;
                }
            }
        }
        let outcome = self.no_room(g, job, 1);
        self.groups[g].outcome = Some(outcome.clone());
        outcome.for_job(job.key)
    }

    /// The cheapest idle pool offer of candidate `k` of group `g`, when its fleet may have room.
    fn pool_offer(&mut self, g: usize, k: usize) -> Option<Entry> {
        if !self.has_room(self.groups[g].fleets[k].fleet, 1) {
            return None;
        }
        Self::first_fit(&self.insts, &mut self.groups[g].fleets[k])
    }
}
