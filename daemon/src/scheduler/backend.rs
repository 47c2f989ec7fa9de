//! Backend offers during one placement pass, asked for as rarely as possible.
//!
//! Many (group, fleet) pairs ask the same question: fleets with the same profile and the
//! same jobs' requirements. When the [`OfferSource`] does not depend on the fleet, each
//! distinct request is answered once ([`Answer`]); which of its offers a group can use in a
//! fleet, and with how many blocks ([`Pick`]), is worked out once per (answer, fleet blocks,
//! requirement, multi-node); the offers a decision carries are cloned and marked with the
//! fleet only when a pair first provisions.

use super::fingerprint::{fingerprint, hash_resources, FxBuild};
use super::offer_sources::OfferSource;
use super::shares::{machine_of, smallest_share, total_blocks};
use super::terms::backend_requirements;
use super::{FleetView, PendingJob, MAX_PROVISION_OFFERS};
use crate::catalog::query::Requirements;
use flotilla_protocol::config::Blocks;
use flotilla_protocol::model::{InstanceResources, Offer};
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

/// The offers the source gave for one request (available ones within the price), cheapest first.
pub(super) struct Answer {
    id: usize,
    offers: Vec<Offer>,
    /// The machine of each offer, for block shares; worked out on first need.
    machines: OnceCell<Vec<InstanceResources>>,
}

/// One usable offer of an answer: its index, and the job's blocks of the new machine.
#[derive(Debug, Clone, Copy)]
struct Pick {
    index: usize,
    blocks: u32,
    total: u32,
}

/// The backend offers one group can use in one fleet.
pub(super) struct FleetOffers {
    answer: Rc<Answer>,
    picks: Rc<Vec<Pick>>,
    /// The offers as decisions carry them (fleet and blocks set): the first, and the rest.
    marked: Option<(Offer, Arc<[Offer]>)>,
}

impl FleetOffers {
    pub(super) fn none() -> Self {
        FleetOffers {
            answer: Rc::new(Answer {
                id: usize::MAX,
                offers: Vec::new(),
                machines: OnceCell::new(),
            }),
            picks: Rc::new(Vec::new()),
            marked: None,
        }
    }

    /// The price of the cheapest usable offer.
    pub(super) fn cheapest(&self) -> Option<f64> {
        self.picks
            .first()
            .map(|p| self.answer.offers[p.index].price)
    }

    /// The cheapest offer and the next ones (at most [`MAX_PROVISION_OFFERS`] in all), with
    /// `fleet`, `blocks` and `total_blocks` set; `None` when there is none.
    pub(super) fn for_decision(&mut self, fleet: &str) -> Option<(Offer, Arc<[Offer]>)> {
        if self.marked.is_none() {
            let mut marked: Vec<Offer> = self
                .picks
                .iter()
                .map(|p| {
                    let mut offer = self.answer.offers[p.index].clone();
                    offer.fleet = Some(fleet.to_string());
                    offer.instance = None;
                    offer.blocks = Some(p.blocks);
                    offer.total_blocks = Some(p.total);
                    offer
                })
                .collect();
            if marked.is_empty() {
                return None;
            }
            let first = marked.remove(0);
            self.marked = Some((first, marked.into()));
        }
        self.marked.clone()
    }
}

/// How a fleet splits new machines, as a key.
fn blocks_key(blocks: Blocks) -> (bool, u32) {
    match blocks {
        Blocks::Count(n) => (false, n),
        Blocks::Auto => (true, 0),
    }
}

fn request_fingerprint(req: &Requirements) -> u64 {
    fingerprint(|h| {
        hash_resources(&req.resources, h);
        req.spot_policy.hash(h);
        req.max_price.map(f64::to_bits).hash(h);
        req.backends.hash(h);
        req.regions.hash(h);
        req.instance_types.hash(h);
        req.limit.hash(h);
    })
}

/// (answer, fleet blocks, requirement, multi-node): what decides the picks of an answer.
type PickKey = (usize, (bool, u32), usize, bool);

#[derive(Default)]
pub(super) struct BackendCache {
    answers: HashMap<u64, Vec<(Requirements, Rc<Answer>)>, FxBuild>,
    next_answer: usize,
    picks: HashMap<PickKey, Rc<Vec<Pick>>, FxBuild>,
}

impl BackendCache {
    /// The backend offers for a new instance of `fleet` running `job` (whose requirement has
    /// id `req_id` in the pass's shape table).
    pub(super) fn offers_for(
        &mut self,
        source: &dyn OfferSource,
        fleet: &FleetView,
        job: &PendingJob,
        req_id: usize,
    ) -> FleetOffers {
        let Some(req) = backend_requirements(job, fleet) else {
            return FleetOffers::none();
        };
        let answer = self.answer(source, fleet, req);
        let blocks = fleet.config.as_ref().map(|c| c.blocks).unwrap_or_default();
        let multi = job.nodes > 1;
        let key = (answer.id, blocks_key(blocks), req_id, multi);
        let picks = match self.picks.get(&key) {
            Some(picks) => picks.clone(),
            None => {
                let picks = Rc::new(pick(&answer, blocks, job, multi));
                self.picks.insert(key, picks.clone());
                picks
            }
        };
        FleetOffers {
            answer,
            picks,
            marked: None,
        }
    }

    fn answer(
        &mut self,
        source: &dyn OfferSource,
        fleet: &FleetView,
        req: Requirements,
    ) -> Rc<Answer> {
        let shared = source.fleet_independent();
        let fp = request_fingerprint(&req);
        if shared {
            if let Some((_, answer)) = self
                .answers
                .get(&fp)
                .and_then(|list| list.iter().find(|(r, _)| *r == req))
            {
                return answer.clone();
            }
        }
        let mut offers: Vec<Offer> = source
            .backend_offers(fleet, &req)
            .into_iter()
            .filter(|o| {
                o.availability.is_available() && req.max_price.is_none_or(|max| o.price <= max)
            })
            .collect();
        offers.sort_by(|a, b| a.price.total_cmp(&b.price));
        let answer = Rc::new(Answer {
            id: self.next_answer,
            offers,
            machines: OnceCell::new(),
        });
        self.next_answer += 1;
        if shared {
            self.answers
                .entry(fp)
                .or_default()
                .push((req, answer.clone()));
        }
        answer
    }
}

/// The offers of `answer` a job can use in a fleet splitting machines into `blocks`, cheapest
/// first, at most [`MAX_PROVISION_OFFERS`]: with `blocks: 1` every offer (the request already
/// met the job's resources) and the job takes the machine; otherwise the offers where a share
/// fits the job, which takes that share (a multi-node job takes the whole machine).
fn pick(answer: &Answer, blocks: Blocks, job: &PendingJob, multi: bool) -> Vec<Pick> {
    if blocks == Blocks::Count(1) {
        return (0..answer.offers.len().min(MAX_PROVISION_OFFERS))
            .map(|index| Pick {
                index,
                blocks: 1,
                total: 1,
            })
            .collect();
    }
    let machines = answer.machines.get_or_init(|| {
        answer
            .offers
            .iter()
            .map(|o| machine_of(&o.resources))
            .collect()
    });
    let mut picks = Vec::new();
    for (index, machine) in machines.iter().enumerate() {
        if picks.len() >= MAX_PROVISION_OFFERS {
            break;
        }
        let total = total_blocks(blocks, machine);
        let Some(n) = smallest_share(machine, total, &job.requirements, total) else {
            continue;
        };
        picks.push(Pick {
            index,
            blocks: if multi { total } else { n },
            total,
        });
    }
    picks
}
