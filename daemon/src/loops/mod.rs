//! Driver layer: the background loops. Every loop has one shape, [`Loop`]: a name, a wake
//! source, a tick, and the shutdown that [`spawn`] handles for all of them. Loops call `ops::`
//! and the handle, never the socket API.
//!
//! - `scheduling`: places submitted jobs (woken by submissions and freed blocks);
//! - `runners`: one task per job submission on a host (not a loop: started by scheduling);
//! - `instances`: provisions and health-checks the hosts of SSH fleets (`orphans`: the jobs
//!   given up while a host was away, killed when it is back);
//! - `fleet_upkeep`: creates and gives back the instances of backend fleets;
//! - `timers`: `max_duration` and the kills that follow graceful stops;
//! - `metrics`: samples the GPUs of busy instances;
//! - `store_watch`: shuts the daemon down once the state store has failed.
//! - `replicas`: every service's replicas: readiness (probes), the live table for the proxy,
//!   autoscaling, replacement of failed replicas and rolling updates;
//! - `job_retention`: removes finished job directories past `job_retention`, hourly.

pub mod cloud;
mod cluster;
mod container_jobs;
pub mod fleet_upkeep;
pub mod instances;
mod job_common;
pub mod job_files;
pub mod job_retention;
mod job_start;
pub mod launch;
pub mod launch_files;
pub mod metrics;
pub mod orphans;
pub mod replicas;
pub mod runners;
pub mod scheduling;
pub mod slurm_jobs;
pub mod store_watch;
pub mod timers;

use crate::handle::Daemon;
use flotilla_protocol::model::JobStatus;
use std::future::Future;
use std::time::Duration;
use tracing::debug;

/// What wakes a loop before its tick's sleep is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeSource {
    /// Nothing but the timer.
    Timer,
    /// [`Daemon::wake_scheduler`]: a submission, freed blocks.
    Scheduler,
    /// [`Daemon::wake_instances`]: hosts or keys changed.
    Instances,
    /// [`Daemon::want_instances`]: a fleet asks for instances.
    Fleets,
    /// [`crate::services::Services::demand_woken`]: the proxy holds a request with no ready
    /// replica.
    Demand,
}

/// One background loop: [`spawn`] calls `tick` until shutdown, sleeping between ticks for
/// the duration that `tick` returns, or less when its wake source fires.
pub trait Loop: Send + 'static {
    fn name(&self) -> &'static str;
    fn wake_source(&self) -> WakeSource;
    /// One pass; returns how long to sleep at most before the next.
    fn tick(&mut self, d: &Daemon) -> impl Future<Output = Duration> + Send;
}

/// Runs a loop until the daemon shuts down (a tick in progress is finished first).
pub fn spawn<L: Loop>(d: &Daemon, mut l: L) -> tokio::task::JoinHandle<()> {
    let d = d.clone();
    tokio::spawn(async move {
        let source = l.wake_source();
        loop {
            let sleep = l.tick(&d).await;
            tokio::select! {
                _ = d.shutdown().cancelled() => break,
                _ = woken(&d, source) => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        debug!(name = l.name(), "loop stopped");
    })
}

async fn woken(d: &Daemon, source: WakeSource) {
    match source {
        WakeSource::Timer => std::future::pending().await,
        WakeSource::Scheduler => d.scheduler_woken().await,
        WakeSource::Instances => d.instances_woken().await,
        WakeSource::Fleets => d.fleets_woken().await,
        WakeSource::Demand => d.services().demand_woken().await,
    }
}

/// Starts every loop, and reattaches to the jobs that were on hosts when the daemon last stopped.
pub fn spawn_all(d: &Daemon) -> Vec<tokio::task::JoinHandle<()>> {
    for run in d.store().active_runs() {
        for job in &run.jobs {
            let s = job.current.status;
            if s.is_on_host() || s == JobStatus::Provisioning {
                runners::spawn(d, run.id, job.replica_num, job.job_num, job.current.id);
            }
        }
    }
    vec![
        spawn(d, scheduling::Scheduling::default()),
        spawn(d, timers::Timers),
        spawn(d, instances::InstancesLoop::default()),
        spawn(d, metrics::GpuSampler),
        spawn(d, fleet_upkeep::FleetUpkeep::default()),
        spawn(d, store_watch::StoreWatch),
        spawn(d, job_retention::JobRetention),
        spawn(d, cloud::CloudLoop::default()),
        spawn(d, replicas::Replicas::new()),
    ]
}
