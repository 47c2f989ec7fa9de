//! Bottom layer. The live table of every service's replicas, shared by the two sides of a
//! service: the replica side (the loop that starts, probes, scales and replaces replicas) writes
//! where each replica listens and whether it is ready; the proxy side (the HTTP server) picks a
//! ready replica for each request, counts the requests (the autoscaler's `rps`) and holds a
//! request while a service scaled to zero starts a replica.
//!
//! In memory only: after a restart the replica side fills it again from the store.

use crate::sync::LockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long request counts are kept (the longest autoscaling window a service may ask for).
const KEEP_COUNTS: Duration = Duration::from_secs(600);
/// Requests are counted per step of this length (memory stays bounded at any rate).
const COUNT_STEP: Duration = Duration::from_millis(100);

/// One replica as the proxy reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaTarget {
    /// The job submission serving as this replica.
    pub submission: u64,
    pub replica_num: u32,
    /// The instance the job runs on (`None`: the daemon's own machine).
    pub instance_id: Option<u64>,
    /// The port on the host's loopback where the service answers (a container's published
    /// port, or the service's `port` for a job on the host).
    pub host_port: u16,
    /// Whether it takes requests (probes passed, or its port accepts connections).
    pub ready: bool,
}

/// A replica picked for one request; the request counts as outstanding on it until this drops.
#[derive(Debug)]
pub struct Lease {
    pub target: ReplicaTarget,
    outstanding: Arc<AtomicU32>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the autoscaler sees of a service's traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Requests per second over the asked window.
    pub rps: f64,
    /// Requests held now, waiting for a ready replica.
    pub waiting: u32,
    /// Requests in flight on its replicas now.
    pub outstanding: u32,
}

#[derive(Default)]
struct Entry {
    replicas: Vec<(ReplicaTarget, Arc<AtomicU32>)>,
    /// How many requests arrived in each step of `COUNT_STEP` (its start), oldest first (pruned
    /// past `KEEP_COUNTS`).
    arrivals: VecDeque<(Instant, u64)>,
    waiting: u32,
    /// Where the next tie between replicas starts (ties go round in turn, as nginx's
    /// `least_conn` does, so that requests one after another spread over the replicas).
    turn: usize,
}

impl Entry {
    /// Leases the ready replica (not in `tried`) with the fewest requests in flight; among
    /// equals, the next in turn.
    fn lease(&mut self, tried: &[u64]) -> Option<Lease> {
        let eligible = |r: &ReplicaTarget| r.ready && !tried.contains(&r.submission);
        let least = self
            .replicas
            .iter()
            .filter(|(r, _)| eligible(r))
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .min()?;
        let n = self.replicas.len();
        let start = self.turn % n;
        let index = (0..n).map(|i| (start + i) % n).find(|&i| {
            let (r, c) = &self.replicas[i];
            eligible(r) && c.load(Ordering::Relaxed) == least
        })?;
        self.turn = index + 1;
        let (target, count) = &self.replicas[index];
        count.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            target: target.clone(),
            outstanding: count.clone(),
        })
    }
}

/// Where the HTTP server in front of services is (what `daemon status`, `ps` and the dashboard
/// say of it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Endpoint {
    /// Disabled (`--http off`), or not started yet.
    #[default]
    Off,
    /// Serving at this address.
    Up(std::net::SocketAddr),
    /// Configured at `listen` but not serving, and why.
    Down { listen: String, error: String },
}

#[derive(Default)]
struct Shared {
    runs: Mutex<HashMap<u64, Entry>>,
    endpoint: Mutex<Endpoint>,
    /// Told when a replica becomes ready (held requests look again).
    ready: Notify,
    /// Told when a request is held with no ready replica (the autoscaler looks at once).
    demand: Notify,
}

/// The replicas of every service, by run id.
#[derive(Clone, Default)]
pub struct Services(Arc<Shared>);

impl Services {
    // ---- the replica side ----

    /// Replaces the replicas of a run; in-flight counts carry over for submissions that stay.
    pub fn set_replicas(&self, run_id: u64, replicas: Vec<ReplicaTarget>) {
        let any_ready = replicas.iter().any(|r| r.ready);
        {
            let mut runs = self.0.runs.locked();
            let entry = runs.entry(run_id).or_default();
            let old = std::mem::take(&mut entry.replicas);
            entry.replicas = replicas
                .into_iter()
                .map(|r| {
                    let count = old
                        .iter()
                        .find(|(o, _)| o.submission == r.submission)
                        .map(|(_, c)| c.clone())
                        .unwrap_or_default();
                    (r, count)
                })
                .collect();
        }
        if any_ready {
            self.0.ready.notify_waiters();
        }
    }

