//! Operations layer: fleets. `fleet.apply` and `fleet.delete`: an SSH fleet's hosts become
//! instances that the instances loop provisions; a backend fleet asks the fleet upkeep loop for
//! its instances. Also the fleet file's rules (endpoints, blocks).

use super::local_fleet::LOCAL_FLEET;
use super::occupancy::busy_instances;
use super::stops::carry_out_stops;
use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::lifecycle::request_job_stop;
use crate::scheduler::total_blocks;
use flotilla_protocol::config::{
    parse_configuration_async, Blocks, Configuration, FleetConfig, SshConfig, SshProxyJump,
};
use flotilla_protocol::model::{
    Fleet, FleetStatus, Instance, InstanceResources, InstanceStatus, JobTerminationReason,
    SshEndpoint,
};
use flotilla_protocol::rpc::FleetApplyParams;
use flotilla_protocol::Timestamp;

/// The fleet's hosts, resolved: per-host values over the fleet's `ssh_config` defaults.
pub fn endpoints(ssh: &SshConfig, default_user: &str) -> Vec<SshEndpoint> {
    let jump = |j: &SshProxyJump, user: &str, identity: &Option<String>| SshEndpoint {
        hostname: j.hostname.clone(),
        port: j.port.unwrap_or(22),
        user: j.user.clone().unwrap_or_else(|| user.to_string()),
        identity_file: j.identity_file.clone().or_else(|| identity.clone()),
        proxy_jump: None,
        internal_ip: None,
    };
    ssh.hosts
        .iter()
        .map(|h| {
            let user = h
                .user
                .clone()
                .or_else(|| ssh.user.clone())
                .unwrap_or_else(|| default_user.to_string());
            let identity = h
                .identity_file
                .clone()
                .or_else(|| ssh.identity_file.clone());
            let proxy = h
                .proxy_jump
                .as_ref()
                .or(ssh.proxy_jump.as_ref())
                .map(|j| Box::new(jump(j, &user, &identity)));
            SshEndpoint {
                hostname: h.hostname.clone(),
                port: h.port.or(ssh.port).unwrap_or(22),
                user,
                identity_file: identity,
                proxy_jump: proxy,
                internal_ip: h.internal_ip.clone(),
            }
        })
        .collect()
}

/// The `blocks` of host `i` of a fleet: the host's own, else the fleet's.
pub fn host_blocks(cfg: &FleetConfig, hostname: &str) -> Blocks {
    cfg.ssh_config
        .as_ref()
        .and_then(|s| s.hosts.iter().find(|h| h.hostname == hostname))
        .and_then(|h| h.blocks)
        .unwrap_or(cfg.blocks)
}

/// How many blocks a host with these resources gets (`auto` = one per GPU, per CPU without
/// GPUs); a count that cannot split the host is an error that names why.
pub fn block_count(blocks: Blocks, res: &InstanceResources) -> Result<u32, String> {
    if let Blocks::Count(n) = blocks {
        let g = res.gpus.len() as u32;
        if n == 0 {
            return Err("blocks must be at least 1".into());
        }
        if g > 0 && !g.is_multiple_of(n) {
            return Err(format!("blocks: {n} does not divide the host's {g} GPUs"));
        }
        if g == 0 && n > res.cpus.max(1) {
            return Err(format!(
                "blocks: {n} is more than the host's {} CPUs",
                res.cpus
            ));
        }
    }
    Ok(total_blocks(blocks, res))
}

fn same_host(i: &Instance, ep: &SshEndpoint) -> bool {
    i.ssh
        .as_ref()
        .is_some_and(|e| e.hostname == ep.hostname && e.port == ep.port)
}

/// A host (address and port) belongs to one fleet only: two fleets sharing one would give its
/// GPUs to two jobs at once.
fn refuse_hosts_of_other_fleets(
    d: &Daemon,
    fleet: &str,
    eps: &[SshEndpoint],
) -> Result<(), OpError> {
    for other in d.store().list_instances()? {
        if other.fleet == fleet || other.status == InstanceStatus::Terminated {
            continue;
        }
        if let Some(ep) = eps.iter().find(|ep| same_host(&other, ep)) {
            return Err(OpError::Conflict(format!(
                "host {}:{} already belongs to fleet {} (instance {}); a host can be in one fleet only",
                ep.hostname, ep.port, other.fleet, other.name
            )));
        }
    }
    Ok(())
}

