//! Operations layer: a service's replicas as the proxy reaches them. Which jobs of a run serve
//! (its running jobs), where their `port` answers, and whether it accepts connections.

use super::tunnels::{connect_job_port, host_port};
use crate::handle::Daemon;
use crate::services::ReplicaTarget;
use flotilla_protocol::config::RunConfiguration;
use flotilla_protocol::model::{JobStatus, JobSubmission, Run};
use std::time::Duration;

/// How long a readiness check waits for the replica's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The port a service's replicas listen on (`None` for runs that are not services).
pub fn service_port(run: &Run) -> Option<u16> {
    match &run.configuration {
        RunConfiguration::Service(s) => s.port.as_ref().map(|p| p.container),
        _ => None,
    }
}

/// The replicas of a service run as the proxy reaches them, each marked ready when its port
/// accepts a connection now. Only running jobs serve.
pub async fn check_replicas(d: &Daemon, run: &Run) -> Vec<ReplicaTarget> {
    let Some(port) = service_port(run) else {
        return Vec::new();
    };
    let running = run
        .jobs
        .iter()
        .filter(|j| j.current.status == JobStatus::Running && j.current.stop.is_none());
    let checks = running.map(|j| async move {
        ReplicaTarget {
            submission: j.current.id,
            replica_num: j.replica_num,
            instance_id: j.current.instance_id,
            host_port: host_port(&j.current, port),
            ready: port_accepts(d, &j.current, port).await,
        }
    });
    futures_util::future::join_all(checks).await
}

/// Whether the job's `port` accepts a TCP connection now.
pub async fn port_accepts(d: &Daemon, sub: &JobSubmission, port: u16) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect_job_port(d, sub, port)).await,
        Ok(Ok(_))
    )
}
