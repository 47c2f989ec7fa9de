//! Driver layer: job retention. Once an hour, the finished job directories older than
//! `job_retention` are removed from every host (see `ops::runs_retention`), and the uploaded
//! archives that no run names and older than that from the data dir (`ops::uploads`).

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::ops::runs_retention::collect_old_job_dirs;
use crate::ops::uploads::collect_unused;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(3600);

pub struct JobRetention;

impl Loop for JobRetention {
    fn name(&self) -> &'static str {
        "job_retention"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Timer
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        collect_old_job_dirs(d).await;
        match collect_unused(d, d.config().job_retention_secs) {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} uploaded archives that no run names"),
            Err(e) => tracing::warn!("uploaded archives: {e}"),
        }
        INTERVAL
    }
}
