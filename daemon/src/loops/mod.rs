//! The background loops: scheduling of submitted jobs, one runner per job on a host, and timers.

pub mod fleets;
pub mod instances;
pub mod metrics;
pub mod runner;
pub mod scheduling;
pub mod timers;

use crate::state::Daemon;
use flotilla_protocol::model::JobStatus;

/// Starts every loop, and reattaches to the jobs that were on hosts when the daemon last stopped.
pub fn spawn_all(d: &Daemon) -> Vec<tokio::task::JoinHandle<()>> {
    for run in d.store.active_runs() {
        for job in &run.jobs {
            let s = job.current.status;
            if s.is_on_host() || s == JobStatus::Provisioning {
                runner::spawn(d, run.id, job.replica_num, job.job_num, job.current.id);
            }
        }
    }
    vec![
        tokio::spawn(scheduling::run(d.clone())),
        tokio::spawn(timers::run(d.clone())),
        tokio::spawn(instances::run(d.clone())),
        tokio::spawn(metrics::run(d.clone())),
        tokio::spawn(fleets::run(d.clone())),
    ]
}
