//! Cloud backends: machines bought from a provider's API. One [`CloudBackend`] holds what they
//! share (the configuration in dstack's shape, the catalog's offers for the provider filtered
//! by its regions and live availability, the daemon's SSH key, machine names with flotilla's
//! prefix); a [`Provider`] speaks one API: `lambda` (VMs, offline catalog, live capacity per
//! region), `runpod` (containers, offline catalog, GraphQL), `vastai` (a container
//! marketplace whose offers are searched online). `http` is their one HTTP client.

pub mod http;
pub mod key;
pub mod lambda;
pub mod runpod;
pub mod setup;
pub mod vastai;

use super::{Backend, BackendError, Boot, BoxFuture, CloudSettings, Created, Machine, NAME_PREFIX};
use crate::catalog::matching::resources_match;
use crate::catalog::{CatalogService, Requirements};
use crate::sync::{LockExt, RwLockExt};
use flotilla_protocol::config::ResourcesSpec;
use flotilla_protocol::model::{Availability, Instance, InstanceResources, Offer};
use key::CloudKey;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

/// An API key: printed as `ApiKey(..)`, never in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// `creds:` of a cloud backend, as dstack writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Creds {
    /// `api_key` is in clear in a fresh config.yml, `sealed:v1:...` once the daemon sealed it.
    ApiKey { api_key: String },
}

/// One cloud backend in `config.yml`: `type: lambda | runpod | vastai`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Defaults to the type.
    #[serde(default)]
    pub name: Option<String>,
    pub creds: Creds,
    /// Only these regions (the catalog's `location`); all when absent.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// The API's base URL: a mirror or a test server.
    #[serde(default)]
    pub api_url: Option<String>,
    /// How long a machine may take to come up (seconds or `10m`); default 10 minutes.
    #[serde(default)]
    pub provisioning_timeout: Option<serde_json::Value>,
    /// Terminate machines named `flotilla-...` that the daemon does not know, at start.
    #[serde(default)]
    pub terminate_orphans: bool,
    /// The image that container backends (RunPod, Vast.ai) run as the instance.
    #[serde(default)]
    pub image: Option<String>,
}

/// The default provisioning timeout (dstack's 10 minutes).
pub const DEFAULT_PROVISIONING_TIMEOUT_SECS: u64 = 600;
/// The image container backends run unless `image` says otherwise (dstack's base image).
pub const DEFAULT_IMAGE: &str = "dstackai/base:py3.12-0.7-cuda-12.1";

/// What a provider knows now beyond the offline catalog.
#[derive(Debug, Clone, Default)]
pub enum Live {
    /// Nothing fetched yet (or the provider has no live view): the catalog as it is.
    #[default]
    Unknown,
    /// (instance type, region) pairs with capacity (Lambda's `regions_with_capacity_available`).
    Capacity(HashSet<(String, String)>),
    /// The offers themselves, searched online (Vast.ai), with their machines.
    Offers(Vec<(Offer, InstanceResources)>),
}

/// What a provider's machine looks like after a launch.
pub struct Launch<'a> {
    pub offer: &'a Offer,
    pub name: &'a str,
    pub key: &'a CloudKey,
    pub image: &'a str,
}

/// One provider's API.
pub trait Provider: Send + Sync {
    /// The type in `config.yml`.
    fn kind(&self) -> &'static str;
    /// The catalog file of its offline offers (None: online offers only).
    fn catalog(&self) -> Option<&'static str>;
    /// The catalog file whose rows this backend's offers replace in `offer` (its own catalog;
    /// for an online provider, the snapshot of its marketplace).
    fn replaces_catalog(&self) -> Option<&'static str> {
        self.catalog()
    }
    /// Whether the credentials work.
    fn check(&self) -> BoxFuture<'_, Result<(), BackendError>>;
    /// The live view (availability or online offers).
    fn live(&self) -> BoxFuture<'_, Result<Live, BackendError>>;
    /// Launches a machine; its id at the provider.
    fn launch<'a>(&'a self, l: Launch<'a>) -> BoxFuture<'a, Result<String, BackendError>>;
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Boot, BackendError>>;
    /// Ok once the provider confirms (or the machine is gone already).
    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Every machine of the account.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Machine>, BackendError>>;
}

pub struct CloudBackend {
    name: String,
    provider: Box<dyn Provider>,
    catalog: CatalogService,
    regions: Vec<String>,
    key: CloudKey,
    image: String,
    settings: CloudSettings,
    live: RwLock<Live>,
    /// Offers that failed for want of capacity lately: skipped until the next refresh.
    exhausted: Mutex<HashSet<(String, String)>>,
}

