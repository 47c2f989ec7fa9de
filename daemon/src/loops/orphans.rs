//! Driver layer, part of the instances loop: jobs given up while their host was unreachable.
//! The daemon ends such a job (`instance_unreachable`) without being able to stop it, so it may
//! still run there: it is recorded on its instance as an orphan, whose blocks and GPUs stay busy
//! (see `ops::occupancy`) until the host is back and the job is gone; on reconnect it is killed.

use crate::handle::Daemon;
use crate::hosts::supervisor::{self, ProcessStatus};
use crate::hosts::Host;
use flotilla_protocol::model::{Instance, JobSubmission, OrphanJob};
use tracing::{info, warn};

/// The orphan that a job on `host` leaves when the daemon ends it without reaching its host;
/// None for a job that never started there.
pub fn orphan_of(host: &Host, job: String, sub: &JobSubmission) -> Option<OrphanJob> {
    if !sub.status.is_on_host() && sub.job_dir.is_none() {
        return None;
    }
    Some(OrphanJob {
        submission: sub.id,
        job,
        job_dir: sub.job_dir.clone().unwrap_or_else(|| host.job_dir(sub.id)),
        blocks: sub.blocks,
        gpus: sub.gpus.clone(),
    })
}

/// Adds orphans to the stored instance (once each); store errors are logged.
pub fn record_orphans(d: &Daemon, instance_id: u64, orphans: Vec<OrphanJob>) {
    if orphans.is_empty() {
        return;
    }
    let mut inst = match d.store().get_instance(instance_id) {
        Ok(Some(i)) => i,
        Ok(None) => return,
        Err(e) => {
            warn!("cannot record the jobs left on instance {instance_id}: {e}");
            return;
        }
    };
    for o in orphans {
        if !inst.orphans.iter().any(|k| k.submission == o.submission) {
            warn!(
                "job {} was given up on {} and may still run there: it is stopped when the host is back",
                o.job, inst.name
            );
            inst.orphans.push(o);
        }
    }
    match d.store().put_instance(&inst) {
        Ok(ev) => d.publish(ev),
        Err(e) => warn!("cannot record the jobs left on {}: {e}", inst.name),
    }
}

/// On a reachable host: kills the orphans that still run there and forgets those that are gone,
/// which frees their blocks. True when the instance changed.
pub async fn stop_orphans(d: &Daemon, host: &Host, inst: &mut Instance) -> bool {
    let mut kept = Vec::new();
    let before = inst.orphans.len();
    for o in std::mem::take(&mut inst.orphans) {
        match still_running(host, &o).await {
            Ok(false) => info!("job {} left on {} is gone", o.job, inst.name),
            Ok(true) => kept.push(o),
            Err(e) => {
                warn!("cannot stop job {} left on {}: {e}", o.job, inst.name);
                kept.push(o);
            }
        }
    }
    inst.orphans = kept;
    if inst.orphans.len() != before {
        d.wake_scheduler();
        return true;
    }
    false
}

/// Kills the orphan when it still runs; true while its process is still there.
async fn still_running(host: &Host, o: &OrphanJob) -> Result<bool, String> {
    match supervisor::status(host, &o.job_dir)
        .await
        .map_err(|e| e.to_string())?
    {
        ProcessStatus::Running(pid) => {
            warn!(
                "job {} (pid {pid}) still runs after it was given up: killing it",
                o.job
            );
            supervisor::signal(host, &o.job_dir, "KILL")
                .await
                .map_err(|e| e.to_string())?;
            let after = supervisor::status(host, &o.job_dir)
                .await
                .map_err(|e| e.to_string())?;
            Ok(matches!(after, ProcessStatus::Running(_)))
        }
        ProcessStatus::Exited(_) | ProcessStatus::Lost | ProcessStatus::Absent => Ok(false),
    }
}
