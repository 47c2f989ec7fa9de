//! Operations layer: THE offers assembler. `run.plan` and `offer.list` both ask [`assemble`],
//! so a plan and the `offer` command can never disagree: pool offers from the fleets'
//! free blocks, offers the configured backends can create, and (for `offer.list`) the catalog's
//! offers, all through one terms filter, cheapest first.

use super::occupancy::fleet_views;
use super::OpError;
use crate::catalog::{
    group_offers, parse_group_by, requirements_from_query, sort_offers, Requirements,
    DEFAULT_MAX_OFFERS,
};
use crate::handle::Daemon;
use crate::scheduler::pool_offers;
use flotilla_protocol::config::{HostNeed, JobEnvironment, RunCommon};
use flotilla_protocol::model::Offer;
use flotilla_protocol::rpc::{OfferList, OfferQuery};

/// What to assemble offers for.
#[derive(Debug, Clone)]
pub struct OfferRequest {
    /// The machine and the terms (spot, price, where) that every offer must meet; `limit`
    /// bounds the catalog's offers alone.
    pub requirements: Requirements,
    /// Pool offers only from these fleets (a run's `fleets:`); `None` = every fleet.
    pub fleets: Option<Vec<String>>,
    /// Creatable offers only from these configured backends (a run's `backends:`); `None` = all.
    pub backends: Option<Vec<String>>,
    /// Also the catalog's offers (what `offer.list` shows beyond what this daemon can create).
    pub with_catalog: bool,
    /// What a host must run for the job's environment (Docker for a container); a pool
    /// instance without it is offered as `not_available`.
    pub host_need: HostNeed,
}

impl OfferRequest {
    /// The offers a run with this profile could take: pool and creatable, no catalog.
    pub fn for_run(common: &RunCommon) -> OfferRequest {
        OfferRequest {
            requirements: Requirements {
                resources: common.resources.clone(),
                spot_policy: common.profile.spot_policy,
                max_price: common.profile.max_price,
                ..Requirements::default()
            },
            fleets: common.policy.fleets.clone(),
            backends: common.profile.backends.clone(),
            with_catalog: false,
            host_need: JobEnvironment::of(common).needs(),
        }
    }
}

/// The offers that answer `req`, cheapest first, and how many matched in all (the catalog's
/// `limit` leaves some of its matches out of the list, not out of the count).
pub fn assemble_counted(d: &Daemon, req: &OfferRequest) -> Result<(Vec<Offer>, usize), OpError> {
    let terms = &req.requirements;
    let runs = d.store().active_runs();
    let fleets = fleet_views(d, &runs)?;
    let mut offers: Vec<Offer> = pool_offers(
        &fleets,
        &terms.resources,
        req.fleets.as_deref(),
        req.host_need,
    )
    .into_iter()
    .filter(|o| terms.accepts_terms(o))
    .collect();
    // Machines that configured backends can create, with their availability now.
    offers.extend(
        d.backends()
            .all_offers(&terms.resources, req.backends.as_deref())
            .into_iter()
            .filter(|o| terms.accepts_terms(o)),
    );
    let mut total = offers.len();
    if req.with_catalog {
        // A provider that a cloud backend buys from shows its offers once, as that backend's.
        let own = d.backends().catalog_names();
        let (catalog_offers, catalog_total) = if own.is_empty() {
            d.catalog().query(terms)
        } else {
            let mut t = terms.clone();
            t.limit = None;
            let (all, _) = d.catalog().query(&t);
            let mut kept: Vec<Offer> = all
                .into_iter()
                .filter(|o| !own.iter().any(|n| n.eq_ignore_ascii_case(&o.backend)))
                .collect();
            let n = kept.len();
            kept.truncate(terms.limit.unwrap_or(usize::MAX));
            (kept, n)
        };
        total += catalog_total;
        offers.extend(catalog_offers);
    }
    sort_offers(&mut offers);
    Ok((offers, total))
}

/// How long `offer.list` and `run.plan` wait for the online offers (Vast.ai's search) and the
/// live availability; past it they use what was fetched last, with a warning.
pub const LIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Fetches the cloud backends' online offers and live availability; the warnings.
pub async fn refresh_live(d: &Daemon) -> Vec<String> {
    d.backends().refresh(LIVE_TIMEOUT).await
}

/// The offers that answer `req`, cheapest first.
pub fn assemble(d: &Daemon, req: &OfferRequest) -> Result<Vec<Offer>, OpError> {
    Ok(assemble_counted(d, req)?.0)
}

/// `offer.list`: every source's offers for the query, grouped when asked, at most `max_offers`.
pub fn list(d: &Daemon, q: &OfferQuery) -> Result<OfferList, OpError> {
    let mut requirements = requirements_from_query(q).map_err(OpError::Invalid)?;
    let group_by = parse_group_by(&q.group_by).map_err(OpError::Invalid)?;
    let limit = q.max_offers.unwrap_or(DEFAULT_MAX_OFFERS);
    // Grouping looks at every match; a plain listing needs only the cheapest `limit`.
    requirements.limit = if group_by.is_empty() {
        Some(limit)
    } else {
        None
    };
    let req = OfferRequest {
        requirements,
        fleets: None,
        backends: None,
        with_catalog: true,
        host_need: HostNeed::Nothing,
    };
    let (mut offers, total) = assemble_counted(d, &req)?;
    let groups = if group_by.is_empty() {
        None
    } else {
        Some(group_offers(&offers, &group_by))
    };
    offers.truncate(limit);
    let mut warnings = d.catalog().warnings();
    // Why a configured backend offers less than it should (a Slurm login node unreachable, a
    // partition the cluster lacks).
    warnings.extend(d.backends().unavailable_reasons(None));
    Ok(OfferList {
        offers,
        total,
        groups,
        warnings,
    })
}
