//! Driver layer: the fleet upkeep loop, for fleets whose instances come from backends. Creates
//! the instances that `fleet.apply` asked for, and carries out what the scheduler's
//! `plan_fleet` asks (keep `nodes.min`, trim idle instances above `nodes.max`, terminate those
//! idle past `idle_duration`, give up on provisioning after 10 minutes).

use super::{Loop, WakeSource};
use crate::handle::{Daemon, InstanceWish};
use crate::ops::instances::{create_instance, terminate};
use crate::ops::occupancy::fleet_views;
use crate::scheduler::{plan_fleet, FleetAction, InstanceTerminationReason};
use flotilla_protocol::model::InstanceStatus;
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::time::Duration;
use tracing::warn;

/// After a failed creation, a fleet waits this long before trying again.
const CREATE_RETRY_SECS: u64 = 30;
const INTERVAL: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct FleetUpkeep {
    /// When each instance went idle (kept here: the scheduler has no clock of its own).
    idle_since: HashMap<u64, Timestamp>,
    /// When creating an instance for a fleet last failed.
    failed_at: HashMap<String, Timestamp>,
}

impl Loop for FleetUpkeep {
    fn name(&self) -> &'static str {
        "fleet upkeep"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Fleets
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        for wish in d.take_wanted_instances() {
            create_wished(d, wish).await;
        }
        if !d.backends().is_empty() {
            self.keep_fleets(d).await;
        }
        INTERVAL
    }
}

/// Creates the instances a `fleet.apply` asked for, and tells it how that went.
async fn create_wished(d: &Daemon, wish: InstanceWish) {
    let answer = async {
        let fleet = d
            .store()
            .get_fleet(&wish.fleet)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("fleet {} is gone", wish.fleet))?;
        let cfg = fleet
            .configuration
            .ok_or_else(|| format!("fleet {} has no configuration", wish.fleet))?;
        for _ in 0..wish.count {
            create_instance(d, &wish.fleet, &cfg).await?;
        }
        Ok(())
    }
    .await;
    // The caller may have gone (its connection closed): the instances stay created.
    let _ = wish.done.send(answer);
}

impl FleetUpkeep {
    async fn keep_fleets(&mut self, d: &Daemon) {
        let mut fleets = match fleet_views(d, &d.store().active_runs()) {
            Ok(f) => f,
            Err(e) => {
                warn!("fleet upkeep: cannot read the fleets: {e}");
                return;
            }
        };
        let instances = match d.store().list_instances() {
            Ok(i) => i,
            Err(e) => {
                warn!("fleet upkeep: cannot read the instances: {e}");
                return;
            }
        };
        let now = Timestamp::now();
        for f in fleets.iter_mut().filter(|f| !f.is_host_fleet()) {
            for slot in f.instances.iter_mut() {
                if slot.status == InstanceStatus::Idle && slot.busy_blocks == 0 {
                    slot.idle_since = Some(*self.idle_since.entry(slot.id).or_insert(now));
                } else {
                    self.idle_since.remove(&slot.id);
                }
            }
            for action in plan_fleet(f, now) {
                match action {
                    FleetAction::Provision { fleet, count } => {
                        let backing_off = self
                            .failed_at
                            .get(&fleet)
                            .is_some_and(|t| t.secs_until(now) < CREATE_RETRY_SECS);
                        let (Some(cfg), false) = (f.config.as_ref(), backing_off) else {
                            continue;
                        };
                        for _ in 0..count {
                            if let Err(e) = create_instance(d, &fleet, cfg).await {
                                warn!("fleet {fleet}: cannot keep nodes.min: {e}; next try in {CREATE_RETRY_SECS}s");
                                self.failed_at.insert(fleet.clone(), now);
                                break;
                            }
                            self.failed_at.remove(&fleet);
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
                            // A cloud backend's own provisioning_timeout rules its machines
                            // (the cloud loop).
                            if reason == InstanceTerminationReason::ProvisioningTimeout
                                && d.backends()
                                    .get(&inst.backend)
                                    .is_some_and(|b| b.cloud().is_some())
                            {
                                continue;
                            }
                            terminate(d, inst, reason.as_str()).await;
                            self.idle_since.remove(&instance_id);
                        }
                    }
                }
            }
        }
    }
}
