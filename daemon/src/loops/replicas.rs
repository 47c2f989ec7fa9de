//! Driver layer: the replicas loop. Keeps the live table of every service's replicas
//! (`crate::services`) in step with the store: the running jobs of each service, where their
//! `port` answers, and which accept connections (ready). The HTTP proxy reads that table.

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::ops::services::{check_replicas, service_port};
use std::collections::HashSet;
use std::time::Duration;

/// How often readiness is looked at again.
const INTERVAL: Duration = Duration::from_secs(1);

pub struct Replicas {
    /// The services in the table after the last tick.
    known: HashSet<u64>,
}

impl Replicas {
    pub fn new() -> Self {
        Replicas {
            known: HashSet::new(),
        }
    }
}

impl Default for Replicas {
    fn default() -> Self {
        Self::new()
    }
}

impl Loop for Replicas {
    fn name(&self) -> &'static str {
        "replicas"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Timer
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        let services: Vec<_> = d
            .store()
            .active_runs()
            .into_iter()
            .filter(|r| !r.status.is_finished() && service_port(r).is_some())
            .collect();
        let live: HashSet<u64> = services.iter().map(|r| r.id).collect();
        for gone in self.known.difference(&live) {
            d.services().remove(*gone);
        }
        for run in &services {
            let replicas = check_replicas(d, run).await;
            d.services().set_replicas(run.id, replicas);
        }
        self.known = live;
        INTERVAL
    }
}
