//! Bottom layer. Offers from gpuhunt-format catalogs: a local directory loaded once, or the live catalog
//! (downloaded, cached, refreshed in the background), behind one cheap-to-clone service.
//!
//! - `matching`: the requirement-matching rules (also used by the scheduler);
//! - `load` reads CSV files into the compact `table::Catalog`; `query` answers requirements;
//! - `offer_list`: order and group-by view of merged offer lists; `live`: the download side.

pub mod live;
pub mod load;
pub mod matching;
pub mod offer_list;
pub mod query;
pub mod table;

pub use live::{
    LiveConfig, ProviderRefresh, RefreshReport, DEFAULT_BASE_URL, DEFAULT_REFRESH_INTERVAL,
};
pub use matching::{exact_spec, resources_match, spot_allowed};
pub use offer_list::{group_offers, offer_order, parse_group_by, sort_offers, GroupKey};
pub use query::{requirements_from_query, Requirements, DEFAULT_MAX_OFFERS};
pub use table::{Catalog, CatalogStats, SourceStats};

use crate::sync::RwLockExt;
use flotilla_protocol::model::Offer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The environment variable naming a local catalog directory (`*.csv`, one per backend).
pub const CATALOG_DIR_ENV: &str = "FLOTILLA_CATALOG_DIR";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the catalog directory {dir}: {source}; set catalog_dir (or {CATALOG_DIR_ENV}) to a folder of gpuhunt CSV files")]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
enum Source {
    Empty,
    Dir(PathBuf),
    Live(Box<live::LiveCatalog>),
}

#[derive(Debug)]
struct Inner {
    /// The catalog in use; a refresh swaps the `Arc`, a query clones it and lets go.
    current: RwLock<Arc<Catalog>>,
    source: Source,
}

/// The daemon's catalog of backend offers. Clones share one catalog.
#[derive(Debug, Clone)]
pub struct CatalogService {
    inner: Arc<Inner>,
}

impl CatalogService {
    fn new(catalog: Catalog, source: Source) -> Self {
        CatalogService {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(catalog)),
                source,
            }),
        }
    }

    /// No catalog: no backend offers.
    pub fn empty() -> Self {
        Self::new(Catalog::empty(), Source::Empty)
    }

    /// Every `*.csv` of `dir`, loaded once (the file stem names the backend). Malformed rows
    /// and unreadable files become warnings; only an unreadable directory is an error.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, CatalogError> {
        let dir = dir.as_ref();
        let catalog = load::load_dir(dir).map_err(|source| CatalogError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        tracing::info!(
            "catalog: {} offers from {} ({} malformed rows skipped)",
            catalog.len(),
            dir.display(),
            catalog.stats().skipped
        );
        Ok(Self::new(catalog, Source::Dir(dir.to_path_buf())))
    }

    /// The live catalog of gpuhunt's offline providers, cached under `state_dir/catalog/`.
    /// Nothing is loaded or fetched until [`spawn_refresh`](Self::spawn_refresh) or
    /// [`refresh_once`](Self::refresh_once) runs.
    pub fn live(state_dir: impl Into<PathBuf>, base_url: &str, interval: Duration) -> Self {
        Self::live_with(LiveConfig::new(state_dir, base_url, interval))
    }

    pub fn live_with(config: LiveConfig) -> Self {
        Self::new(
            Catalog::empty(),
            Source::Live(Box::new(live::LiveCatalog::new(config))),
        )
    }

    /// The catalog in use now (a refresh swaps in a new one; this one stays valid).
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.inner.current.read_locked().clone()
    }

    /// The matching offers, cheapest first, at most `q.limit`, and the number of matches.
    pub fn query(&self, q: &Requirements) -> (Vec<Offer>, usize) {
        self.snapshot().query(q)
    }

    /// What the user should know: skipped rows, unreadable files, an offline live catalog.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.snapshot().warnings().to_vec();
        if let Source::Live(live) = &self.inner.source {
            warnings.extend(live.warnings());
        }
        warnings
    }

    pub fn stats(&self) -> CatalogStats {
        self.snapshot().stats()
    }

    /// Where the offers come from: `none`, the directory, or the live base URL.
    pub fn describe_source(&self) -> String {
        match &self.inner.source {
            Source::Empty => "none".to_string(),
            Source::Dir(dir) => dir.display().to_string(),
            Source::Live(live) => format!("live: {}", live.config.base_url),
        }
    }

    /// One refresh of the live catalog (versions, downloads, swap); a no-op for the other
    /// sources. Tests call it directly instead of waiting for the background task.
    pub async fn refresh_once(&self) -> RefreshReport {
        match &self.inner.source {
            Source::Live(live) => live.refresh_once(&self.inner.current).await,
            _ => RefreshReport::default(),
        }
    }

    /// For the live catalog: a task that loads the cache, then refreshes now and every
    /// interval until `shutdown`. For the other sources the task ends at once.
    pub fn spawn_refresh(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let Source::Live(live) = &service.inner.source else {
                return;
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = live.load_cache(&service.inner.current) => {}
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    report = live.refresh_once(&service.inner.current) => {
                        tracing::debug!("live catalog refreshed: {report:?}");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(live.config.interval) => {}
                }
            }
        })
    }
}

/// The catalog directory named by `FLOTILLA_CATALOG_DIR`, when set and not empty.
pub fn catalog_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(CATALOG_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
