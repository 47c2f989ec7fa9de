//! The pass of one scheduling round: its state (fleets, instances and their usage as
//! placements consume them, groups of jobs that place alike) and the steps that single jobs
//! (`placement`) and multi-node replicas (`replicas`) share. Neither of those imports the other.

use super::backend::{BackendCache, FleetOffers};
use super::fingerprint::FxBuild;
use super::messages::{self, BusyList, NoNewInstance};
use super::offer_sources::OfferSource;
use super::shares::{new_instance_gpus, GpuMask, ShapeTable};
use super::terms::{host_software_fits, new_instance_idle_duration, pool_instance_allowed};
use super::{
    Decision, FleetView, InstanceSlot, JobKey, JobTerms, PendingJob, Placement, Provisioning,
};
use flotilla_protocol::config::{Blocks, CreationPolicy, Placement as FleetPlacement};
use flotilla_protocol::model::JobTerminationReason;
use std::collections::HashMap;

/// What one fleet looks like during the pass.
pub(super) struct FleetState {
    /// Instances not on their way out, plus the ones this pass provisions.
    pub(super) active: u32,
    /// Active instances with a busy block, plus the ones this pass provisions.
    pub(super) busy_instances: u32,
    /// Free blocks over the active instances.
    pub(super) idle_blocks: u32,
    /// Existing hosts only (SSH or local).
    pub(super) host: bool,
    pub(super) cluster: bool,
    /// `blocks: 1` (each job takes a whole instance of its own).
    pub(super) whole: bool,
    pub(super) max: Option<u32>,
}

/// One instance during the pass: its usage as placements consume it.
pub(super) struct InstState<'a> {
    pub(super) slot: &'a InstanceSlot,
    pub(super) fleet: usize,
    /// Its shape when it may take jobs (usable); `None` otherwise.
    pub(super) shape: Option<usize>,
    pub(super) total: u32,
    pub(super) busy_blocks: u32,
    pub(super) gpus: GpuMask,
    pub(super) gpus_per_block: u32,
    /// It counts in its fleet's `active`.
    pub(super) active: bool,
}

impl InstState<'_> {
    /// Whether `n` blocks (and their GPUs) are free now.
    pub(super) fn fits(&self, n: u32) -> bool {
        self.total.saturating_sub(self.busy_blocks) >= n
            && self.gpus.free() >= n * self.gpus_per_block
    }
}

/// One instance a group's jobs could use, and the share they take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// The job's price for it ($/h): its share, or the whole machine for a multi-node job.
    pub(super) price: f64,
    pub(super) blocks: u32,
    pub(super) inst: usize,
}

/// A candidate fleet of a group.
pub(super) struct GroupFleet {
    pub(super) fleet: usize,
    /// Cheapest first; those before `cursor` are too full for the group's jobs.
    pub(super) entries: Vec<Entry>,
    pub(super) cursor: usize,
    /// The backend offers for a new instance, once asked for.
    backend: Option<FleetOffers>,
}

/// What a group answers once it found no room.
#[derive(Clone)]
pub(super) enum Outcome {
    Wait(String),
    Fail(String),
}

impl Outcome {
    pub(super) fn for_job(&self, key: JobKey) -> Decision {
        match self {
            Outcome::Wait(reason) => Decision::Wait {
                key,
                reason: reason.clone(),
            },
            Outcome::Fail(message) => Decision::Fail {
                key,
                reason: JobTerminationReason::FailedToStartDueToNoCapacity,
                message: message.clone(),
            },
        }
    }
}

pub(super) struct Group {
    /// The jobs' requirement, as the pass's shape table knows it.
    req: usize,
    pub(super) fleets: Vec<GroupFleet>,
    pub(super) outcome: Option<Outcome>,
    /// Instances that would fit but lack what the jobs' environment needs (Docker, uv).
    lacking: Vec<String>,
}

/// Jobs that place alike: same requirements, fleets, price limit and terms.
#[derive(PartialEq, Eq, Hash)]
struct GroupKey<'a> {
    req: usize,
    fleets: Option<&'a [String]>,
    max_price: Option<u64>,
    terms: &'a JobTerms,
    multi: bool,
    master_fleet: Option<&'a str>,
}

