//! The fleets loop, for fleets whose instances come from backends: carries out what the
//! scheduler's `plan_fleet` asks (keep `nodes.min`, trim idle instances above `nodes.max`,
//! terminate those idle past `idle_duration`, give up on provisioning after 10 minutes).

use super::scheduling::fleet_views;
use crate::scheduler::{plan_fleet, FleetAction};
use crate::state::Daemon;
use flotilla_protocol::config::FleetConfig;
use flotilla_protocol::model::{Instance, InstanceStatus};
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::time::Duration;
use tracing::{info, warn};

/// After a failed creation, a fleet waits this long before trying again.
const CREATE_RETRY_SECS: u64 = 30;

pub async fn run(d: Daemon) {
    let mut idle_since: HashMap<u64, Timestamp> = HashMap::new();
    let mut failed_at: HashMap<String, Timestamp> = HashMap::new();
    loop {
        if !d.backends.is_empty() {
            tick(&d, &mut idle_since, &mut failed_at).await;
        }
        tokio::select! {
            _ = d.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn tick(
    d: &Daemon,
    idle_since: &mut HashMap<u64, Timestamp>,
    failed_at: &mut HashMap<String, Timestamp>,
) {
    let Ok(mut fleets) = fleet_views(d, &d.store.active_runs()) else {
        return;
    };
    let now = Timestamp::now();
    let Ok(instances) = d.store.list_instances() else {
        return;
    };
    for f in fleets.iter_mut().filter(|f| !f.is_host_fleet()) {
        // When each instance went idle (kept here: the scheduler has no clock of its own).
        for slot in f.instances.iter_mut() {
            if slot.status == InstanceStatus::Idle && slot.busy_blocks == 0 {
                slot.idle_since = Some(*idle_since.entry(slot.id).or_insert(now));
            } else {
                idle_since.remove(&slot.id);
            }
        }
        for action in plan_fleet(f, now) {
            match action {
                FleetAction::Provision { fleet, count } => {
                    let backing_off = failed_at
                        .get(&fleet)
                        .is_some_and(|t| t.secs_until(now) < CREATE_RETRY_SECS);
                    let (Some(cfg), false) = (f.config.as_ref(), backing_off) else {
                        continue;
                    };
                    for _ in 0..count {
                        if let Err(e) = create_instance(d, &fleet, cfg).await {
                            warn!("fleet {fleet}: cannot keep nodes.min: {e}; next try in {CREATE_RETRY_SECS}s");
                            failed_at.insert(fleet.clone(), now);
                            break;
                        }
                        failed_at.remove(&fleet);
                    }
                }
                FleetAction::Terminate {
                    instance_id,
                    reason,
                    ..
                }
                | FleetAction::Release {
                    instance_id,
                    reason,
                    ..
                } => {
                    if let Some(inst) = instances.iter().find(|i| i.id == instance_id) {
                        terminate(d, inst, reason.as_str()).await;
                        idle_since.remove(&instance_id);
                    }
                }
            }
        }
    }
}

/// Takes an instance back from its backend and removes it from the fleet.
async fn terminate(d: &Daemon, inst: &Instance, reason: &str) {
    if let (Some(b), Some(id)) = (d.backends.get(&inst.backend), &inst.backend_id) {
        if let Err(e) = b.terminate(id).await {
            warn!("{}: cannot terminate {}: {e}", inst.backend, inst.name);
            return;
        }
    }
    info!(instance = %inst.name, reason, "instance terminated");
    if let Some(h) = d.forget_host(inst.id) {
        h.disconnect().await;
    }
    match d.store.delete_instance(inst, reason) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot remove {}: {e}", inst.name),
    }
    let _ = d.store.flush().await;
}

/// Creates one instance for a backend fleet from the cheapest offer that fits its profile.
pub async fn create_instance(
    d: &Daemon,
    fleet: &str,
    cfg: &FleetConfig,
) -> Result<Instance, String> {
    let mut offers = d.backends.offers(&cfg.resources, cfg.backends.as_deref());
    offers.retain(|o| {
        cfg.max_price.is_none_or(|m| o.price <= m)
            && crate::catalog::matching::spot_allowed(cfg.spot_policy, o.spot)
    });
    create_from_offers(d, fleet, &offers).await
}

/// Creates an instance in `fleet` from the first of `offers` that its backend can create
/// (the cheapest first, the next on failure, at most 25: SPEC section 5).
pub async fn create_from_offers(
    d: &Daemon,
    fleet: &str,
    offers: &[flotilla_protocol::model::Offer],
) -> Result<Instance, String> {
    let mut last_err = format!("no offers in {}", d.backends.names().join(", "));
    for offer in offers.iter().take(25) {
        let Some(backend) = d.backends.get(&offer.backend) else {
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
            .store
            .list_instances()
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|i| i.fleet == fleet)
            .map(|i| i.instance_num + 1)
            .max()
            .unwrap_or(0);
        let inst = crate::fleets::pending_instance(
            d.store.next_id().map_err(|e| e.to_string())?,
            fleet,
            num,
            created.endpoint.clone(),
            &offer.backend,
            &created.region,
            created.price,
            Some(created.backend_id.clone()),
        );
        d.publish(d.store.put_instance(&inst).map_err(|e| e.to_string())?);
        let _ = d.store.flush().await;
        d.instances_wake.notify_one();
        info!(fleet, instance = %inst.name, backend = %inst.backend, "instance created");
        return Ok(inst);
    }
    Err(last_err)
}
