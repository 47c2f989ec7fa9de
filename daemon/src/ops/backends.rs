//! Operations layer: cloud backends at work. `backend.list` (credentials, instances, orphans),
//! the check at start (credentials, the live offers, machines with flotilla's prefix that the
//! store does not know, creations that a crash interrupted), one step of a booting machine,
//! and the provisioning timeout.

use super::instances::{instance_id_of, terminate};
use super::OpError;
use crate::backends::{Backend, Boot};
use crate::handle::Daemon;
use crate::store::EventDraft;
use flotilla_protocol::model::{Instance, InstanceStatus};
use flotilla_protocol::rpc::{BackendInfo, BackendListParams};
use flotilla_protocol::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long a credential check or a live refresh may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// `backend.list`: every configured backend, its credentials (checked again when asked) and
/// what it holds.
pub async fn list(d: &Daemon, p: &BackendListParams) -> Result<Vec<BackendInfo>, OpError> {
    if p.check {
        check_credentials(d).await;
    }
    let instances = d.store().list_instances()?;
    Ok(d.backends()
        .list()
        .iter()
        .map(|b| {
            let state = d.backends().state(b.name());
            let mine: Vec<&Instance> = instances.iter().filter(|i| i.backend == b.name()).collect();
            let (credentials, message) = match (&state.credentials, b.cloud()) {
                (_, None) => ("valid".to_string(), None),
                (None, Some(_)) => ("unchecked".to_string(), None),
                (Some(Ok(())), Some(_)) => ("valid".to_string(), None),
                (Some(Err(m)), Some(_)) => ("invalid".to_string(), Some(m.clone())),
            };
            BackendInfo {
                name: b.name().to_string(),
                kind: b.kind().to_string(),
                api_url: b.cloud().map(|c| c.api_url.clone()),
                credentials,
                message,
                instances: mine.len() as u32,
                price_per_hour: mine.iter().map(|i| i.price).sum(),
                orphans: state
                    .orphans
                    .iter()
                    .map(|m| format!("{} ({}, {})", m.name, m.id, m.status))
                    .collect(),
            }
        })
        .collect())
}

/// Asks every cloud backend whether its credentials work, all at once.
pub async fn check_credentials(d: &Daemon) {
    let mut tasks = tokio::task::JoinSet::new();
    for b in d.backends().list().iter().filter(|b| b.cloud().is_some()) {
        let b = b.clone();
        tasks.spawn(async move {
            let r = match tokio::time::timeout(CHECK_TIMEOUT, b.check()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "{}: no answer within {}s; the provider's API is slow or down",
                    b.name(),
                    CHECK_TIMEOUT.as_secs()
                )),
            };
            (b.name().to_string(), r)
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((name, r)) => {
                if let Err(e) = &r {
                    warn!("backend {name}: the credentials do not work: {e}");
                }
                d.backends()
                    .update_state(&name, |s| s.credentials = Some(r));
            }
            Err(e) => warn!("a credential check ended abnormally: {e}"),
        }
    }
}

fn event(d: &Daemon, resource: String, reason: &str, message: String) {
    let draft = EventDraft {
        kind: "instance",
        resource,
        old_status: None,
        new_status: None,
        reason: Some(reason.to_string()),
        message: Some(message),
    };
    match d.store().append_events(vec![draft]) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot record an event: {e}"),
    }
}

/// At start, for every cloud backend: its credentials and its machines
/// against the store. A machine whose creation a crash interrupted is adopted by its
/// instance; one the store does not know is reported (an event, `backend list`) and, with
/// `terminate_orphans`, terminated; an instance whose creation left no machine is removed.
pub async fn start_scan(d: &Daemon) {
    check_credentials(d).await;
    for b in d.backends().list().iter().filter(|b| b.cloud().is_some()) {
        if let Err(e) = scan_backend(d, b).await {
            warn!("backend {}: cannot list its machines: {e}", b.name());
        }
    }
}

