//! Driver layer: what the nodes of a multi-node run share. Their addresses and GPUs (for
//! `DSTACK_NODES_IPS` and the MPI hostfile), dstack's `startup_order`, and the SSH between
//! them: `mpirun --hostfile $DSTACK_MPI_HOSTFILE` on the master reaches the other nodes with
//! `ssh NODE_IP`, without a password.
//!
//! The SSH between nodes (host jobs on SSH fleet hosts): the run has its own key pair, made at
//! apply and kept sealed in the store. Before a job starts, its runner authorizes the run's
//! public key for the login user of every host of the replica (`authorized_keys`, options
//! `restrict,pty`), and puts in the job's private directory (0700) `ssh/id` (the private key,
//! sent on stdin), `ssh/known_hosts` (the host keys the daemon pinned for those hosts),
//! `ssh/config` (`Host NODE_IP` with the host's SSH port and user, the key, strict host key
//! checking against that file) and `ssh/bin/ssh`, a wrapper that runs the host's `ssh -F
//! ssh/config`; the job's PATH starts with `ssh/bin`. Nothing changes for anything else on the
//! host. When the job ends (before it is seen to end), its `ssh/` directory goes and the key is
//! revoked on its host once no other job of the run runs there; the run's last job revokes it
//! on every host of the run.

use super::job_common::{sleep_or_shutdown, Failure};
use crate::handle::Daemon;
use crate::hosts::{sh_quote, Host};
use crate::lifecycle::startup_wait;
use flotilla_protocol::model::{Job, Run, SshEndpoint};
use std::time::Duration;
use tracing::warn;

/// The `authorized_keys` options of a run's key: commands and a terminal (`ssh NODE` by hand),
/// no forwarding of any kind, no `~/.ssh/rc`.
const KEY_OPTIONS: &str = "restrict,pty";

/// One node of a replica, as the others reach it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub ip: String,
    pub gpus: usize,
    pub instance_id: Option<u64>,
    pub endpoint: Option<SshEndpoint>,
    pub host_key: Option<String>,
    pub finished: bool,
}

/// The nodes of a replica, master (job 0) first: an SSH host's `internal_ip`, else its
/// hostname; 127.0.0.1 for the local machine. A store error is an error: it never turns a node
/// into `127.0.0.1`.
pub(super) fn nodes(d: &Daemon, run: &Run, replica: u32) -> Result<Vec<Node>, String> {
    let mut jobs: Vec<&Job> = run
        .jobs
        .iter()
        .filter(|j| j.replica_num == replica)
        .collect();
    jobs.sort_by_key(|j| j.job_num);
    jobs.iter()
        .map(|j| {
            let instance = match j.current.instance_id {
                Some(id) => d
                    .store()
                    .get_instance(id)
                    .map_err(|e| format!("cannot read instance {id}: {e}"))?,
                None => None,
            };
            let endpoint = instance.as_ref().and_then(|i| i.ssh.clone());
            Ok(Node {
                ip: endpoint
                    .as_ref()
                    .map(|ep| ep.internal_ip.clone().unwrap_or(ep.hostname.clone()))
                    .unwrap_or_else(|| "127.0.0.1".to_string()),
                gpus: j.current.gpus.len(),
                instance_id: j.current.instance_id,
                host_key: instance.and_then(|i| i.host_key),
                endpoint,
                finished: j.current.status.is_finished(),
            })
        })
        .collect()
}

/// Waits while `startup_order` holds the job back (its waiting reason says why); false when
/// the job was stopped or ended meanwhile, or the daemon is shutting down.
pub(super) async fn wait_for_startup_order(d: &Daemon, run_id: u64, job: &Job) -> bool {
    let (replica, job_num, sub_id) = (job.replica_num, job.job_num, job.current.id);
    let mut told = None;
    loop {
        let run = match d.store().get_run(run_id) {
            Ok(Some(run)) => run,
            Ok(None) => return false,
            Err(e) => {
                warn!("job submission {sub_id}: cannot read its run: {e}; waiting on");
                if sleep_or_shutdown(d, Duration::from_secs(1)).await {
                    return false;
                }
                continue;
            }
        };
        let Some(current) = run.job(replica, job_num) else {
            return false;
        };
        if current.current.id != sub_id || current.current.stop.is_some() {
            return current.current.id == sub_id;
        }
        let Some(reason) = startup_wait(&run, replica, job_num) else {
            return true;
        };
        if told != Some(reason) {
            told = Some(reason);
            let noted = d.update_run(run_id, |run| {
                if let Some(j) = run.job_mut(replica, job_num) {
                    if j.current.id == sub_id {
                        j.current.waiting_reason = Some(reason.to_string());
                    }
                }
            });
            if let Err(e) = noted {
                warn!("job submission {sub_id}: cannot note why it waits: {e}");
            }
        }
        if sleep_or_shutdown(d, Duration::from_millis(250)).await {
            return false;
        }
    }
}

