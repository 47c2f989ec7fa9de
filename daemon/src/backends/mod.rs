//! Bottom layer. Where instances come from: a backend creates machines for offers and terminates them; the
//! daemon then reaches what it created over SSH, like any host. Cloud providers implement the
//! same trait; `pool` hands out pre-started machines.

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
    #[error("{backend}: {message}")]
    Failed { backend: String, message: String },
}

/// A machine a backend made: how to reach it and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub backend_id: String,
    pub endpoint: SshEndpoint,
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
    fn create<'a>(&'a self, offer: &'a Offer) -> BoxFuture<'a, Result<Created, BackendError>>;
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
}

/// The configured backends, by name.
#[derive(Clone, Default)]
pub struct Backends {
    list: Vec<Arc<dyn Backend>>,
}

impl Backends {
    pub fn new(list: Vec<Arc<dyn Backend>>) -> Backends {
        Backends { list }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.list.iter().find(|b| b.name() == name).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
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

    /// Offers for `req` of the backends named in `only` (all when `None`), cheapest first.
    pub fn offers(&self, req: &ResourcesSpec, only: Option<&[String]>) -> Vec<Offer> {
        let mut out: Vec<Offer> = self
            .list
            .iter()
            .filter(|b| only.is_none_or(|names| names.iter().any(|n| n == b.name())))
            .flat_map(|b| b.offers(req))
            .collect();
        crate::catalog::sort_offers(&mut out);
        out
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
