//! Bottom layer. Where instances come from: a backend creates machines for offers and terminates them; the
//! daemon then reaches what it created over SSH, like any host. Cloud providers implement the
//! same trait; `pool` hands out pre-started machines, `cloud` holds the providers (Lambda,
//! RunPod, Vast.ai) behind one [`cloud::CloudBackend`].

pub mod cloud;
pub mod pool;
pub mod slurm;

use flotilla_protocol::config::ResourcesSpec;
use flotilla_protocol::model::{Instance, InstanceResources, Offer, SshEndpoint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend}: no capacity for {instance_type}")]
    NoCapacity {
        backend: String,
        instance_type: String,
    },
    /// The provider has no capacity or no quota for this offer now (try the next one).
    #[error("{backend}: {message}")]
    Unavailable { backend: String, message: String },
    /// The provider refused the credentials.
    #[error("{backend}: {message}; check the api_key in the daemon's config.yml")]
    Auth { backend: String, message: String },
    #[error("{backend}: {message}")]
    Failed { backend: String, message: String },
}

/// Where a machine that a backend created stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    /// Up, reachable at this endpoint.
    Ready(SshEndpoint),
    /// Still starting (the provider's status).
    Booting(String),
    /// Gone or failed for good (the provider's words).
    Gone(String),
}

/// A machine the provider lists for this account.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub status: String,
}

/// The settings of a cloud backend that the daemon's loops honour.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudSettings {
    /// Seconds a machine may take to come up before it is terminated.
    pub provisioning_timeout_secs: u64,
    /// Terminate machines with flotilla's name prefix that the store does not know.
    pub terminate_orphans: bool,
    pub api_url: String,
}

/// A machine a backend made: how to reach it and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub backend_id: String,
    /// None while a cloud machine boots: [`Backend::boot_status`] says when it is up.
    pub endpoint: Option<SshEndpoint>,
    pub instance_type: String,
    pub region: String,
    pub price: f64,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Backend: Send + Sync {
    fn name(&self) -> &str;
    /// What this backend can create now that satisfies `req` (availability `available`).
    fn offers(&self, req: &ResourcesSpec) -> Vec<Offer>;
    /// Everything this backend can create now (what a scheduling pass takes a snapshot of).
    fn available_offers(&self) -> Vec<Offer>;
    /// Creates a machine for `offer`, named `name` at the provider.
    fn create<'a>(
        &'a self,
        offer: &'a Offer,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Created, BackendError>>;
    /// Terminates a machine; Ok once the provider confirmed it (or it is gone already).
    fn terminate<'a>(&'a self, backend_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Marks machines as taken after a restart (from the instances in the store).
    fn reconcile(&self, instances: &[Instance]);
    /// What an instance of this backend offers jobs, when that is not what its host's
    /// inventory says (a Slurm slot: the shape of the cluster's nodes, not the login node).
    fn instance_resources(&self, _instance: &Instance) -> Option<InstanceResources> {
        None
    }
    /// Why this backend offers nothing (or less than configured) now, if it knows.
    fn unavailable_reason(&self) -> Option<String> {
        None
    }
    /// The Slurm backend, whose instances run jobs as Slurm batch jobs.
    fn slurm(&self) -> Option<&slurm::SlurmBackend> {
        None
    }

    /// The backend's type as `config.yml` names it.
    fn kind(&self) -> &str {
        "pool"
    }
    /// The settings of a cloud backend (None for the pool).
    fn cloud(&self) -> Option<&CloudSettings> {
        None
    }
    /// Whether the credentials work (the provider's own answer).
    fn check(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    /// Fetches the provider's live availability and online offers into memory.
    fn refresh(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    /// Where a created machine stands (cloud backends; a pool machine is ready at once).
    fn boot_status<'a>(
        &'a self,
        _backend_id: &'a str,
    ) -> BoxFuture<'a, Result<Boot, BackendError>> {
        Box::pin(async { Ok(Boot::Gone("not a cloud machine".into())) })
    }
    /// The machines of this account that carry flotilla's name prefix.
    fn machines(&self) -> BoxFuture<'_, Result<Vec<Machine>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// The catalog file (provider) whose rows this backend's own offers replace, if any.
    fn catalog_name(&self) -> Option<&str> {
        None
    }
    /// Every offer, available or not (what `offer` shows with its availability).
    fn all_offers(&self, req: &ResourcesSpec) -> Vec<Offer> {
        self.offers(req)
    }
}

