//! Fleet maintenance (SPEC sections 4 and 5): what a fleet's instances need at `now`. A fleet
//! keeps at least `nodes.min` instances and trims idle ones above `nodes.max`; idle instances
//! are terminated after `idle_duration` unless the fleet is at `nodes.min`; provisioning times
//! out after 10 minutes and an unreachable cloud instance is terminated after 20. Hosts of an
//! SSH fleet are never terminated, only released.

use super::terms::lower;
use super::{FleetView, InstanceSlot};
use flotilla_protocol::model::InstanceStatus;
use flotilla_protocol::Timestamp;
use std::fmt;

/// Seconds an instance may stay `pending` / `provisioning`.
pub const PROVISIONING_TIMEOUT_SECS: u64 = 600;
/// Seconds a cloud instance may stay unreachable before it is terminated.
pub const UNREACHABLE_TERMINATION_SECS: u64 = 1200;

/// Why an instance goes (the instance's `termination_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceTerminationReason {
    IdleTimeout,
    ProvisioningTimeout,
    Unreachable,
    MaxInstancesLimit,
}

impl InstanceTerminationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdleTimeout => "idle_timeout",
            Self::ProvisioningTimeout => "provisioning_timeout",
            Self::Unreachable => "unreachable",
            Self::MaxInstancesLimit => "max_instances_limit",
        }
    }
}

impl fmt::Display for InstanceTerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the fleet loop should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetAction {
    /// Create `count` instances (to keep `nodes.min`), from the fleet's cheapest offers.
    Provision { fleet: String, count: u32 },
    /// Terminate a machine the fleet created.
    Terminate {
        instance_id: u64,
        instance: String,
        reason: InstanceTerminationReason,
    },
    /// Give up on an existing host (SSH fleet) without touching the machine: the instance
    /// ends with `reason`.
    Release {
        instance_id: u64,
        instance: String,
        reason: InstanceTerminationReason,
    },
}

fn since(t: Timestamp, now: Timestamp) -> u64 {
    t.secs_until(now)
}

/// Idle: no job holds a block of it.
fn idle(i: &InstanceSlot) -> bool {
    i.status == InstanceStatus::Idle && i.busy_blocks == 0
}

fn idle_since(i: &InstanceSlot) -> Timestamp {
    i.idle_since.unwrap_or(i.created_at)
}

/// What fleet `fleet` needs at `now`. The built-in local fleet (no configuration) and a fleet
/// being deleted need nothing from here.
pub fn plan_fleet(fleet: &FleetView, now: Timestamp) -> Vec<FleetAction> {
    let Some(config) = &fleet.config else {
        return Vec::new();
    };
    if fleet.terminating {
        return Vec::new();
    }
    let host = fleet.is_host_fleet();
    let mut actions = Vec::new();
    let mut gone: Vec<u64> = Vec::new();
    let active: Vec<&InstanceSlot> = fleet.instances.iter().filter(|i| i.active()).collect();

    for i in &active {
        let provisioning = matches!(
            i.status,
            InstanceStatus::Pending | InstanceStatus::Provisioning
        );
        if provisioning && since(i.created_at, now) >= PROVISIONING_TIMEOUT_SECS {
            let (instance_id, instance) = (i.id, i.name.clone());
            let reason = InstanceTerminationReason::ProvisioningTimeout;
            actions.push(if host {
                FleetAction::Release {
                    instance_id,
                    instance,
                    reason,
                }
            } else {
                FleetAction::Terminate {
                    instance_id,
                    instance,
                    reason,
                }
            });
            gone.push(i.id);
        }
    }
    if host {
        return actions;
    }
    for i in &active {
        let long_unreachable = i.unreachable
            && i.unreachable_since
                .is_some_and(|t| since(t, now) >= UNREACHABLE_TERMINATION_SECS);
        if long_unreachable && !gone.contains(&i.id) {
            actions.push(terminate(i, InstanceTerminationReason::Unreachable));
            gone.push(i.id);
        }
    }

    let nodes = config
        .nodes
        .unwrap_or(flotilla_protocol::config::FleetNodes {
            min: 0,
            target: 0,
            max: None,
        });
    let mut remaining = active.len() as u32 - gone.len() as u32;
    // Idle instances, the longest idle first (then the newest), are the ones to let go.
    let mut idle_ones: Vec<&InstanceSlot> = active
        .iter()
        .copied()
        .filter(|i| idle(i) && !gone.contains(&i.id))
        .collect();
    idle_ones.sort_by(|a, b| {
        idle_since(a)
            .cmp(&idle_since(b))
            .then(b.created_at.cmp(&a.created_at))
            .then(b.id.cmp(&a.id))
    });
    let mut idle_ones = idle_ones.into_iter().peekable();
    if let Some(max) = nodes.max {
        while remaining > max {
            let Some(i) = idle_ones.next() else { break };
            actions.push(terminate(i, InstanceTerminationReason::MaxInstancesLimit));
            remaining -= 1;
        }
    }
    for i in idle_ones {
        if remaining <= nodes.min {
            break;
        }
        let limit = lower(i.idle_duration, config.profile.idle_duration);
        if limit.is_some_and(|limit| since(idle_since(i), now) >= limit) {
            actions.push(terminate(i, InstanceTerminationReason::IdleTimeout));
            remaining -= 1;
        }
    }
    if remaining < nodes.min {
        actions.push(FleetAction::Provision {
            fleet: fleet.name.clone(),
            count: nodes.min - remaining,
        });
    }
    actions
}

fn terminate(i: &InstanceSlot, reason: InstanceTerminationReason) -> FleetAction {
    FleetAction::Terminate {
        instance_id: i.id,
        instance: i.name.clone(),
        reason,
    }
}
