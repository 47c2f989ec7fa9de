//! Operations layer: carrying out stop requests, the one stop helper of `run.stop`,
//! `fleet.delete`, the runners and the timers.

use crate::handle::Daemon;
use crate::hosts::supervisor;
use flotilla_protocol::Timestamp;
use tracing::warn;

/// Sends the signals that the run's stop requests call for: TERM once, KILL when due.
pub async fn carry_out_stops(d: &Daemon, run_id: u64) {
    let run = match d.store().get_run(run_id) {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(e) => {
            warn!("cannot read run {run_id} to carry out its stops: {e}");
            return;
        }
    };
    let now = Timestamp::now();
    for job in &run.jobs {
        let sub = &job.current;
        let Some(stop) = &sub.stop else { continue };
        if !sub.status.is_on_host() {
            continue;
        }
        let kill_due = stop.kill_at.is_some_and(|k| k <= now);
        if stop.signalled && (stop.killed || !kill_due) {
            continue;
        }
        let Some(job_dir) = sub.job_dir.clone() else {
            continue;
        };
        let host = d.host_for(sub.instance_id);
        let signal = if kill_due { "KILL" } else { "TERM" };
        if let Err(e) = supervisor::signal(&host, &job_dir, signal).await {
            warn!("cannot signal job {}/{}: {e}", run.name, job.job_num);
            continue;
        }
        let (replica, job_num, sub_id) = (job.replica_num, job.job_num, sub.id);
        let r = d.update_run(run_id, |run| {
            if let Some(j) = run.job_mut(replica, job_num) {
                if j.current.id == sub_id {
                    if let Some(s) = j.current.stop.as_mut() {
                        s.signalled = true;
                        s.killed |= kill_due;
                    }
                }
            }
        });
        if let Err(e) = r {
            warn!("cannot record the signal to {}: {e}", run.name);
        }
    }
    d.flush_or_warn("the signals sent").await;
}
