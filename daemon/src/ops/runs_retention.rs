//! Operations layer: job retention. Finished job directories (script, log, exit code) stay on
//! their host for `job_retention` (default 7 days), then the supervisor's `gc` removes them;
//! the daemon keeps its own copy of every log.

use crate::handle::Daemon;
use crate::hosts::Host;
use flotilla_protocol::model::InstanceStatus;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Runs `gc <job_retention>` on the local machine and on every reachable SSH host.
pub async fn collect_old_job_dirs(d: &Daemon) {
    let secs = d.config().job_retention_secs.to_string();
    let mut hosts: Vec<Host> = vec![d.local_host()];
    match d.store().list_instances() {
        Ok(instances) => hosts.extend(
            instances
                .iter()
                .filter(|i| i.ssh.is_some() && !i.unreachable)
                .filter(|i| matches!(i.status, InstanceStatus::Idle | InstanceStatus::Busy))
                .map(|i| d.host_for(Some(i.id)))
                .filter(|h| matches!(h, Host::Ssh(_))),
        ),
        Err(e) => warn!("job retention: cannot list the hosts: {e}"),
    }
    let args = ["gc", secs.as_str()];
    for host in hosts {
        let gc = host.run(&args, None);
        match tokio::time::timeout(Duration::from_secs(60), gc).await {
            Ok(Ok(removed)) => {
                let n = removed.lines().filter(|l| !l.trim().is_empty()).count();
                if n > 0 {
                    info!(host = %host.label(), removed = n, "removed finished job directories past job_retention");
                }
            }
            Ok(Err(e)) => warn!("job retention on {}: {e}", host.label()),
            Err(_) => debug!("job retention on {}: timed out", host.label()),
        }
    }
}