/// Creates or updates a fleet from a fleet file: new hosts become pending instances, hosts no
/// longer listed are released (refused while they run jobs).
pub async fn apply(
    d: &Daemon,
    caller: &Caller,
    params: &FleetApplyParams,
) -> Result<Fleet, OpError> {
    let file = params.file_name.clone().unwrap_or_else(|| "fleet".into());
    let parsed = parse_configuration_async(file.clone(), params.configuration.clone()).await;
    let cfg = match parsed.map_err(OpError::Config)? {
        Configuration::Fleet(f) => f,
        other => {
            return Err(OpError::Invalid(format!(
                "{file} is a {} configuration; fleet.apply takes a fleet",
                other.type_name()
            )))
        }
    };
    let Some(ssh) = &cfg.ssh_config else {
        return apply_backend_fleet(d, caller, &file, cfg).await;
    };
    if ssh.hosts.is_empty() {
        return Err(OpError::Invalid(format!(
            "{file}: ssh_config.hosts is empty"
        )));
    }
    let mut fleet = fleet_for_apply(d, caller, &cfg)?;
    let name = fleet.name.clone();
    let eps = endpoints(ssh, &caller.user);
    super::fleets_keys::check_identity_files(caller, &eps, &params.identity_keys)?;
    refuse_hosts_of_other_fleets(d, &name, &eps)?;
    // Hosts no longer listed: release them, unless they run jobs.
    let busy = busy_instances(d);
    for old in &fleet.instances {
        if !eps.iter().any(|ep| same_host(old, ep)) && busy.contains(&old.id) {
            return Err(OpError::Conflict(format!(
                "host {} of fleet {name} runs jobs; stop them before removing it from the fleet",
                old.ssh
                    .as_ref()
                    .map(|e| e.hostname.as_str())
                    .unwrap_or(&old.name)
            )));
        }
    }
    for old in fleet.instances.clone() {
        if !eps.iter().any(|ep| same_host(&old, ep)) {
            let ev = d.store().delete_instance(&old, "removed from the fleet")?;
            d.publish(ev);
            if let Some(h) = d.forget_host(old.id) {
                h.disconnect().await;
            }
        }
    }
    let mut next_num = fleet
        .instances
        .iter()
        .map(|i| i.instance_num + 1)
        .max()
        .unwrap_or(0);
    for ep in &eps {
        if let Some(old) = fleet.instances.iter().find(|i| same_host(i, ep)) {
            // Same host: keep its key and state; take new login settings.
            if old.ssh.as_ref() != Some(ep) {
                let mut inst = old.clone();
                if old.ssh.as_ref().map(|e| &e.proxy_jump) != Some(&ep.proxy_jump) {
                    // Another jump host: its key is learned anew.
                    inst.jump_host_key = None;
                }
                inst.ssh = Some(ep.clone());
                inst.status = InstanceStatus::Pending;
                d.forget_host(inst.id);
                d.publish(d.store().put_instance(&inst)?);
            }
            continue;
        }
        let inst = pending_instance(
            d.store().next_id()?,
            &name,
            next_num,
            ep.clone(),
            "ssh",
            "ssh",
            0.0,
            None,
        );
        next_num += 1;
        d.publish(d.store().put_instance(&inst)?);
    }
    fleet.configuration = Some(cfg.clone());
    fleet.status = FleetStatus::Active;
    d.store().put_fleet(&fleet)?;
    d.store().flush().await?;
    d.wake_instances();
    Ok(d.store().get_fleet(&name)?.unwrap_or(fleet))
}

/// A fleet whose instances come from backends: stored, then its `target` instances created.
async fn apply_backend_fleet(
    d: &Daemon,
    caller: &Caller,
    file: &str,
    cfg: FleetConfig,
) -> Result<Fleet, OpError> {
    if d.backends().is_empty() {
        return Err(OpError::Invalid(format!(
            "{file}: a fleet without ssh_config needs a backend, and none is configured; list your machines under ssh_config.hosts, or add a backend to the daemon's config.yml"
        )));
    }
    if let Some(names) = &cfg.profile.backends {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| d.backends().get(n).is_none())
            .collect();
        if !unknown.is_empty() {
            return Err(OpError::Invalid(format!(
                "{file}: backends: {} not configured (configured: {})",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                d.backends().names().join(", ")
            )));
        }
    }
    let mut fleet = fleet_for_apply(d, caller, &cfg)?;
    let name = fleet.name.clone();
    fleet.configuration = Some(cfg.clone());
    d.store().put_fleet(&fleet)?;
    d.store().flush().await?;
    let have = fleet.instances.len() as u32;
    let target = cfg.nodes.map(|n| n.target.max(n.min)).unwrap_or(0);
    if target > have {
        // The fleet upkeep loop creates them; the answer waits for it.
        let created = d.want_instances(&fleet.name, target - have).await;
        let failed = match created {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the daemon is shutting down".to_string()),
        };
        if let Some(e) = failed {
            return Err(OpError::Conflict(format!(
                "fleet {name}: cannot create an instance: {e}"
            )));
        }
    }
    Ok(d.store().get_fleet(&name)?.unwrap_or(fleet))
}

