//! Operations layer: `daemon.status`, what the daemon is and holds.

use super::OpError;
use crate::handle::Daemon;
use flotilla_protocol::rpc::{DaemonStatus, PROTOCOL_VERSION};
use flotilla_protocol::Timestamp;

pub fn status(d: &Daemon) -> Result<DaemonStatus, OpError> {
    let active = d.store().active_runs().len();
    let fleets = d.store().list_fleets()?;
    let now = Timestamp::now();
    Ok(DaemonStatus {
        version: flotilla_protocol::VERSION.into(),
        protocol: PROTOCOL_VERSION.into(),
        pid: std::process::id(),
        socket: d.config().socket.display().to_string(),
        data_dir: d.config().data_dir.display().to_string(),
        started_at: d.started_at(),
        uptime_secs: d.started_at().secs_until(now),
        runs: d.store().count_runs(),
        active_runs: active,
        fleets: fleets.len(),
        instances: fleets.iter().map(|f| f.instances.len()).sum(),
        http: super::proxy::http_status(d),
    })
}