/// The prefix of every machine flotilla names at a provider.
pub const NAME_PREFIX: &str = "flotilla-";

/// What the daemon last learned about a backend: its credentials and its orphans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendState {
    /// The last credential check: Ok, or the provider's words; None before the first.
    pub credentials: Option<Result<(), String>>,
    /// Machines with flotilla's prefix that the store did not know at start.
    pub orphans: Vec<Machine>,
}

/// The configured backends, by name.
#[derive(Clone, Default)]
pub struct Backends {
    list: Vec<Arc<dyn Backend>>,
    state: Arc<std::sync::Mutex<std::collections::HashMap<String, BackendState>>>,
}

impl Backends {
    pub fn new(list: Vec<Arc<dyn Backend>>) -> Backends {
        Backends {
            list,
            state: Default::default(),
        }
    }

    /// What the daemon last learned about backend `name`.
    pub fn state(&self, name: &str) -> BackendState {
        use crate::sync::LockExt;
        self.state.locked().get(name).cloned().unwrap_or_default()
    }

    /// Records what was learned about backend `name`.
    pub fn update_state(&self, name: &str, f: impl FnOnce(&mut BackendState)) {
        use crate::sync::LockExt;
        f(self.state.locked().entry(name.to_string()).or_default());
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.list.iter().find(|b| b.name() == name).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn list(&self) -> &[Arc<dyn Backend>] {
        &self.list
    }

    /// The catalogs whose rows configured cloud backends offer themselves (with their live
    /// availability): `offer` shows those offers once, from the backend.
    pub fn catalog_names(&self) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|b| b.catalog_name().map(str::to_string))
            .collect()
    }

    /// Fetches every cloud backend's live offers and availability, at most `timeout` each, all
    /// at once; the errors, by backend.
    pub async fn refresh(&self, timeout: std::time::Duration) -> Vec<String> {
        let mut tasks = tokio::task::JoinSet::new();
        for b in self.list.iter().filter(|b| b.cloud().is_some()) {
            let b = b.clone();
            tasks.spawn(async move {
                match tokio::time::timeout(timeout, b.refresh()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!(
                        "{}: no answer within {}s; offers use the last known availability",
                        b.name(),
                        timeout.as_secs()
                    )),
                }
            });
        }
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(e) => out.extend(e),
                Err(e) => out.push(format!("a backend's refresh ended abnormally: {e}")),
            }
        }
        out.sort();
        out
    }

    /// Every offer of the backends named in `only`, available or not, cheapest first.
    pub fn all_offers(&self, req: &ResourcesSpec, only: Option<&[String]>) -> Vec<Offer> {
        self.collect(only, |b| b.all_offers(req))
    }

    /// What `f` gives for each backend named in `only` (all when `None`), cheapest first.
    fn collect(
        &self,
        only: Option<&[String]>,
        f: impl Fn(&dyn Backend) -> Vec<Offer>,
    ) -> Vec<Offer> {
        let mut out: Vec<Offer> = self
            .list
            .iter()
            .filter(|b| only.is_none_or(|names| names.iter().any(|n| n == b.name())))
            .flat_map(|b| f(b.as_ref()))
            .collect();
        crate::catalog::sort_offers(&mut out);
        out
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|b| b.name().to_string()).collect()
    }

    /// Everything the backends can create now, cheapest first: one snapshot for a whole
    /// scheduling pass.
    pub fn available_offers(&self) -> Vec<Offer> {
        let mut out: Vec<Offer> = self
            .list
            .iter()
            .flat_map(|b| b.available_offers())
            .collect();
        crate::catalog::sort_offers(&mut out);
        out
    }

    /// Offers for `req` of the backends named in `only` (all when `None`) that can be created
    /// now, cheapest first.
    pub fn offers(&self, req: &ResourcesSpec, only: Option<&[String]>) -> Vec<Offer> {
        self.collect(only, |b| b.offers(req))
    }

    /// Why the backends named in `only` (all when `None`) offer nothing now, where they know.
    pub fn unavailable_reasons(&self, only: Option<&[String]>) -> Vec<String> {
        self.list
            .iter()
            .filter(|b| only.is_none_or(|names| names.iter().any(|n| n == b.name())))
            .filter_map(|b| b.unavailable_reason())
            .collect()
    }

    pub fn reconcile(&self, instances: &[Instance]) {
        for b in &self.list {
            b.reconcile(instances);
        }
    }
}