/// The fleet a fleet file names (its name generated when absent): the stored one, checked for
/// ownership, or a new one.
fn fleet_for_apply(d: &Daemon, caller: &Caller, cfg: &FleetConfig) -> Result<Fleet, OpError> {
    let name = match &cfg.name {
        Some(n) => n.clone(),
        None => format!("fleet-{}", d.store().next_id()?),
    };
    if name == LOCAL_FLEET {
        return Err(OpError::Conflict(format!(
            "the fleet name {name} is reserved for this machine; choose another name"
        )));
    }
    match d.store().get_fleet(&name)? {
        Some(f) if f.user != caller.user && !caller.admin => Err(OpError::Forbidden(format!(
            "fleet {name} belongs to {}; only its owner or an admin can change it",
            f.user
        ))),
        Some(f) => Ok(f),
        None => Ok(Fleet {
            id: d.store().next_id()?,
            name,
            status: FleetStatus::Active,
            user: caller.user.clone(),
            created_at: Timestamp::now(),
            configuration: None,
            instances: Vec::new(),
        }),
    }
}

/// A new instance of a fleet, to be provisioned over SSH at `endpoint`.
#[allow(clippy::too_many_arguments)]
pub fn pending_instance(
    id: u64,
    fleet: &str,
    num: u32,
    endpoint: SshEndpoint,
    backend: &str,
    region: &str,
    price: f64,
    backend_id: Option<String>,
) -> Instance {
    Instance {
        id,
        name: format!("{fleet}-{num}"),
        fleet: fleet.to_string(),
        instance_num: num,
        status: InstanceStatus::Pending,
        unreachable: false,
        termination_reason: None,
        backend: backend.to_string(),
        region: region.to_string(),
        hostname: Some(endpoint.hostname.clone()),
        price,
        resources: InstanceResources {
            cpus: 0,
            cpu_arch: flotilla_protocol::config::CpuArch::X86,
            memory_gb: 0.0,
            disk_gb: None,
            gpus: Vec::new(),
        },
        total_blocks: 1,
        busy_blocks: 0,
        created_at: Timestamp::now(),
        error: None,
        ssh: Some(endpoint),
        host_key: None,
        backend_id,
        host_root: None,
        unreachable_since: None,
        jump_host_key: None,
        orphans: Vec::new(),
        software: Default::default(),
    }
}

/// Deletes a fleet: its jobs are aborted, its hosts released (nothing on them is removed but
/// the connection), its records removed.
pub async fn delete(d: &Daemon, caller: &Caller, name: &str) -> Result<(), OpError> {
    if name == LOCAL_FLEET {
        return Err(OpError::Conflict(format!(
            "the fleet {name} is this machine and cannot be deleted"
        )));
    }
    let fleet = d.store().get_fleet(name)?.ok_or_else(|| {
        OpError::NotFound(format!(
            "fleet {name} not found; `flotilla fleet list` lists the fleets"
        ))
    })?;
    if fleet.user != caller.user && !caller.admin {
        return Err(OpError::Forbidden(format!(
            "fleet {name} belongs to {}; only its owner or an admin can delete it",
            fleet.user
        )));
    }
    let ids: Vec<u64> = fleet.instances.iter().map(|i| i.id).collect();
    let now = Timestamp::now();
    for run in d.store().active_runs() {
        let on_fleet = run.jobs.iter().any(|j| {
            !j.current.status.is_finished()
                && j.current.instance_id.is_some_and(|i| ids.contains(&i))
        });
        if !on_fleet {
            continue;
        }
        d.update_run(run.id, |run| {
            for job in run.jobs.iter_mut() {
                if job.current.instance_id.is_some_and(|i| ids.contains(&i)) {
                    request_job_stop(
                        job,
                        JobTerminationReason::TerminatedByServer,
                        true,
                        None,
                        now,
                    );
                }
            }
        })?;
        d.store().flush().await?;
        carry_out_stops(d, run.id).await;
    }
    for inst in &fleet.instances {
        // Machines a backend made go back to it; SSH hosts are only released.
        if let (Some(b), Some(id)) = (d.backends().get(&inst.backend), &inst.backend_id) {
            if let Err(e) = b.terminate(id).await {
                tracing::warn!("{}: cannot terminate {}: {e}", inst.backend, inst.name);
            }
        }
        d.publish(d.store().delete_instance(inst, "terminated_by_user")?);
        if let Some(h) = d.forget_host(inst.id) {
            h.disconnect().await;
        }
    }
    d.publish(d.store().delete_fleet(name)?);
    d.store().flush().await?;
    Ok(())
}

