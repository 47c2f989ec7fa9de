//! The `slurm` backend: Slurm clusters driven through their login node over SSH. Its offers are
//! the clusters' node shapes, read with one `sinfo` call per cluster and refresh (in the
//! background, and again when asked for offers older than [`STALE`]). An instance it creates is
//! a slot on a cluster reached at the login node: the job placed there becomes one Slurm batch
//! job, and Slurm, not flotilla, decides which node runs it.

pub mod config;
pub mod offers;
pub mod sbatch;

use super::{Backend, BackendError, BoxFuture, Created};
use crate::catalog::matching::resources_match;
use crate::hosts::ssh::SshHost;
use crate::hosts::SLURM_SCRIPT;
use crate::sync::LockExt;
use config::{ClusterConfig, SlurmConfig, DEFAULT_REFRESH_SECS};
use flotilla_protocol::config::ResourcesSpec;
use flotilla_protocol::model::{Instance, InstanceResources, Offer};
use offers::{ClusterView, Shape};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, warn};

/// The backend's name, as fleets and runs write it (`backends: [slurm]`).
pub const NAME: &str = "slurm";
/// Offers older than this are read again when asked for.
pub const STALE: Duration = Duration::from_secs(10);
/// A login node that does not answer within this long is reported unreachable.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// What the last refresh of one cluster learned.
#[derive(Default)]
struct Snapshot {
    at: Option<Instant>,
    view: Option<ClusterView>,
    shapes: Vec<Shape>,
    /// Why the cluster offers nothing (or less than configured) now.
    problem: Option<String>,
}

struct Cluster {
    config: ClusterConfig,
    login: SshHost,
    snapshot: Mutex<Snapshot>,
}

/// Counters of the refreshes, for the benchmark and the logs.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct RefreshStats {
    pub refreshes: u64,
    /// Commands run on login nodes by refreshes (each runs `sinfo` once).
    pub remote_calls: u64,
}

pub struct SlurmBackend {
    clusters: Vec<Cluster>,
    refresh_every: Duration,
    wake: Notify,
    refreshing: tokio::sync::Mutex<()>,
    /// The shape of each slot created since the start (by backend id).
    created: Mutex<HashMap<String, InstanceResources>>,
    next_slot: AtomicU64,
    refreshes: AtomicU64,
    remote_calls: AtomicU64,
}

/// What the runner needs to submit a job of an instance of this backend.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlacement {
    pub cluster: String,
    pub partitions: Vec<String>,
    pub pyxis: bool,
}

impl SlurmBackend {
    pub fn new(config: SlurmConfig) -> SlurmBackend {
        let refresh_every =
            Duration::from_secs(config.refresh_secs.unwrap_or(DEFAULT_REFRESH_SECS));
        let first_slot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        SlurmBackend {
            clusters: config
                .clusters
                .into_iter()
                .map(|c| Cluster {
                    login: SshHost::new(c.endpoint(), None, None),
                    config: c,
                    snapshot: Mutex::new(Snapshot::default()),
                })
                .collect(),
            refresh_every,
            wake: Notify::new(),
            refreshing: tokio::sync::Mutex::new(()),
            created: Mutex::new(HashMap::new()),
            next_slot: AtomicU64::new(first_slot),
            refreshes: AtomicU64::new(0),
            remote_calls: AtomicU64::new(0),
        }
    }

