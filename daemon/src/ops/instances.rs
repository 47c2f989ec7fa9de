//! Operations layer: instances that backends make. Creating one for a fleet from the cheapest
//! offer that a backend can create (the next on failure, each attempt an event), and giving
//! one back (retried until the provider confirms).

use super::fleets::pending_instance;
use crate::backends::{BackendError, NAME_PREFIX};
use crate::catalog::spot_allowed;
use crate::handle::Daemon;
use crate::store::EventDraft;
use flotilla_protocol::config::FleetConfig;
use flotilla_protocol::model::{Instance, InstanceStatus, Offer};
use tracing::{info, warn};

/// How many offers one creation tries before it gives up (dstack's fallback: SPEC section 5).
pub const MAX_OFFERS_TRIED: usize = 25;

/// Takes an instance back from its backend and removes it from the fleet. When the provider
/// does not confirm, the instance stays `terminating` with the provider's words, and the cloud
/// loop tries again until it does; false then.
pub async fn terminate(d: &Daemon, inst: &Instance, reason: &str) -> bool {
    if let (Some(b), Some(id)) = (d.backends().get(&inst.backend), &inst.backend_id) {
        if let Err(e) = b.terminate(id).await {
            warn!("{}: cannot terminate {}: {e}", inst.backend, inst.name);
            let mut marked = inst.clone();
            marked.status = InstanceStatus::Terminating;
            marked.termination_reason = Some(reason.to_string());
            marked.error = Some(format!(
                "termination not confirmed by {}: {e}; trying again",
                inst.backend
            ));
            let changed = d.store().get_instance(inst.id).ok().flatten().as_ref() != Some(&marked);
            if changed {
                match d.store().put_instance(&marked) {
                    Ok(ev) => d.publish(ev),
                    Err(e) => warn!("cannot record {} as terminating: {e}", inst.name),
                }
                d.flush_or_warn("a termination to retry").await;
            }
            return false;
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
    true
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

/// The name a machine gets at its provider: flotilla's prefix, the instance's name and id (so
/// that a restart finds a machine whose creation it did not see end).
pub fn machine_name(inst: &Instance) -> String {
    format!("{NAME_PREFIX}{}-{}", inst.name, inst.id)
}

/// The instance id in a machine name that [`machine_name`] made.
pub fn instance_id_of(machine: &str) -> Option<u64> {
    machine
        .strip_prefix(NAME_PREFIX)?
        .rsplit_once('-')?
        .1
        .parse()
        .ok()
}

fn attempt_event(d: &Daemon, inst: &Instance, message: String) {
    let draft = EventDraft {
        kind: "instance",
        resource: format!("{}/{}", inst.fleet, inst.name),
        old_status: None,
        new_status: None,
        reason: Some("provisioning_attempt".into()),
        message: Some(message),
    };
    match d.store().append_events(vec![draft]) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot record a provisioning attempt: {e}"),
    }
}

/// Creates an instance in `fleet` from the first of `offers` that its backend can create
/// (the cheapest first, the next on failure, at most 25: SPEC section 5). The record of a
/// cloud instance is written before the provider is asked, so that a crash in between leaves
/// nothing unknown; each attempt is an event with the provider's words.
pub async fn create_from_offers(
    d: &Daemon,
    fleet: &str,
    offers: &[Offer],
) -> Result<Instance, String> {
    let candidates: Vec<&Offer> = offers
        .iter()
        .filter(|o| d.backends().get(&o.backend).is_some())
        .take(MAX_OFFERS_TRIED)
        .collect();
    if candidates.is_empty() {
        let mut err = format!("no offers in {}", d.backends().names().join(", "));
        let why = d.backends().unavailable_reasons(None);
        if !why.is_empty() {
            err = format!("{err}: {}", why.join("; "));
        }
        return Err(err);
    }
    let total = candidates.len();
    let mut errors: Vec<String> = Vec::new();
    // Backends whose credentials were refused: their other offers would be refused too.
    let mut refused: Vec<String> = Vec::new();
    for (n, offer) in candidates.into_iter().enumerate() {
        let Some(backend) = d.backends().get(&offer.backend) else {
            continue;
        };
        if refused.contains(&offer.backend) {
            continue;
        }
        let num = d
            .store()
            .list_instances()
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|i| i.fleet == fleet)
            .map(|i| i.instance_num + 1)
            .max()
            .unwrap_or(0);
        let mut inst = pending_instance(
            d.store().next_id().map_err(|e| e.to_string())?,
            fleet,
            num,
            None,
            &offer.backend,
            &offer.region,
            offer.price,
            None,
        );
        let cloud = backend.cloud().is_some();
        if cloud {
            d.publish(d.store().put_instance(&inst).map_err(|e| e.to_string())?);
            d.flush_or_warn("an instance being created").await;
        }
        let what = format!(
            "offer {}/{total}: {} {} {} ${}/h",
            n + 1,
            offer.backend,
            offer.instance_type,
            offer.region,
            offer.price
        );
        let created = match backend.create(offer, &machine_name(&inst)).await {
            Ok(c) => c,
            Err(e) => {
                let next = if n + 1 < total {
                    "; trying the next offer"
                } else {
                    "; no offers left"
                };
                attempt_event(d, &inst, format!("{what}: {e}{next}"));
                warn!(fleet, "{what}: {e}");
                if cloud {
                    match d.store().delete_instance(&inst, "creation_failed") {
                        Ok(ev) => d.publish(ev),
                        Err(e) => warn!("cannot remove {}: {e}", inst.name),
                    }
                }
                if let BackendError::Auth { .. } = &e {
                    refused.push(offer.backend.clone());
                    d.backends()
                        .update_state(&offer.backend, |s| s.credentials = Some(Err(e.to_string())));
                }
                let text = match &e {
                    BackendError::NoCapacity { .. } => e.to_string(),
                    _ => format!("{} {}: {e}", offer.instance_type, offer.region),
                };
                if !errors.contains(&text) {
                    errors.push(text);
                }
                continue;
            }
        };
        inst.hostname = created.endpoint.as_ref().map(|e| e.hostname.clone());
        inst.ssh = created.endpoint.clone();
        inst.region = created.region.clone();
        inst.price = created.price;
        inst.backend_id = Some(created.backend_id.clone());
        if cloud {
            attempt_event(d, &inst, format!("{what}: created {}", created.backend_id));
        }
        d.publish(d.store().put_instance(&inst).map_err(|e| e.to_string())?);
        d.flush_or_warn("a created instance").await;
        d.wake_instances();
        info!(fleet, instance = %inst.name, backend = %inst.backend, "instance created");
        return Ok(inst);
    }
    Err(summary(&errors))
}

/// The errors of every attempt, at most 5 of them.
fn summary(errors: &[String]) -> String {
    let mut s = errors
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > 5 {
        s.push_str(&format!("; and {} more", errors.len() - 5));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_carry_the_instance_id() {
        assert_eq!(instance_id_of("flotilla-gpu-0-42"), Some(42));
        assert_eq!(instance_id_of("flotilla-my-fleet-3-7"), Some(7));
        assert_eq!(instance_id_of("other-0-42"), None);
        assert_eq!(instance_id_of("flotilla-x"), None);
    }
}