/// `fleet.list`: fleets with their instances and what jobs hold on them now.
pub fn list(d: &Daemon) -> Result<Vec<Fleet>, OpError> {
    Ok(super::occupancy::fleets_with_usage(d)?)
}

/// `fleet.get`: one fleet as `fleet.list` shows it.
pub fn get(d: &Daemon, name: &str) -> Result<Fleet, OpError> {
    list(d)?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            OpError::NotFound(format!(
                "fleet {name} not found; `flotilla fleet list` lists the fleets"
            ))
        })
}

/// `instance.list`: the instances of every fleet, as `fleet.list` shows them.
pub fn instances(d: &Daemon) -> Result<Vec<Instance>, OpError> {
    Ok(list(d)?.into_iter().flat_map(|f| f.instances).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::CpuArch;
    use flotilla_protocol::model::Gpu;

    fn machine(gpus: usize, cpus: u32) -> InstanceResources {
        InstanceResources {
            cpus,
            cpu_arch: CpuArch::X86,
            memory_gb: 64.0,
            disk_gb: None,
            gpus: (0..gpus)
                .map(|_| Gpu {
                    name: "H100".into(),
                    memory_gb: 80.0,
                    vendor: flotilla_protocol::config::GpuVendor::Nvidia,
                })
                .collect(),
        }
    }

    #[test]
    fn auto_blocks_are_one_per_gpu_else_one_per_cpu() {
        assert_eq!(block_count(Blocks::Auto, &machine(8, 64)), Ok(8));
        assert_eq!(block_count(Blocks::Auto, &machine(0, 16)), Ok(16));
        assert_eq!(block_count(Blocks::Auto, &machine(0, 0)), Ok(1));
    }

    #[test]
    fn a_block_count_must_split_the_host_evenly() {
        assert_eq!(block_count(Blocks::Count(4), &machine(8, 64)), Ok(4));
        assert_eq!(block_count(Blocks::Count(1), &machine(8, 64)), Ok(1));
        assert_eq!(
            block_count(Blocks::Count(3), &machine(8, 64)),
            Err("blocks: 3 does not divide the host's 8 GPUs".into())
        );
        assert_eq!(
            block_count(Blocks::Count(0), &machine(8, 64)),
            Err("blocks must be at least 1".into())
        );
        assert_eq!(block_count(Blocks::Count(4), &machine(0, 8)), Ok(4));
        assert_eq!(
            block_count(Blocks::Count(16), &machine(0, 8)),
            Err("blocks: 16 is more than the host's 8 CPUs".into())
        );
    }

    #[test]
    fn a_hosts_own_blocks_win_over_the_fleets() {
        let cfg = match flotilla_protocol::config::parse_configuration(
            "f.yml",
            "type: fleet\nname: lab\nblocks: 2\nssh_config:\n  user: ubuntu\n  hosts:\n    - a.example\n    - hostname: b.example\n      blocks: 4\n",
        )
        .expect("a valid fleet")
        {
            Configuration::Fleet(f) => f,
            other => panic!("not a fleet: {}", other.type_name()),
        };
        assert_eq!(host_blocks(&cfg, "a.example"), Blocks::Count(2));
        assert_eq!(host_blocks(&cfg, "b.example"), Blocks::Count(4));
        let eps = endpoints(cfg.ssh_config.as_ref().expect("ssh_config"), "alice");
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].user, "ubuntu");
        assert_eq!(eps[0].port, 22);
    }
}
