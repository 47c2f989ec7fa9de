//! Operations layer: instances that backends make. Creating one for a fleet from the cheapest
//! offer that a backend can create, and giving one back.

use super::fleets::pending_instance;
use crate::catalog::spot_allowed;
use crate::handle::Daemon;
use flotilla_protocol::config::FleetConfig;
use flotilla_protocol::model::{Instance, Offer};
use tracing::{info, warn};

/// Takes an instance back from its backend and removes it from the fleet.
pub async fn terminate(d: &Daemon, inst: &Instance, reason: &str) {
    if let (Some(b), Some(id)) = (d.backends().get(&inst.backend), &inst.backend_id) {
        if let Err(e) = b.terminate(id).await {
            warn!("{}: cannot terminate {}: {e}", inst.backend, inst.name);
            return;
        }
    }
    info!(instance = %inst.name, reason, "instance terminated");
    if let Some(h) = d.forget_host(inst.id) {
        h.disconnect().await;
    }
    match d.store().delete_instance(inst, reason) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot remove {}: {e}", inst.name),
    }
    d.flush_or_warn("the removal of an instance").await;
}

/// Creates one instance for a backend fleet from the cheapest offer that fits its profile.
pub async fn create_instance(
    d: &Daemon,
    fleet: &str,
    cfg: &FleetConfig,
) -> Result<Instance, String> {
    let mut offers = d
        .backends()
        .offers(&cfg.resources, cfg.profile.backends.as_deref());
    offers.retain(|o| {
        cfg.profile.max_price.is_none_or(|m| o.price <= m)
            && spot_allowed(cfg.profile.spot_policy, o.spot)
    });
    create_from_offers(d, fleet, &offers).await
}

/// Creates an instance in `fleet` from the first of `offers` that its backend can create
/// (the cheapest first, the next on failure, at most 25: SPEC section 5).
pub async fn create_from_offers(
    d: &Daemon,
    fleet: &str,
    offers: &[Offer],
) -> Result<Instance, String> {
    let mut last_err = format!("no offers in {}", d.backends().names().join(", "));
    let why = d.backends().unavailable_reasons(None);
    if !why.is_empty() {
        last_err = format!("{last_err}: {}", why.join("; "));
    }
    for offer in offers.iter().take(25) {
        let Some(backend) = d.backends().get(&offer.backend) else {
            continue;
        };
        let created = match backend.create(offer).await {
            Ok(c) => c,
            Err(e) => {
                last_err = e.to_string();
                continue;
            }
        };
        let num = d
            .store()
            .list_instances()
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|i| i.fleet == fleet)
            .map(|i| i.instance_num + 1)
            .max()
            .unwrap_or(0);
        let inst = pending_instance(
            d.store().next_id().map_err(|e| e.to_string())?,
            fleet,
            num,
            created.endpoint.clone(),
            &offer.backend,
            &created.region,
            created.price,
            Some(created.backend_id.clone()),
        );
        d.publish(d.store().put_instance(&inst).map_err(|e| e.to_string())?);
        d.flush_or_warn("a created instance").await;
        d.wake_instances();
        info!(fleet, instance = %inst.name, backend = %inst.backend, "instance created");
        return Ok(inst);
    }
    Err(last_err)
}