pub(super) struct Pass<'a> {
    pub(super) fleets: &'a [FleetView],
    offers: &'a dyn OfferSource,
    table: ShapeTable,
    pub(super) fleet_state: Vec<FleetState>,
    pub(super) insts: Vec<InstState<'a>>,
    /// `insts[fleet_insts[f].0 .. fleet_insts[f].1]` are fleet `f`'s.
    fleet_insts: Vec<(usize, usize)>,
    group_ids: HashMap<GroupKey<'a>, usize, FxBuild>,
    pub(super) groups: Vec<Group>,
    backend: BackendCache,
}

impl<'a> Pass<'a> {
    pub(super) fn new(fleets: &'a [FleetView], offers: &'a dyn OfferSource) -> Self {
        let mut table = ShapeTable::default();
        let mut insts = Vec::new();
        let mut fleet_state = Vec::with_capacity(fleets.len());
        let mut fleet_insts = Vec::with_capacity(fleets.len());
        for (f, fleet) in fleets.iter().enumerate() {
            let config = fleet.config.as_ref();
            let mut state = FleetState {
                active: 0,
                busy_instances: 0,
                idle_blocks: 0,
                host: fleet.is_host_fleet(),
                cluster: config.is_some_and(|c| c.placement == FleetPlacement::Cluster),
                whole: config.is_some_and(|c| c.blocks == Blocks::Count(1)),
                max: config.and_then(|c| c.nodes).and_then(|n| n.max),
            };
            let first = insts.len();
            for slot in &fleet.instances {
                let total = slot.total_blocks.max(1);
                let busy_blocks = slot.busy_blocks.min(total);
                let active = slot.active();
                if active {
                    state.active += 1;
                    state.idle_blocks += total - busy_blocks;
                    if busy_blocks > 0 {
                        state.busy_instances += 1;
                    }
                }
                let gpu_count = slot.resources.gpus.len();
                insts.push(InstState {
                    slot,
                    fleet: f,
                    shape: slot.usable().then(|| table.shape(&slot.resources, total)),
                    total,
                    busy_blocks,
                    gpus: GpuMask::new(gpu_count, &slot.busy_gpus),
                    gpus_per_block: gpu_count as u32 / total,
                    active,
                });
            }
            fleet_insts.push((first, insts.len()));
            fleet_state.push(state);
        }
        Pass {
            fleets,
            offers,
            table,
            fleet_state,
            insts,
            fleet_insts,
            group_ids: HashMap::default(),
            groups: Vec::new(),
            backend: BackendCache::default(),
        }
    }

    /// The group of `job`, built on first use.
    pub(super) fn group_of(&mut self, job: &'a PendingJob) -> usize {
        let req = self.table.requirement(&job.requirements);
        let multi = job.nodes > 1;
        let key = GroupKey {
            req,
            fleets: job.fleets.as_deref(),
            max_price: job.max_price.map(f64::to_bits),
            terms: &job.terms,
            multi,
            master_fleet: if multi {
                job.master_fleet.as_deref()
            } else {
                None
            },
        };
        if let Some(&g) = self.group_ids.get(&key) {
            return g;
        }
        let group = self.build_group(job, req, multi);
        let g = self.groups.len();
        self.groups.push(group);
        self.group_ids.insert(key, g);
        g
    }

    fn build_group(&mut self, job: &PendingJob, req: usize, multi: bool) -> Group {
        let mut fleets = Vec::new();
        let mut lacking = Vec::new();
        for (f, fleet) in self.fleets.iter().enumerate() {
            if fleet.terminating
                || job
                    .fleets
                    .as_ref()
                    .is_some_and(|names| !names.contains(&fleet.name))
            {
                continue;
            }
            if multi
                && (!self.fleet_state[f].cluster
                    || job.master_fleet.as_ref().is_some_and(|m| *m != fleet.name))
            {
                continue;
            }
            let (first, end) = self.fleet_insts[f];
            let mut entries = Vec::new();
            for i in first..end {
                let inst = &self.insts[i];
                let Some(shape) = inst.shape else { continue };
                if !pool_instance_allowed(job, inst.slot) {
                    continue;
                }
                let Some(needed) = self.table.needed(req, shape) else {
                    continue;
                };
                if !host_software_fits(job, inst.slot) {
                    lacking.push(messages::instance_label(&fleet.name, &inst.slot.name));
                    continue;
                }
                let (blocks, price) = if multi {
                    (inst.total, inst.slot.price)
                } else {
                    let share = f64::from(needed) / f64::from(inst.total);
                    (needed, inst.slot.price * share)
                };
                if job.max_price.is_some_and(|max| price > max) {
                    continue;
                }
                entries.push(Entry {
                    price,
                    blocks,
                    inst: i,
                });
            }
            entries.sort_by(|a, b| {
                a.price
                    .total_cmp(&b.price)
                    .then(a.blocks.cmp(&b.blocks))
                    .then(a.inst.cmp(&b.inst))
            });
            fleets.push(GroupFleet {
                fleet: f,
                entries,
                cursor: 0,
                backend: None,
            });
        }
        Group {
            req,
            fleets,
            outcome: None,
            lacking,
        }
    }