    /// Refreshes every `refresh_secs`, and at once when offers were asked for on an old
    /// snapshot, until `shutdown`.
    pub fn spawn_refresh(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.refresh().await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(me.refresh_every) => {}
                    _ = me.wake.notified() => {}
                }
            }
        });
    }

    pub fn stats(&self) -> RefreshStats {
        RefreshStats {
            refreshes: self.refreshes.load(Ordering::Relaxed),
            remote_calls: self.remote_calls.load(Ordering::Relaxed),
        }
    }

    /// Reads every cluster's nodes again: one command on each login node, running `sinfo` once.
    pub async fn refresh(&self) {
        let _one_at_a_time = self.refreshing.lock().await;
        for c in &self.clusters {
            self.remote_calls.fetch_add(1, Ordering::Relaxed);
            let read = tokio::time::timeout(REFRESH_TIMEOUT, read_cluster(&c.login)).await;
            let read = read.unwrap_or_else(|_| {
                Err(format!(
                    "the login node {} did not answer within {}s",
                    c.login.label(),
                    REFRESH_TIMEOUT.as_secs()
                ))
            });
            let mut snap = c.snapshot.locked();
            snap.at = Some(Instant::now());
            match read {
                Ok(view) => {
                    let shapes = offers::shapes(&c.config, &view);
                    let unknown = c.config.unknown_partitions(&view.partitions());
                    let problem = (!unknown.is_empty()).then(|| {
                        format!(
                            "slurm cluster {}: no partition {} (its partitions: {})",
                            c.config.name,
                            unknown.join(", "),
                            view.partitions().join(", ")
                        )
                    });
                    if let Some(p) = &problem {
                        if snap.problem.as_ref() != Some(p) {
                            warn!("{p}; fix gpu_partitions/cpu_partitions in config.yml");
                        }
                    }
                    if snap.view.is_none() || snap.problem.is_some() && problem.is_none() {
                        info!(cluster = %c.config.name, shapes = shapes.len(), "slurm cluster read");
                    }
                    snap.problem = problem;
                    snap.shapes = shapes;
                    snap.view = Some(view);
                }
                Err(e) => {
                    let p = format!("slurm cluster {}: {e}", c.config.name);
                    if snap.problem.as_ref() != Some(&p) {
                        warn!("{p}");
                    }
                    snap.problem = Some(p);
                    snap.shapes.clear();
                    snap.view = None;
                }
            }
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    fn poke_if_stale(&self) {
        let stale = self.clusters.iter().any(|c| {
            c.snapshot
                .locked()
                .at
                .is_none_or(|at| at.elapsed() >= STALE)
        });
        if stale {
            self.wake.notify_one();
        }
    }

    fn all_offers(&self) -> Vec<Offer> {
        self.clusters
            .iter()
            .flat_map(|c| {
                let snap = c.snapshot.locked();
                snap.shapes
                    .iter()
                    .map(|s| offers::offer(NAME, &c.config.name, s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.config.name == name)
    }

    /// The shape of `instance_type` on `cluster` in the last snapshot.
    fn shape(&self, cluster: &str, instance_type: &str) -> Option<Shape> {
        let c = self.cluster(cluster)?;
        let snap = c.snapshot.locked();
        snap.shapes
            .iter()
            .find(|s| s.instance_type() == instance_type)
            .cloned()
    }

    /// [`SlurmBackend::placement`], reading the cluster first when it was not read yet (a
    /// job submitted right after the daemon's start).
    pub async fn placement_now(
        &self,
        instance: &Instance,
        gpu_job: bool,
    ) -> Result<JobPlacement, String> {
        let unread = self
            .cluster(&instance.region)
            .is_some_and(|c| c.snapshot.locked().view.is_none());
        if unread {
            self.refresh().await;
        }
        self.placement(instance, gpu_job)
    }

    /// Where a job of `instance` goes: the partitions that match it (the GPU partitions of
    /// the instance's GPU for a GPU job, the CPU partitions otherwise) and whether the cluster
    /// runs containers (Pyxis).
    pub fn placement(&self, instance: &Instance, gpu_job: bool) -> Result<JobPlacement, String> {
        let c = self.cluster(&instance.region).ok_or_else(|| {
            format!(
                "instance {} is on slurm cluster {:?}, which config.yml no longer lists",
                instance.name, instance.region
            )
        })?;
        let own = instance
            .backend_id
            .as_deref()
            .and_then(|id| id.split('/').nth(1))
            .unwrap_or_default()
            .to_string();
        let snap = c.snapshot.locked();
        let view = snap.view.as_ref().ok_or_else(|| {
            snap.problem
                .clone()
                .unwrap_or_else(|| format!("slurm cluster {} was not read yet", c.config.name))
        })?;
        let known = view.partitions();
        let mut partitions: Vec<String> = if gpu_job {
            c.config
                .gpu_partitions
                .iter()
                .find(|g| g.partitions.contains(&own))
                .map(|g| g.partitions.clone())
                .unwrap_or_default()
        } else {
            known
                .iter()
                .filter(|p| c.config.takes_cpu_jobs(p))
                .cloned()
                .collect()
        };
        partitions.retain(|p| known.contains(p));
        if partitions.is_empty() {
            partitions.push(own);
        }
        Ok(JobPlacement {
            cluster: c.config.name.clone(),
            partitions,
            pyxis: view.pyxis,
        })
    }
}

/// Runs the `cluster` verb (sinfo once, then whether srun knows `--container-image`) with the
/// script on stdin, so that reading offers installs nothing on the login node.
async fn read_cluster(login: &SshHost) -> Result<ClusterView, String> {
    let exec = login
        .exec_raw("sh -s cluster", Some(SLURM_SCRIPT.as_bytes()))
        .await
        .map_err(|e| e.to_string())?;
    let (out, err, code) = exec.collect().await;
    if code != Some(0) {
        let err = String::from_utf8_lossy(&err).trim().to_string();
        return Err(if code.is_none() {
            format!("the connection to {} closed: {err}", login.label())
        } else {
            err
        });
    }
    offers::parse_cluster(&String::from_utf8_lossy(&out))
}

impl Backend for SlurmBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn offers(&self, req: &ResourcesSpec) -> Vec<Offer> {
        self.poke_if_stale();
        let mut out = Vec::new();
        for c in &self.clusters {
            let snap = c.snapshot.locked();
            out.extend(
                snap.shapes
                    .iter()
                    .filter(|s| resources_match(req, &s.resources))
                    .map(|s| offers::offer(NAME, &c.config.name, s)),
            );
        }
        out
    }

    fn available_offers(&self) -> Vec<Offer> {
        self.poke_if_stale();
        self.all_offers()
    }

    fn create<'a>(
        &'a self,
        offer: &'a Offer,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Created, BackendError>> {
        Box::pin(async move {
            let failed = |message: String| BackendError::Failed {
                backend: NAME.into(),
                message,
            };
            let c = self
                .cluster(&offer.region)
                .ok_or_else(|| failed(format!("no cluster named {:?}", offer.region)))?;
            if c.snapshot
                .locked()
                .at
                .is_none_or(|at| at.elapsed() >= STALE)
            {
                self.refresh().await;
            }
            let unreadable = {
                let snap = c.snapshot.locked();
                snap.problem.clone().filter(|_| snap.view.is_none())
            };
            if let Some(p) = unreadable {
                return Err(failed(p));
            }
            let shape = self
                .shape(&offer.region, &offer.instance_type)
                .ok_or_else(|| BackendError::NoCapacity {
                    backend: NAME.into(),
                    instance_type: format!("{} on {}", offer.instance_type, offer.region),
                })?;
            let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
            let backend_id = format!("{}/{}/{slot}", c.config.name, shape.instance_type());
            self.created
                .locked()
                .insert(backend_id.clone(), shape.resources.clone());
            Ok(Created {
                backend_id,
                endpoint: Some(c.config.endpoint()),
                instance_type: shape.instance_type(),
                region: c.config.name.clone(),
                price: 0.0,
            })
        })
    }

    fn terminate<'a>(&'a self, backend_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            // A slot holds nothing on the cluster: its jobs were Slurm jobs, already ended.
            self.created.locked().remove(backend_id);
            Ok(())
        })
    }

    fn reconcile(&self, instances: &[Instance]) {
        let mut created = self.created.locked();
        for i in instances.iter().filter(|i| i.backend == NAME) {
            if let Some(id) = &i.backend_id {
                if i.resources.cpus > 0 {
                    created.insert(id.clone(), i.resources.clone());
                }
            }
        }
    }

    fn instance_resources(&self, instance: &Instance) -> Option<InstanceResources> {
        let id = instance.backend_id.as_deref()?;
        if let Some(r) = self.created.locked().get(id) {
            return Some(r.clone());
        }
        // Created before a restart, not provisioned yet: the shape its id names.
        let (cluster, rest) = id.split_once('/')?;
        let (instance_type, _slot) = rest.rsplit_once('/')?;
        self.shape(cluster, instance_type).map(|s| s.resources)
    }

    fn unavailable_reason(&self) -> Option<String> {
        let problems: Vec<String> = self
            .clusters
            .iter()
            .filter_map(|c| c.snapshot.locked().problem.clone())
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    fn slurm(&self) -> Option<&SlurmBackend> {
        Some(self)
    }
}