    /// Marks one replica ready or not; false when the run has no such replica.
    pub fn set_ready(&self, run_id: u64, submission: u64, ready: bool) -> bool {
        let found = {
            let mut runs = self.0.runs.locked();
            let Some(entry) = runs.get_mut(&run_id) else {
                return false;
            };
            match entry
                .replicas
                .iter_mut()
                .find(|(r, _)| r.submission == submission)
            {
                Some((r, _)) => {
                    r.ready = ready;
                    true
                }
                None => false,
            }
        };
        if found && ready {
            self.0.ready.notify_waiters();
        }
        found
    }

    /// Forgets a run that ended.
    pub fn remove(&self, run_id: u64) {
        self.0.runs.locked().remove(&run_id);
    }

    /// The replicas of a run as last set.
    pub fn replicas(&self, run_id: u64) -> Vec<ReplicaTarget> {
        self.0
            .runs
            .locked()
            .get(&run_id)
            .map(|e| e.replicas.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// The traffic of a run over the last `window`.
    pub fn demand(&self, run_id: u64, window: Duration) -> Demand {
        let mut runs = self.0.runs.locked();
        let Some(entry) = runs.get_mut(&run_id) else {
            return Demand {
                rps: 0.0,
                waiting: 0,
                outstanding: 0,
            };
        };
        prune(&mut entry.arrivals);
        let since = Instant::now().checked_sub(window);
        let recent = entry
            .arrivals
            .iter()
            .filter(|(t, _)| since.is_none_or(|s| *t >= s))
            .map(|(_, n)| *n)
            .sum::<u64>();
        let secs = window.as_secs_f64().max(1.0);
        Demand {
            rps: recent as f64 / secs,
            waiting: entry.waiting,
            outstanding: entry
                .replicas
                .iter()
                .map(|(_, c)| c.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Requests in flight on each replica of a run now, by submission (a replica being drained
    /// is stopped once its count is 0).
    pub fn in_flight(&self, run_id: u64) -> HashMap<u64, u32> {
        self.0
            .runs
            .locked()
            .get(&run_id)
            .map(|e| {
                e.replicas
                    .iter()
                    .map(|(r, c)| (r.submission, c.load(Ordering::Relaxed)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resolves when a request was held with no ready replica (or at once if one is waiting).
    pub async fn demand_woken(&self) {
        self.0.demand.notified().await;
    }

    // ---- the proxy side ----

    /// Records where the HTTP server is (set by the server at start).
    pub fn set_endpoint(&self, endpoint: Endpoint) {
        *self.0.endpoint.locked() = endpoint;
    }

    /// Where the HTTP server is.
    pub fn endpoint(&self) -> Endpoint {
        self.0.endpoint.locked().clone()
    }

    /// Like [`Services::pick`], leaving out the replicas in `tried` (a retry after a replica
    /// failed); `None` when no other ready replica is left.
    pub fn pick_except(&self, run_id: u64, tried: &[u64]) -> Option<Lease> {
        self.0.runs.locked().get_mut(&run_id)?.lease(tried)
    }

    /// Counts one request that arrived for a run (whether or not a replica takes it).
    pub fn note_request(&self, run_id: u64) {
        let mut runs = self.0.runs.locked();
        let entry = runs.entry(run_id).or_default();
        let now = Instant::now();
        match entry.arrivals.back_mut() {
            Some((start, n)) if now.saturating_duration_since(*start) < COUNT_STEP => *n += 1,
            _ => {
                entry.arrivals.push_back((now, 1));
                prune(&mut entry.arrivals);
            }
        }
    }

    /// The ready replica with the fewest requests in flight (on a tie, the next in turn),
    /// leased for one request.
    pub fn pick(&self, run_id: u64) -> Option<Lease> {
        self.0.runs.locked().get_mut(&run_id)?.lease(&[])
    }

    /// Picks a ready replica, holding the request up to `timeout` while none is (the replica
    /// side is told, so a service scaled to zero starts one). `None` past the timeout.
    pub async fn pick_or_wait(&self, run_id: u64, timeout: Duration) -> Option<Lease> {
        if let Some(lease) = self.pick(run_id) {
            return Some(lease);
        }
        let _held = Held::new(self, run_id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = self.0.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(lease) = self.pick(run_id) {
                return Some(lease);
            }
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return self.pick(run_id);
            }
        }
    }
}

/// A request held for a run while it lasts.
struct Held<'a> {
    services: &'a Services,
    run_id: u64,
}

impl<'a> Held<'a> {
    fn new(services: &'a Services, run_id: u64) -> Self {
        services.0.runs.locked().entry(run_id).or_default().waiting += 1;
        services.0.demand.notify_one();
        Held { services, run_id }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.services.0.runs.locked().get_mut(&self.run_id) {
            e.waiting = e.waiting.saturating_sub(1);
        }
    }
}

fn prune(arrivals: &mut VecDeque<(Instant, u64)>) {
    let Some(cut) = Instant::now().checked_sub(KEEP_COUNTS) else {
        return;
    };
    while arrivals.front().is_some_and(|(t, _)| *t < cut) {
        arrivals.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(submission: u64, ready: bool) -> ReplicaTarget {
        ReplicaTarget {
            submission,
            replica_num: submission as u32,
            instance_id: None,
            host_port: 8000 + submission as u16,
            ready,
        }
    }

    #[test]
    fn picks_the_ready_replica_with_the_fewest_requests_in_flight() {
        let s = Services::default();
        s.set_replicas(
            1,
            vec![replica(1, true), replica(2, true), replica(3, false)],
        );
        let a = s.pick(1).expect("a ready replica");
        let b = s.pick(1).expect("a ready replica");
        assert_ne!(a.target.submission, b.target.submission);
        assert!(a.target.submission != 3 && b.target.submission != 3);
        drop(a);
        let c = s.pick(1).expect("a ready replica");
        assert_ne!(c.target.submission, b.target.submission);
        assert_eq!(s.demand(1, Duration::from_secs(60)).outstanding, 2);
    }

    #[test]
    fn in_flight_counts_survive_a_new_set_of_replicas() {
        let s = Services::default();
        s.set_replicas(1, vec![replica(1, true)]);
        let _a = s.pick(1).expect("ready");
        s.set_replicas(1, vec![replica(1, true), replica(2, true)]);
        assert_eq!(s.pick(1).expect("ready").target.submission, 2);
    }

    #[test]
    fn no_ready_replica_no_pick() {
        let s = Services::default();
        assert!(s.pick(7).is_none());
        s.set_replicas(7, vec![replica(1, false)]);
        assert!(s.pick(7).is_none());
        assert!(s.set_ready(7, 1, true));
        assert!(s.pick(7).is_some());
        assert!(!s.set_ready(7, 9, true));
    }

    #[test]
    fn requests_per_second_over_a_window() {
        let s = Services::default();
        for _ in 0..30 {
            s.note_request(3);
        }
        let d = s.demand(3, Duration::from_secs(10));
        assert!((d.rps - 3.0).abs() < 1e-9, "{d:?}");
        assert_eq!(s.demand(4, Duration::from_secs(10)).rps, 0.0);
    }

    #[test]
    fn counting_many_requests_keeps_little() {
        let s = Services::default();
        for _ in 0..100_000 {
            s.note_request(8);
        }
        assert!(s.0.runs.locked()[&8].arrivals.len() < 100);
        let d = s.demand(8, Duration::from_secs(10));
        assert!((d.rps - 10_000.0).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn requests_one_after_another_go_round_the_replicas() {
        let s = Services::default();
        s.set_replicas(
            3,
            vec![replica(1, true), replica(2, false), replica(3, true)],
        );
        let order: Vec<u64> = (0..4)
            .map(|_| s.pick(3).expect("ready").target.submission)
            .collect();
        assert_eq!(order, [1, 3, 1, 3]);
    }

    #[test]
    fn a_retry_leaves_out_the_replicas_tried() {
        let s = Services::default();
        s.set_replicas(2, vec![replica(1, true), replica(2, true)]);
        let a = s.pick_except(2, &[1]).expect("another replica");
        assert_eq!(a.target.submission, 2);
        assert!(s.pick_except(2, &[1, 2]).is_none());
    }

    #[tokio::test]
    async fn a_held_request_gets_the_replica_that_becomes_ready() {
        let s = Services::default();
        s.set_replicas(5, vec![replica(1, false)]);
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.pick_or_wait(5, Duration::from_secs(5)).await })
        };
        // The replica side hears of the held request, and makes a replica ready.
        tokio::time::timeout(Duration::from_secs(5), s.demand_woken())
            .await
            .expect("told of the held request");
        assert_eq!(s.demand(5, Duration::from_secs(1)).waiting, 1);
        s.set_ready(5, 1, true);
        let lease = waiter.await.expect("joined").expect("a replica");
        assert_eq!(lease.target.submission, 1);
        assert_eq!(s.demand(5, Duration::from_secs(1)).waiting, 0);
    }

    #[tokio::test]
    async fn a_held_request_gives_up_at_its_timeout() {
        let s = Services::default();
        let got = s.pick_or_wait(9, Duration::from_millis(50)).await;
        assert!(got.is_none());
        assert_eq!(s.demand(9, Duration::from_secs(1)).waiting, 0);
    }
}
