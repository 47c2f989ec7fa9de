//! Operations layer: the `local` fleet, which holds this machine. Created at the first start,
//! its resources refreshed at every start.

use crate::caller::{own_uid, user_name};
use crate::handle::Daemon;
use crate::hosts::supervisor;
use crate::scheduler::total_blocks;
use anyhow::Context;
use flotilla_protocol::config::Blocks;
use flotilla_protocol::model::{Fleet, FleetStatus, Instance, InstanceStatus};
use flotilla_protocol::Timestamp;

/// The name of the fleet that holds this machine.
pub const LOCAL_FLEET: &str = "local";

/// Creates the `local` fleet with this machine at first start; refreshes its resources later.
pub async fn ensure_local_fleet(d: &Daemon) -> anyhow::Result<()> {
    let inv = supervisor::inventory(&d.local_host())
        .await
        .context("cannot inspect the local machine")?;
    let resources = inv.resources();
    // blocks: auto — one block per GPU, or per CPU on a machine without GPUs.
    let total_blocks = total_blocks(Blocks::Auto, &resources);
    let now = Timestamp::now();
    let store = d.store();
    if store.get_fleet(LOCAL_FLEET)?.is_none() {
        store.put_fleet(&Fleet {
            id: store.next_id()?,
            name: LOCAL_FLEET.into(),
            status: FleetStatus::Active,
            user: user_name(own_uid()),
            created_at: now,
            configuration: None,
            instances: Vec::new(),
        })?;
    }
    let existing = store
        .list_instances()?
        .into_iter()
        .find(|i| i.fleet == LOCAL_FLEET);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok();
    let instance = Instance {
        id: match &existing {
            Some(i) => i.id,
            None => store.next_id()?,
        },
        name: format!("{LOCAL_FLEET}-0"),
        fleet: LOCAL_FLEET.into(),
        instance_num: 0,
        status: InstanceStatus::Idle,
        unreachable: false,
        termination_reason: None,
        backend: "local".into(),
        region: "local".into(),
        hostname,
        price: 0.0,
        resources,
        total_blocks,
        busy_blocks: 0,
        created_at: existing.map(|i| i.created_at).unwrap_or(now),
        error: None,
        ssh: None,
        host_key: None,
        backend_id: None,
        host_root: None,
        unreachable_since: None,
        jump_host_key: None,
        orphans: Vec::new(),
        software: inv.software(),
    };
    let events = store.put_instance(&instance)?;
    store.flush().await?;
    d.publish(events);
    Ok(())
}