    /// SPEC section 5 step 1: whether fleet `f` may have room for `nodes` more jobs. A
    /// `blocks: 1` fleet with `nodes.max` has `max - busy instances`; a fleet of existing hosts
    /// has its idle blocks; any other fleet may have room.
    pub(super) fn has_room(&self, f: usize, nodes: u32) -> bool {
        let s = &self.fleet_state[f];
        if s.host {
            s.idle_blocks >= nodes
        } else if let (true, Some(max)) = (s.whole, s.max) {
            max.saturating_sub(s.busy_instances) >= nodes
        } else {
            true
        }
    }

    /// Whether fleet `f` may create `count` more instances now (never a fleet of existing
    /// hosts; not past `nodes.max`).
    pub(super) fn may_provision(&self, f: usize, count: u32) -> bool {
        let s = &self.fleet_state[f];
        !s.host
            && !self.fleets[f].terminating
            && s.max
                .is_none_or(|max| s.active.saturating_add(count) <= max)
    }

    /// Moves the cursor of `gf` past the entries too full for their share now; the first
    /// entry left, if any, is the fleet's cheapest idle pool offer for the group.
    pub(super) fn first_fit(insts: &[InstState<'_>], gf: &mut GroupFleet) -> Option<Entry> {
        while let Some(e) = gf.entries.get(gf.cursor) {
            if insts[e.inst].fits(e.blocks) {
                return Some(*e);
            }
            gf.cursor += 1;
        }
        None
    }

    /// The backend offers for a new instance of candidate `k` of group `g` for `job`, asked
    /// for once per pair.
    pub(super) fn fleet_offers(
        &mut self,
        g: usize,
        k: usize,
        job: &PendingJob,
    ) -> &mut FleetOffers {
        if self.groups[g].fleets[k].backend.is_none() {
            let f = self.groups[g].fleets[k].fleet;
            let req = self.groups[g].req;
            let offers = self
                .backend
                .offers_for(self.offers, &self.fleets[f], job, req);
            self.groups[g].fleets[k].backend = Some(offers);
        }
        self.groups[g].fleets[k]
            .backend
            .get_or_insert_with(FleetOffers::none)
    }

    /// The fleet tuple's third element: the cheapest backend offer of candidate `k`, when the
    /// fleet may create an instance for the job.
    pub(super) fn cheapest_backend(
        &mut self,
        g: usize,
        k: usize,
        job: &PendingJob,
        count: u32,
    ) -> f64 {
        let f = self.groups[g].fleets[k].fleet;
        if job.terms.creation_policy == CreationPolicy::Reuse || !self.may_provision(f, count) {
            return f64::INFINITY;
        }
        self.fleet_offers(g, k, job)
            .cheapest()
            .unwrap_or(f64::INFINITY)
    }

    /// Takes `blocks` of instance `i` (and their GPUs) for `key`.
    pub(super) fn take(&mut self, key: JobKey, i: usize, blocks: u32, price: f64) -> Decision {
        let inst = &mut self.insts[i];
        let gpus = inst.gpus.take(blocks * inst.gpus_per_block);
        let was_idle = inst.busy_blocks == 0;
        inst.busy_blocks += blocks;
        let f = inst.fleet;
        if inst.active {
            let state = &mut self.fleet_state[f];
            state.idle_blocks = state.idle_blocks.saturating_sub(blocks);
            if was_idle {
                state.busy_instances += 1;
            }
        }
        Decision::Place(Placement {
            key,
            fleet: self.fleets[f].name.clone(),
            instance_id: inst.slot.id,
            instance: inst.slot.name.clone(),
            blocks,
            gpus,
            price,
        })
    }

    /// A new instance of fleet `f` for `job`, from the offers of candidate `k` of group `g`.
    pub(super) fn provision(&mut self, job: &PendingJob, g: usize, k: usize) -> Option<Decision> {
        let f = self.groups[g].fleets[k].fleet;
        let name = &self.fleets[f].name;
        let (offer, fallback_offers) = self.fleet_offers(g, k, job).for_decision(name)?;
        let state = &mut self.fleet_state[f];
        state.active += 1;
        state.busy_instances += 1;
        let fleet = &self.fleets[f];
        Some(Decision::Provision(Box::new(Provisioning {
            key: job.key,
            fleet: fleet.name.clone(),
            blocks: offer.blocks.unwrap_or(1),
            total_blocks: offer.total_blocks.unwrap_or(1),
            gpus: new_instance_gpus(&offer),
            offer,
            fallback_offers,
            idle_duration: new_instance_idle_duration(job, fleet),
        })))
    }

    /// The busy instances group `g` could use once free, for a waiting reason.
    pub(super) fn busy_instances(&self, g: usize) -> BusyList {
        let mut busy = BusyList::default();
        for gf in &self.groups[g].fleets {
            let fleet = &self.fleets[gf.fleet].name;
            for e in &gf.entries {
                let inst = &self.insts[e.inst];
                busy.push(
                    || messages::instance_label(fleet, &inst.slot.name),
                    inst.busy_blocks,
                    inst.total,
                );
            }
        }
        busy
    }

    /// Why group `g` (whose jobs need `nodes` instances) gets nothing now: it waits for a
    /// busy instance that would fit, or fails with `no fleets` / `no offers`.
    pub(super) fn no_room(&self, g: usize, job: &PendingJob, nodes: u32) -> Outcome {
        let group = &self.groups[g];
        if group.fleets.is_empty() {
            return Outcome::Fail(messages::no_candidate_fleets(job, self.fleets, nodes > 1));
        }
        let busy = self.busy_instances(g);
        if !busy.is_empty() {
            return Outcome::Wait(busy.reason(&job.requirements, nodes));
        }
        if !group.lacking.is_empty() {
            return Outcome::Wait(messages::lacking_software(job, &group.lacking));
        }
        let full: Vec<String> = group
            .fleets
            .iter()
            .filter(|gf| !self.has_room(gf.fleet, nodes))
            .map(|gf| {
                let s = &self.fleet_state[gf.fleet];
                let max = if s.host { None } else { s.max };
                messages::fleet_full(
                    &self.fleets[gf.fleet].name,
                    max,
                    s.busy_instances,
                    s.idle_blocks,
                )
            })
            .collect();
        if full.len() == group.fleets.len() {
            return Outcome::Fail(messages::no_room(&full));
        }
        let names: Vec<String> = group
            .fleets
            .iter()
            .map(|gf| self.fleets[gf.fleet].name.clone())
            .collect();
        let why = if group
            .fleets
            .iter()
            .all(|gf| self.fleet_state[gf.fleet].host)
        {
            NoNewInstance::HostsOnly
        } else if job.terms.creation_policy == CreationPolicy::Reuse {
            NoNewInstance::ReuseOnly
        } else {
            NoNewInstance::AtMax(
                group
                    .fleets
                    .iter()
                    .filter(|gf| {
                        let s = &self.fleet_state[gf.fleet];
                        !s.host && s.max.is_some_and(|max| s.active + nodes > max)
                    })
                    .map(|gf| self.fleets[gf.fleet].name.clone())
                    .collect(),
            )
        };
        Outcome::Fail(messages::no_offers(job, &names, why))
    }

    /// [`Self::no_room`] as a decision for each job of a replica.
    pub(super) fn no_room_for(&self, g: usize, jobs: &[&PendingJob]) -> Vec<Decision> {
        let Some(first) = jobs.first() else {
            return Vec::new();
        };
        let outcome = self.no_room(g, first, jobs.len() as u32);
        jobs.iter().map(|j| outcome.for_job(j.key)).collect()
    }
}
