//! `offer.list`: backend offers from the catalog merged with pool offers from the fleets, cheapest first.

use crate::api::handlers::store_error;
use crate::catalog::{group_offers, parse_group_by, requirements_from_query, sort_offers};
use crate::state::Daemon;
use flotilla_protocol::rpc::{codes, OfferList, OfferQuery, RpcError};

pub fn list(d: &Daemon, q: &OfferQuery) -> Result<OfferList, RpcError> {
    let invalid = |m: String| RpcError::new(codes::INVALID_PARAMS, m);
    let mut req = requirements_from_query(q).map_err(invalid)?;
    let group_by = parse_group_by(&q.group_by).map_err(invalid)?;
    let limit = q.max_offers.unwrap_or(crate::catalog::DEFAULT_MAX_OFFERS);
    // Grouping looks at every match; a plain listing needs only the cheapest `limit`.
    req.limit = if group_by.is_empty() {
        Some(limit)
    } else {
        None
    };
    let (backend_offers, backend_total) = d.catalog.query(&req);
    let runs = d.store.active_runs();
    let fleets = crate::loops::scheduling::fleet_views(d, &runs).map_err(store_error)?;
    let pool: Vec<_> = crate::scheduler::pool_offers(&fleets, &req.resources, None)
        .into_iter()
        .filter(|o| req.accepts_terms(o))
        .collect();
    // Machines that configured backends can create now.
    let creatable: Vec<_> = d
        .backends
        .offers(&req.resources, None)
        .into_iter()
        .filter(|o| req.accepts_terms(o))
        .collect();
    let total = backend_total + pool.len() + creatable.len();
    let mut offers = pool;
    offers.extend(creatable);
    offers.extend(backend_offers);
    sort_offers(&mut offers);
    let groups = if group_by.is_empty() {
        None
    } else {
        Some(group_offers(&offers, &group_by))
    };
    offers.truncate(limit);
    Ok(OfferList {
        offers,
        total,
        groups,
        warnings: d.catalog.warnings(),
    })
}
