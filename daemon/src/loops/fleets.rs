//! The fleets loop, for fleets whose instances come from backends: keep `nodes.min`, create the
//! `target` at apply, trim idle instances above `nodes.max`, terminate those idle past
//! `idle_duration` (never below `nodes.min`), and give up on provisioning after 10 minutes.

use crate::api::handlers::fleet_list;
use crate::state::Daemon;
use flotilla_protocol::config::FleetConfig;
use flotilla_protocol::model::{Fleet, Instance, InstanceStatus};
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::time::Duration;
use tracing::{info, warn};

/// Provisioning that takes longer than this is abandoned (SPEC section 5).
pub const PROVISIONING_TIMEOUT_SECS: u64 = 600;

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

fn backend_fleet(f: &Fleet) -> Option<&FleetConfig> {
    f.configuration.as_ref().filter(|c| c.ssh_config.is_none())
}

fn counts(inst: &Instance) -> bool {
    !matches!(
        inst.status,
        InstanceStatus::Terminated | InstanceStatus::Failed | InstanceStatus::Terminating
    )
}

/// After a failed creation, a fleet waits this long before trying again.
const CREATE_RETRY_SECS: u64 = 30;

async fn tick(
    d: &Daemon,
    idle_since: &mut HashMap<u64, Timestamp>,
    failed_at: &mut HashMap<String, Timestamp>,
) {
    let Ok(fleets) = fleet_list(d) else { return };
    let now = Timestamp::now();
    for f in &fleets {
        let Some(cfg) = backend_fleet(f) else {
            continue;
        };
        let min = cfg.nodes.map(|n| n.min).unwrap_or(0);
        let max = cfg.nodes.and_then(|n| n.max);
        let mut active = f.instances.iter().filter(|i| counts(i)).count() as u32;
        for inst in &f.instances {
            if inst.status == InstanceStatus::Idle && inst.busy_blocks == 0 {
                idle_since.entry(inst.id).or_insert(now);
            } else {
                idle_since.remove(&inst.id);
            }
        }
        // Provisioning that never finished.
        for inst in f.instances.iter().filter(|i| {
            matches!(
                i.status,
                InstanceStatus::Pending | InstanceStatus::Provisioning
            ) && i.created_at.secs_until(now) >= PROVISIONING_TIMEOUT_SECS
        }) {
            terminate(d, inst, "provisioning_timeout").await;
            active = active.saturating_sub(1);
        }
        // Idle instances: above nodes.max first, then past idle_duration, never below nodes.min.
        let mut idle: Vec<&Instance> = f
            .instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Idle && i.busy_blocks == 0)
            .collect();
        idle.sort_by_key(|i| idle_since.get(&i.id).copied().unwrap_or(now));
        for inst in idle {
            if active <= min {
                break;
            }
            let over_max = max.is_some_and(|m| active > m);
            let idle_for = idle_since
                .get(&inst.id)
                .map(|t| t.secs_until(now))
                .unwrap_or(0);
            let expired = cfg.idle_duration.is_some_and(|limit| idle_for >= limit);
            if over_max || expired {
                let reason = if over_max {
                    "max_instances_limit"
                } else {
                    "idle_timeout"
                };
                terminate(d, inst, reason).await;
                idle_since.remove(&inst.id);
                active -= 1;
            }
        }
        // Keep nodes.min.
        let backing_off = failed_at
            .get(&f.name)
            .is_some_and(|t| t.secs_until(now) < CREATE_RETRY_SECS);
        while active < min && !backing_off {
            if let Err(e) = create_instance(d, f, cfg).await {
                warn!("fleet {}: cannot keep nodes.min = {min}: {e}; next try in {CREATE_RETRY_SECS}s", f.name);
                failed_at.insert(f.name.clone(), now);
                break;
            }
            failed_at.remove(&f.name);
            active += 1;
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
    fleet: &Fleet,
    cfg: &FleetConfig,
) -> Result<Instance, String> {
    let mut offers = d.backends.offers(&cfg.resources, cfg.backends.as_deref());
    offers.retain(|o| {
        cfg.max_price.is_none_or(|m| o.price <= m)
            && crate::catalog::matching::spot_allowed(cfg.spot_policy, o.spot)
    });
    create_from_offers(d, &fleet.name, &offers).await
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