/// Where a job's SSH files live on its host.
fn ssh_dir(job_dir: &str) -> String {
    format!("{job_dir}/ssh")
}

/// `ssh/config`: each node by its address, on its host's SSH port, as its login user, with the
/// run's key, checked against `ssh/known_hosts`; then the user's own configuration.
pub(super) fn ssh_config(nodes: &[Node], dir: &str) -> String {
    let mut out = String::from("# written by flotillad: the nodes of this run\n");
    for n in nodes {
        let Some(ep) = &n.endpoint else { continue };
        out.push_str(&format!(
            "Host {ip}\n  HostName {ip}\n  Port {port}\n  User {user}\n  IdentityFile {dir}/id\n  IdentitiesOnly yes\n  UserKnownHostsFile {dir}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            ip = n.ip,
            port = ep.port,
            user = ep.user,
        ));
    }
    out.push_str("Match all\n  Include ~/.ssh/config\n");
    out
}

/// `ssh/known_hosts`: the host key the daemon pinned for each node's host.
pub(super) fn known_hosts(nodes: &[Node]) -> String {
    let mut out = String::new();
    for n in nodes {
        let (Some(ep), Some(key)) = (&n.endpoint, &n.host_key) else {
            continue;
        };
        let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        if ep.port == 22 {
            out.push_str(&format!("{} {key}\n", n.ip));
        } else {
            out.push_str(&format!("[{}]:{} {key}\n", n.ip, ep.port));
        }
    }
    out
}

/// `ssh/bin/ssh`: the host's `ssh` (the next one on the PATH) with the run's configuration.
fn ssh_wrapper(dir: &str) -> String {
    format!(
        "#!/bin/sh\n# written by flotillad: ssh to the nodes of this run\nset -f\nself={bin}\nIFS=:\nfor p in $PATH; do\n  [ \"$p\" = \"$self\" ] && continue\n  if [ -x \"$p/ssh\" ]; then unset IFS; exec \"$p/ssh\" -F {config} \"$@\"; fi\ndone\necho 'flotilla: no ssh client on the PATH of this host' >&2\nexit 127\n",
        bin = sh_quote(&format!("{dir}/bin")),
        config = sh_quote(&format!("{dir}/config")),
    )
}

/// Sets up the SSH between the run's nodes for `job` (see the module's text) and returns the
/// directory to put first on its PATH; `None` when there is nothing to set up (a single node,
/// a run without a key, a job not on an SSH host).
pub(super) async fn install_ssh(
    d: &Daemon,
    host: &Host,
    run: &Run,
    nodes: &[Node],
    job_dir: &str,
) -> Result<Option<String>, Failure> {
    let (Some(key), Host::Ssh(own)) = (&run.cluster_key, host) else {
        return Ok(None);
    };
    if nodes.len() < 2 {
        return Ok(None);
    }
    let private = d
        .sealing()
        .open(&key.private_sealed)
        .map_err(|e| format!("cannot open the run's SSH key: {e}"))?;
    let line = format!("{KEY_OPTIONS} {}", key.public);
    for n in nodes.iter().filter(|n| !n.finished) {
        let Host::Ssh(h) = d.host_for(n.instance_id) else {
            continue;
        };
        h.authorize_keys(std::slice::from_ref(&line))
            .await
            .map_err(|e| format!("cannot authorize the run's SSH key on {}: {e}", h.label()))?;
    }
    let dir = ssh_dir(job_dir);
    let script = format!(
        "set -e; umask 077; mkdir -p {job}; chmod 700 {job}; mkdir -p {dir}/bin; \
         cat > {dir}/id; printf '%s' {config} > {dir}/config; printf '%s' {known} > {dir}/known_hosts; \
         printf '%s' {wrapper} > {dir}/bin/ssh; chmod 755 {dir}/bin {dir}/bin/ssh",
        job = sh_quote(job_dir),
        dir = sh_quote(&dir),
        config = sh_quote(&ssh_config(nodes, &dir)),
        known = sh_quote(&known_hosts(nodes)),
        wrapper = sh_quote(&ssh_wrapper(&dir)),
    );
    let exec = own
        .exec_raw(&script, Some(private.as_bytes()))
        .await
        .map_err(|e| format!("cannot put the run's SSH files in {dir}: {e}"))?;
    let (_, err, code) = exec.collect().await;
    if code != Some(0) {
        return Err(Failure::from(format!(
            "cannot put the run's SSH files in {dir} on {}: {}",
            own.label(),
            String::from_utf8_lossy(&err).trim()
        )));
    }
    Ok(Some(format!("{dir}/bin")))
}