impl CloudBackend {
    pub fn new(
        name: String,
        provider: Box<dyn Provider>,
        cfg: &CloudConfig,
        catalog: CatalogService,
        key: CloudKey,
        settings: CloudSettings,
    ) -> CloudBackend {
        CloudBackend {
            name,
            provider,
            catalog,
            regions: cfg.regions.clone().unwrap_or_default(),
            key,
            image: cfg
                .image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
            settings,
            live: RwLock::new(Live::Unknown),
            exhausted: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `region` is one of `regions:`: the whole name, or one part of a marketplace's
    /// `Quebec, CA, NA` (so `CA` or `NA` select it).
    fn in_regions(&self, region: &str) -> bool {
        self.regions.is_empty()
            || self.regions.iter().any(|r| {
                r.eq_ignore_ascii_case(region)
                    || region
                        .split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(r))
            })
    }

    /// Every offer for `req`, with its availability now, cheapest first.
    fn offers_with_availability(&self, req: Option<&ResourcesSpec>) -> Vec<Offer> {
        let live = self.live.read_locked().clone();
        let exhausted = self.exhausted.locked().clone();
        let mut out: Vec<Offer> = match (&live, self.provider.catalog()) {
            (Live::Offers(list), _) => list
                .iter()
                .filter(|(o, res)| {
                    self.in_regions(&o.region) && req.is_none_or(|r| resources_match(r, res))
                })
                .map(|(o, _)| o.clone())
                .collect(),
            (_, Some(catalog)) => {
                let q = Requirements {
                    resources: req.cloned().unwrap_or_else(any_machine),
                    backends: vec![catalog.to_string()],
                    regions: self.regions.clone(),
                    ..Requirements::default()
                };
                self.catalog.query(&q).0
            }
            (_, None) => Vec::new(),
        };
        for o in out.iter_mut() {
            o.backend = self.name.clone();
            let key = (o.instance_type.clone(), o.region.clone());
            o.availability = if exhausted.contains(&key) {
                Availability::NotAvailable
            } else {
                match &live {
                    Live::Capacity(set) if !set.contains(&key) => Availability::NotAvailable,
                    _ => Availability::Available,
                }
            };
        }
        crate::catalog::sort_offers(&mut out);
        out
    }
}

/// Requirements that any machine meets (every offer of a backend).
fn any_machine() -> ResourcesSpec {
    use flotilla_protocol::config::{CpuSpec, DiskSpec, Range};
    ResourcesSpec {
        cpu: CpuSpec {
            arch: None,
            count: Range::new(None, None),
        },
        memory: Range::new(None, None),
        disk: DiskSpec {
            size: Range::new(None, None),
        },
        ..ResourcesSpec::default()
    }
}

impl Backend for CloudBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn offers(&self, req: &ResourcesSpec) -> Vec<Offer> {
        self.offers_with_availability(Some(req))
            .into_iter()
            .filter(|o| o.availability.is_available())
            .collect()
    }

    fn all_offers(&self, req: &ResourcesSpec) -> Vec<Offer> {
        self.offers_with_availability(Some(req))
    }

    fn available_offers(&self) -> Vec<Offer> {
        self.offers_with_availability(None)
            .into_iter()
            .filter(|o| o.availability.is_available())
            .collect()
    }

    fn create<'a>(
        &'a self,
        offer: &'a Offer,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Created, BackendError>> {
        Box::pin(async move {
            let launched = self
                .provider
                .launch(Launch {
                    offer,
                    name,
                    key: &self.key,
                    image: &self.image,
                })
                .await;
            let id = match launched {
                Ok(id) => id,
                Err(e) => {
                    if let BackendError::Unavailable { .. } = e {
                        self.exhausted
                            .locked()
                            .insert((offer.instance_type.clone(), offer.region.clone()));
                    }
                    return Err(e);
                }
            };
            Ok(Created {
                backend_id: id,
                endpoint: None,
                instance_type: offer.instance_type.clone(),
                region: offer.region.clone(),
                price: offer.price,
            })
        })
    }

    fn terminate<'a>(&'a self, backend_id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.provider.terminate(backend_id)
    }

    fn reconcile(&self, _instances: &[Instance]) {}

    fn kind(&self) -> &str {
        self.provider.kind()
    }

    fn cloud(&self) -> Option<&CloudSettings> {
        Some(&self.settings)
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        self.provider.check()
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let live = self.provider.live().await?;
            *self.live.write_locked() = live;
            self.exhausted.locked().clear();
            Ok(())
        })
    }

    fn boot_status<'a>(&'a self, backend_id: &'a str) -> BoxFuture<'a, Result<Boot, BackendError>> {
        Box::pin(async move {
            Ok(match self.provider.status(backend_id).await? {
                Boot::Ready(mut ep) => {
                    ep.identity_file = Some(self.key.path.display().to_string());
                    Boot::Ready(ep)
                }
                other => other,
            })
        })
    }

    fn machines(&self) -> BoxFuture<'_, Result<Vec<Machine>, BackendError>> {
        Box::pin(async move {
            Ok(self
                .provider
                .list()
                .await?
                .into_iter()
                .filter(|m| m.name.starts_with(NAME_PREFIX))
                .collect())
        })
    }

    fn catalog_name(&self) -> Option<&str> {
        self.provider.replaces_catalog()
    }
}

/// The error of a failed call in the provider's words, sorted into what the daemon does next.
pub fn classify(backend: &str, e: http::ApiError, message: String) -> BackendError {
    let backend = backend.to_string();
    if e.is_auth() {
        BackendError::Auth { backend, message }
    } else {
        BackendError::Failed { backend, message }
    }
}
