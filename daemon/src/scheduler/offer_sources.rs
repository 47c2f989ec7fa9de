//! Offers as placement sees them: the [`OfferSource`] that answers "what could a backend
//! create for this fleet" (the catalog, a fixed list, a list per fleet, or nothing), and
//! [`pool_offers`], the shares of instances already in fleets (SPEC section 3).

use super::shares::machine_of;
use super::FleetView;
use crate::backends::Backends;
use crate::catalog::matching::{exact_spec, resources_match};
use crate::catalog::query::Requirements;
use crate::catalog::{Catalog, CatalogService};
use flotilla_protocol::config::{HostNeed, ResourcesSpec};
use flotilla_protocol::model::{Availability, InstanceResources, Offer};
use std::collections::HashMap;

/// Where backend offers come from. Answers must be pure (no I/O): an in-memory catalog or
/// offers fetched before the pass.
pub trait OfferSource {
    /// The offers for a new instance of `fleet` that satisfy `req` (resources and terms),
    /// cheapest first, at most `req.limit`.
    fn backend_offers(&self, fleet: &FleetView, req: &Requirements) -> Vec<Offer>;

    /// Whether the answer depends only on `req`, not on the fleet: then a pass asks each
    /// distinct request once, however many fleets share it.
    fn fleet_independent(&self) -> bool {
        false
    }
}

/// No backend offers at all: placement uses existing instances only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBackendOffers;

impl OfferSource for NoBackendOffers {
    fn backend_offers(&self, _fleet: &FleetView, _req: &Requirements) -> Vec<Offer> {
        Vec::new()
    }

    fn fleet_independent(&self) -> bool {
        true
    }
}

impl OfferSource for Catalog {
    fn backend_offers(&self, _fleet: &FleetView, req: &Requirements) -> Vec<Offer> {
        self.query(req).0
    }

    fn fleet_independent(&self) -> bool {
        true
    }
}

impl OfferSource for CatalogService {
    fn backend_offers(&self, _fleet: &FleetView, req: &Requirements) -> Vec<Offer> {
        self.query(req).0
    }

    fn fleet_independent(&self) -> bool {
        true
    }
}

/// What the configured backends can create now (their `offers` are in-memory answers).
impl OfferSource for Backends {
    fn backend_offers(&self, _fleet: &FleetView, req: &Requirements) -> Vec<Offer> {
        let mut offers: Vec<Offer> = self
            .offers(&req.resources, None)
            .into_iter()
            .filter(|o| req.accepts_terms(o))
            .collect();
        offers.sort_by(|a, b| a.price.total_cmp(&b.price));
        offers.truncate(req.limit.unwrap_or(usize::MAX));
        offers
    }

    fn fleet_independent(&self) -> bool {
        true
    }
}

/// A fixed list of offers, the same for every fleet (offers fetched from a live API before
/// the pass, or a test's list).
#[derive(Debug, Clone, Default)]
pub struct StaticOffers {
    /// Cheapest first, each with the machine it describes.
    offers: Vec<(Offer, InstanceResources)>,
}

impl StaticOffers {
    pub fn new(mut offers: Vec<Offer>) -> Self {
        offers.sort_by(|a, b| a.price.total_cmp(&b.price));
        StaticOffers {
            offers: offers
                .into_iter()
                .map(|o| {
                    let machine = machine_of(&o.resources);
                    (o, machine)
                })
                .collect(),
        }
    }

    /// The offers matching `req`, cheapest first, at most `req.limit`.
    pub fn query(&self, req: &Requirements) -> Vec<Offer> {
        let limit = req.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for (offer, machine) in &self.offers {
            if out.len() >= limit || req.max_price.is_some_and(|max| offer.price > max) {
                break;
            }
            if offer.availability.is_available()
                && req.accepts_terms(offer)
                && resources_match(&req.resources, machine)
            {
                out.push(offer.clone());
            }
        }
        out
    }
}

impl OfferSource for StaticOffers {
    fn backend_offers(&self, _fleet: &FleetView, req: &Requirements) -> Vec<Offer> {
        self.query(req)
    }

    fn fleet_independent(&self) -> bool {
        true
    }
}

/// Offers per fleet name (what each fleet's backends could create); a fleet not listed has none.
#[derive(Debug, Clone, Default)]
pub struct PerFleetOffers {
    by_fleet: HashMap<String, StaticOffers>,
}

impl PerFleetOffers {
    pub fn new(by_fleet: HashMap<String, Vec<Offer>>) -> Self {
        PerFleetOffers {
            by_fleet: by_fleet
                .into_iter()
                .map(|(fleet, offers)| (fleet, StaticOffers::new(offers)))
                .collect(),
        }
    }

    pub fn insert(&mut self, fleet: impl Into<String>, offers: Vec<Offer>) {
        self.by_fleet
            .insert(fleet.into(), StaticOffers::new(offers));
    }
}

impl OfferSource for PerFleetOffers {
    fn backend_offers(&self, fleet: &FleetView, req: &Requirements) -> Vec<Offer> {
        self.by_fleet
            .get(&fleet.name)
            .map(|offers| offers.query(req))
            .unwrap_or_default()
    }
}

/// Offers from instances already in fleets: each usable instance whose share fits `req`,
/// `idle` when that many blocks are free now, `busy` otherwise (SPEC section 3).
/// Pool offers of the fleets' usable instances for `req` (only the fleets `only` names); an
/// instance that lacks what the job's environment needs (`need`: Docker, uv) is `not_available`.
pub fn pool_offers(
    fleets: &[FleetView],
    req: &ResourcesSpec,
    only: Option<&[String]>,
    need: HostNeed,
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
                resources: exact_spec(&inst.resources.share(n, total)),
                price: inst.price * f64::from(n) / f64::from(total),
                spot: inst.spot,
                availability: if !need.met(inst.software.docker, inst.software.uv) {
                    Availability::NotAvailable
                } else if n <= free {
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