/// After a job ended: its SSH files go, and the run's key is revoked on its host once no other
/// unfinished job of the run is there. A failure is logged for the operator (the job's outcome
/// stands).
pub(super) async fn remove_ssh(d: &Daemon, host: &Host, run: &Run, job: &Job, job_dir: &str) {
    let (Some(key), Host::Ssh(own)) = (&run.cluster_key, host) else {
        return;
    };
    let dir = ssh_dir(job_dir);
    match own
        .exec_raw(&format!("rm -rf {}", sh_quote(&dir)), None)
        .await
    {
        Ok(exec) => {
            let (_, err, code) = exec.collect().await;
            if code != Some(0) {
                warn!(
                    "cannot remove {dir} on {}: {}",
                    own.label(),
                    String::from_utf8_lossy(&err).trim()
                );
            }
        }
        Err(e) => warn!("cannot remove {dir} on {}: {e}", own.label()),
    }
    // The run as it is now (the other nodes may have moved on since `run` was read).
    let fresh = match d.store().get_run(run.id) {
        Ok(fresh) => fresh,
        Err(e) => {
            warn!(
                "run {}: cannot read it to revoke its SSH key: {e}",
                run.name
            );
            None
        }
    };
    let now_run = fresh.as_ref().unwrap_or(run);
    let others: Vec<&Job> = now_run
        .jobs
        .iter()
        .filter(|j| (j.replica_num, j.job_num) != (job.replica_num, job.job_num))
        .filter(|j| !j.current.status.is_finished())
        .collect();
    // The last job of the run sweeps every host of the run (a peer may have authorized the key
    // on a host after that host's own job ended); else the key leaves this job's host once no
    // other job of the run runs there.
    let mut hosts: Vec<Option<u64>> = if others.is_empty() {
        now_run.jobs.iter().map(|j| j.current.instance_id).collect()
    } else if others
        .iter()
        .any(|j| j.current.instance_id == job.current.instance_id)
    {
        Vec::new()
    } else {
        vec![job.current.instance_id]
    };
    hosts.sort_unstable();
    hosts.dedup();
    for id in hosts.into_iter().flatten() {
        let h = d.host_for(Some(id));
        if !matches!(h, Host::Ssh(_)) {
            continue;
        }
        let line = format!("{}\n", key.public);
        if let Err(e) = h.run(&["revoke_keys"], Some(line.as_bytes())).await {
            warn!(
                "run {}: cannot revoke its SSH key on {}: {e}; remove the line ending in flotilla-run-{} from the login user's ~/.ssh/authorized_keys there",
                run.name,
                h.label(),
                run.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ip: &str, port: u16, key: Option<&str>) -> Node {
        Node {
            ip: ip.into(),
            gpus: 0,
            instance_id: None,
            endpoint: Some(SshEndpoint {
                hostname: ip.into(),
                port,
                user: "ubuntu".into(),
                identity_file: None,
                proxy_jump: None,
                internal_ip: None,
            }),
            host_key: key.map(str::to_string),
            finished: false,
        }
    }

    #[test]
    fn each_node_is_reached_on_its_port_with_the_runs_key_and_its_pinned_host_key() {
        let nodes = [
            node("10.0.0.1", 22, Some("ssh-ed25519 AAAA1")),
            node("10.0.0.2", 2222, Some("ssh-ed25519 AAAA2 comment")),
        ];
        let config = ssh_config(&nodes, "/j/1/ssh");
        assert!(config.contains("Host 10.0.0.2\n  HostName 10.0.0.2\n  Port 2222\n  User ubuntu\n  IdentityFile /j/1/ssh/id\n"), "{config}");
        assert!(config.contains("UserKnownHostsFile /j/1/ssh/known_hosts\n"));
        assert!(config.contains("StrictHostKeyChecking yes\n"));
        assert!(config.ends_with("Match all\n  Include ~/.ssh/config\n"));
        assert_eq!(
            known_hosts(&nodes),
            "10.0.0.1 ssh-ed25519 AAAA1\n[10.0.0.2]:2222 ssh-ed25519 AAAA2\n"
        );
        let wrapper = ssh_wrapper("/j/1/ssh");
        assert!(wrapper.contains("exec \"$p/ssh\" -F '/j/1/ssh/config' \"$@\""));
        assert!(wrapper.contains("self='/j/1/ssh/bin'"));
    }
}