async fn scan_backend(d: &Daemon, b: &Arc<dyn Backend>) -> Result<(), String> {
    let machines = tokio::time::timeout(CHECK_TIMEOUT, b.machines())
        .await
        .map_err(|_| format!("no answer within {}s", CHECK_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let instances = d.store().list_instances().map_err(|e| e.to_string())?;
    let mine: Vec<&Instance> = instances.iter().filter(|i| i.backend == b.name()).collect();
    // Creations that a previous daemon began (this one's own are in flight).
    let interrupted = |i: &Instance| i.backend_id.is_none() && i.created_at < d.started_at();
    let mut orphans = Vec::new();
    let mut adopted = Vec::new();
    for m in machines {
        if mine
            .iter()
            .any(|i| i.backend_id.as_deref() == Some(m.id.as_str()))
        {
            continue;
        }
        let named = instance_id_of(&m.name).and_then(|id| mine.iter().find(|i| i.id == id));
        // This daemon's own creation, still waiting for the provider's answer.
        if named.is_some_and(|i| i.backend_id.is_none() && !interrupted(i)) {
            continue;
        }
        let waiting = named.filter(|i| interrupted(i));
        if let Some(inst) = waiting {
            let mut inst = (*inst).clone();
            info!(instance = %inst.name, machine = %m.id, "adopting a machine whose creation a restart interrupted");
            inst.backend_id = Some(m.id.clone());
            adopted.push(inst.id);
            match d.store().put_instance(&inst) {
                Ok(ev) => d.publish(ev),
                Err(e) => warn!("cannot record {}: {e}", inst.name),
            }
            continue;
        }
        // Created meanwhile by this daemon (the store is read again before a verdict).
        let now_known = instance_id_of(&m.name)
            .and_then(|id| d.store().get_instance(id).ok().flatten())
            .is_some_and(|i| i.backend == b.name());
        if now_known {
            continue;
        }
        let what = format!(
            "{} machine {} ({}, {}) carries flotilla's name prefix but is unknown to this daemon",
            b.name(),
            m.name,
            m.id,
            m.status
        );
        if b.cloud().is_some_and(|c| c.terminate_orphans) {
            match b.terminate(&m.id).await {
                Ok(()) => {
                    warn!("{what}: terminated (terminate_orphans)");
                    event(
                        d,
                        format!("{}/{}", b.name(), m.name),
                        "orphan_terminated",
                        format!("{what}: terminated (terminate_orphans: true)"),
                    );
                    continue;
                }
                Err(e) => warn!("{what}: cannot terminate it: {e}"),
            }
        }
        warn!("{what}; terminate it at the provider, or set terminate_orphans: true");
        event(
            d,
            format!("{}/{}", b.name(), m.name),
            "orphan",
            format!("{what}; terminate it at the provider, or set terminate_orphans: true on the backend"),
        );
        orphans.push(m);
    }
    for inst in mine
        .iter()
        .filter(|i| interrupted(i) && !adopted.contains(&i.id))
    {
        info!(instance = %inst.name, "its creation was interrupted and left no machine; removing it");
        match d.store().delete_instance(inst, "creation_interrupted") {
            Ok(ev) => d.publish(ev),
            Err(e) => warn!("cannot remove {}: {e}", inst.name),
        }
    }
    d.flush_or_warn("the backends' machines at start").await;
    d.backends().update_state(b.name(), |s| s.orphans = orphans);
    Ok(())
}

/// Whether `inst`, a cloud machine, has been coming up longer than its backend allows.
pub fn past_provisioning_timeout(d: &Daemon, inst: &Instance, now: Timestamp) -> bool {
    let Some(b) = d.backends().get(&inst.backend) else {
        return false;
    };
    let Some(c) = b.cloud() else { return false };
    matches!(
        inst.status,
        InstanceStatus::Pending | InstanceStatus::Provisioning
    ) && inst.backend_id.is_some()
        && inst.created_at.secs_until(now) >= c.provisioning_timeout_secs
}

/// One look at a booting cloud machine: once the provider reports it up with an address, the
/// instance gets its endpoint and the instances loop provisions it over SSH; a machine the
/// provider lost is removed; one past `provisioning_timeout` is terminated.
pub async fn boot_step(d: &Daemon, inst: &Instance) {
    let (Some(b), Some(id)) = (d.backends().get(&inst.backend), inst.backend_id.clone()) else {
        return;
    };
    if past_provisioning_timeout(d, inst, Timestamp::now()) {
        let secs = b
            .cloud()
            .map(|c| c.provisioning_timeout_secs)
            .unwrap_or_default();
        let mut i = inst.clone();
        i.error = Some(format!(
            "the machine did not come up within provisioning_timeout ({secs}s); terminating it"
        ));
        record(d, &i);
        terminate(d, &i, "provisioning_timeout").await;
        return;
    }
    let status = b.boot_status(&id).await;
    let Ok(Some(mut current)) = d.store().get_instance(inst.id) else {
        return;
    };
    if current.ssh.is_some() || current.status != InstanceStatus::Pending {
        return;
    }
    match status {
        Ok(Boot::Ready(ep)) => {
            info!(instance = %current.name, endpoint = %ep.label(), "the machine is up");
            current.hostname = Some(ep.hostname.clone());
            current.ssh = Some(ep);
            current.error = None;
            record(d, &current);
            d.flush_or_warn("a machine that came up").await;
            d.wake_instances();
        }
        Ok(Boot::Booting(s)) => {
            let msg = Some(format!("{} reports the machine {s}", inst.backend));
            if current.error != msg {
                current.error = msg;
                record(d, &current);
            }
        }
        Ok(Boot::Gone(msg)) => {
            current.status = InstanceStatus::Failed;
            current.error = Some(msg);
            record(d, &current);
            terminate(d, &current, "provider_failed").await;
        }
        Err(e) => {
            let msg = Some(format!(
                "cannot ask {} about the machine: {e}",
                inst.backend
            ));
            if current.error != msg {
                current.error = msg;
                record(d, &current);
            }
        }
    }
}

fn record(d: &Daemon, inst: &Instance) {
    match d.store().put_instance(inst) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot record instance {}: {e}", inst.name),
    }
}
