//! The `pool` backend: pre-started machines listed in the daemon's configuration, handed out one
//! per instance and taken back on termination (an on-prem pool, or test hosts).

use super::{Backend, BackendError, BoxFuture, Created};
use crate::catalog::matching::{exact_spec, resources_match};
use crate::sync::LockExt;
use flotilla_protocol::config::ResourcesSpec;
use flotilla_protocol::model::{Availability, Instance, InstanceResources, Offer, SshEndpoint};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Mutex;

/// One machine of the pool, as `config.yml` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolHost {
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub identity_file: Option<String>,
    pub instance_type: String,
    #[serde(default)]
    pub region: Option<String>,
    pub price: f64,
    pub resources: InstanceResources,
}

fn default_port() -> u16 {
    22
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub identity_file: Option<String>,
    pub hosts: Vec<PoolHost>,
}

pub struct PoolBackend {
    config: PoolConfig,
    taken: Mutex<HashSet<String>>,
}

impl PoolBackend {
    pub fn new(config: PoolConfig) -> PoolBackend {
        PoolBackend {
            config,
            taken: Mutex::new(HashSet::new()),
        }
    }

    fn id(h: &PoolHost) -> String {
        format!("{}:{}", h.hostname, h.port)
    }

    fn taken(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.taken.locked()
    }

    fn offer(&self, h: &PoolHost) -> Offer {
        Offer {
            backend: self.config.name.clone(),
            region: h.region.clone().unwrap_or_else(|| "pool".into()),
            instance_type: h.instance_type.clone(),
            resources: exact_spec(&h.resources),
            price: h.price,
            spot: false,
            availability: Availability::Available,
            fleet: None,
            instance: None,
            blocks: None,
            total_blocks: None,
        }
    }
}

impl Backend for PoolBackend {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn offers(&self, req: &ResourcesSpec) -> Vec<Offer> {
        let taken = self.taken();
        self.config
            .hosts
            .iter()
            .filter(|h| !taken.contains(&Self::id(h)) && resources_match(req, &h.resources))
            .map(|h| self.offer(h))
            .collect()
    }

    fn available_offers(&self) -> Vec<Offer> {
        let taken = self.taken();
        self.config
            .hosts
            .iter()
            .filter(|h| !taken.contains(&Self::id(h)))
            .map(|h| self.offer(h))
            .collect()
    }

    fn create<'a>(
        &'a self,
        offer: &'a Offer,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Created, BackendError>> {
        Box::pin(async move {
            let mut taken = self.taken();
            let host = self
                .config
                .hosts
                .iter()
                .find(|h| h.instance_type == offer.instance_type && !taken.contains(&Self::id(h)))
                .ok_or_else(|| BackendError::NoCapacity {
                    backend: self.config.name.clone(),
                    instance_type: offer.instance_type.clone(),
                })?;
            taken.insert(Self::id(host));
            let user = host
                .user
                .clone()
                .or_else(|| self.config.user.clone())
                .unwrap_or_else(|| "root".into());
            Ok(Created {
                backend_id: Self::id(host),
                endpoint: Some(SshEndpoint {
                    hostname: host.hostname.clone(),
                    port: host.port,
                    user,
                    identity_file: host
                        .identity_file
                        .clone()
                        .or_else(|| self.config.identity_file.clone()),
                    proxy_jump: None,
                    internal_ip: None,
                }),
                instance_type: host.instance_type.clone(),
                region: host.region.clone().unwrap_or_else(|| "pool".into()),
                price: host.price,
            })
        })
    }

    fn terminate<'a>(&'a self, backend_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.taken().remove(backend_id);
            Ok(())
        })
    }

    fn reconcile(&self, instances: &[Instance]) {
        let mut taken = self.taken();
        for i in instances.iter().filter(|i| i.backend == self.config.name) {
            if let Some(id) = &i.backend_id {
                taken.insert(id.clone());
            }
        }
    }
}
