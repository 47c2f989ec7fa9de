//! Operations layer: `gateway.open`. Whom the daemon's SSH gateway lets into which job: the
//! run's owner (or an admin), with the key the daemon gave them (`user.me`), into the job's
//! environment: its container when it has one, else its working directory on its host.

use super::logs::find_target_job;
use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::hosts::Host;
use crate::presence::PresenceGuard;
use flotilla_protocol::rpc::TunnelParams;

/// Where a gateway session goes, and who may open it.
pub struct GatewayTarget {
    pub run: String,
    /// The job's owner: local sessions run as them.
    pub owner: u32,
    pub host: Host,
    pub job_dir: String,
    /// The only key the session accepts (the caller's own, OpenSSH format).
    pub public_key: String,
    /// The session counts as an attached client of the run while it lasts.
    pub attached: PresenceGuard,
}

pub fn open(d: &Daemon, caller: &Caller, p: &TunnelParams) -> Result<GatewayTarget, OpError> {
    let (run, job) = find_target_job(d, &p.run, p.replica, p.job)?;
    if run.uid != caller.uid && !caller.admin {
        return Err(OpError::Forbidden(format!(
            "run {} belongs to {}: only its owner or an admin can open a session in it",
            run.name, run.user
        )));
    }
    let sub = &job.current;
    if !sub.status.is_on_host() {
        return Err(OpError::Conflict(format!(
            "job {}/{} of {} is {}, not running",
            p.replica, p.job, run.name, sub.status
        )));
    }
    let job_dir = sub.job_dir.clone().ok_or_else(|| {
        OpError::Conflict(format!(
            "job {}/{} of {} has no directory yet",
            p.replica, p.job, run.name
        ))
    })?;
    let user = d.store().get_user(caller.uid)?.ok_or_else(|| {
        OpError::Conflict(format!(
            "{} has no SSH key yet: run `flotilla ps` once so that the daemon makes one",
            caller.user
        ))
    })?;
    Ok(GatewayTarget {
        run: run.name.clone(),
        owner: run.uid,
        host: d.host_for(sub.instance_id),
        job_dir,
        public_key: user.ssh_public_key,
        attached: d.presence().enter(run.id),
    })
}
