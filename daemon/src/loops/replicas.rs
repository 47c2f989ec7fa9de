//! Driver layer: the replicas loop. Each second, and at once when the proxy holds a request
//! with no ready replica, for every active service:
//!
//! - readiness: its `probes` run when due (in tasks of their own, so a slow probe holds up
//!   nothing) and a replica is ready once each has passed `ready_after` times in a row; without
//!   probes a replica is ready while its `port` accepts connections;
//! - the live table (`crate::services`) gets the serving replicas and their readiness (a replica
//!   being drained is not ready: it takes no new request);
//! - the replica rules ([`crate::replica_rules::plan`]) decide the desired counts (autoscaling
//!   from the proxy's request counts), replacements, scale-downs and rolling updates, and
//!   `ops::services::apply_plan` records them (the scheduler places the new submissions).

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use crate::ops::services::{apply_plan, is_serving, port_accepts, probe, service_of, targets};
use crate::replica_rules::probes::{after_run, is_due, is_ready, service_probes, ProbeState};
use crate::replica_rules::scaling::Traffic;
use crate::replica_rules::{plan, Live};
use crate::sync::LockExt;
use flotilla_protocol::config::ProbeSpec;
use flotilla_protocol::model::{Job, Run};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often readiness and scaling are looked at again.
const INTERVAL: Duration = Duration::from_secs(1);

/// One probe of one replica: its state, and whether a run of it is in flight.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    state: ProbeState,
    running: bool,
}

pub struct Replicas {
    /// The services in the table after the last tick.
    known: HashSet<u64>,
    /// Probe states by submission, one per probe of the service.
    probes: Arc<Mutex<HashMap<u64, Vec<Slot>>>>,
}

impl Replicas {
    pub fn new() -> Self {
        Replicas {
            known: HashSet::new(),
            probes: Arc::default(),
        }
    }

    /// Readiness of the serving replicas of `run`, by submission. A replica of an earlier
    /// deployment keeps the readiness it had (its port and probes may differ from the run's
    /// configuration now) until a rolling update stops it.
    async fn readiness(&self, d: &Daemon, run: &Run, port: u16) -> HashMap<u64, bool> {
        let specs = service_of(run).map(service_probes).unwrap_or_default();
        let (current, old): (Vec<&Job>, Vec<&Job>) = run
            .jobs
            .iter()
            .filter(|j| is_serving(j))
            .partition(|j| j.deployment_num >= run.deployment_num);
        let mut out: HashMap<u64, bool> = old
            .iter()
            .map(|j| (j.current.id, j.current.ready.unwrap_or(false)))
            .collect();
        out.extend(self.check(d, &current, port, &specs).await);
        out
    }

    /// Readiness of these replicas now: by their probes, or by their port without probes.
    async fn check(
        &self,
        d: &Daemon,
        serving: &[&Job],
        port: u16,
        specs: &[ProbeSpec],
    ) -> HashMap<u64, bool> {
        let serving = serving.iter();
        if specs.is_empty() {
            let checks = serving
                .map(|j| async move { (j.current.id, port_accepts(d, &j.current, port).await) });
            return futures_util::future::join_all(checks)
                .await
                .into_iter()
                .collect();
        }
        let now = Timestamp::now();
        let mut out = HashMap::new();
        let mut table = self.probes.locked();
        for job in serving {
            let sub = job.current.id;
            let slots = table.entry(sub).or_default();
            slots.resize(specs.len(), Slot::default());
            for (i, spec) in specs.iter().enumerate() {
                let slot = &mut slots[i];
                if slot.running || !is_due(spec, &slot.state, now) {
                    continue;
                }
                slot.running = true;
                let (d, spec, submission) = (d.clone(), spec.clone(), job.current.clone());
                let probes = self.probes.clone();
                tokio::spawn(async move {
                    let ok = probe(&d, &submission, port, &spec).await;
                    let mut table = probes.locked();
                    if let Some(slot) = table.get_mut(&submission.id).and_then(|s| s.get_mut(i)) {
                        slot.state = after_run(&spec, slot.state, ok, Timestamp::now());
                        slot.running = false;
                    }
                });
            }
            let states: Vec<ProbeState> = slots.iter().map(|s| s.state).collect();
            out.insert(sub, is_ready(specs, &states));
        }
        out
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
        WakeSource::Demand
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        let services: Vec<_> = d
            .store()
            .active_runs()
            .into_iter()
            .filter(|r| !r.status.is_finished() && service_of(r).is_some())
            .collect();
        let live: HashSet<u64> = services.iter().map(|r| r.id).collect();
        for gone in self.known.difference(&live) {
            d.services().remove(*gone);
        }
        let mut serving_subs = HashSet::new();
        let scale = d.config().retry_delay_scale;
        for run in &services {
            let Some(service) = service_of(run) else {
                continue;
            };
            serving_subs.extend(
                run.jobs
                    .iter()
                    .filter(|j| is_serving(j))
                    .map(|j| j.current.id),
            );
            let mut ready = match service.port.as_ref() {
                Some(port) => self.readiness(d, run, port.container).await,
                // Nothing to check without a port: a running replica is ready.
                None => run
                    .jobs
                    .iter()
                    .filter(|j| is_serving(j))
                    .map(|j| (j.current.id, true))
                    .collect(),
            };
            let in_flight = d.services().in_flight(run.id);
            let state: HashMap<u64, Live> = ready
                .iter()
                .map(|(sub, ready)| {
                    let in_flight = in_flight.get(sub).copied().unwrap_or(0);
                    (
                        *sub,
                        Live {
                            ready: *ready,
                            in_flight,
                        },
                    )
                })
                .collect();
            let waiting = d.services().demand(run.id, INTERVAL).waiting;
            let traffic = |window: u64| Traffic {
                rps: d.services().demand(run.id, Duration::from_secs(window)).rps,
                waiting,
            };
            let decided = plan(run, service, &state, traffic, Timestamp::now(), scale);
            // A replica being drained takes no new request.
            for sub in &decided.draining {
                ready.insert(*sub, false);
            }
            if run.termination_reason.is_some() {
                ready.clear();
            }
            d.services().set_replicas(run.id, targets(run, &ready));
            if run.termination_reason.is_none() {
                if let Err(e) = apply_plan(d, run, &decided, &ready).await {
                    tracing::warn!("service {}: cannot update its replicas: {e}", run.name);
                }
            }
        }
        self.probes
            .locked()
            .retain(|sub, _| serving_subs.contains(sub));
        self.known = live;
        INTERVAL
    }
}
