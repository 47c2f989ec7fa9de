//! The live catalog: gpuhunt's published per-provider catalogs, downloaded when their version
//! changes, cached under the state directory, and swapped into the running daemon.
//!
//! For each provider: GET `{base}/{provider}/version` (text `YYYYMMDD-N`); when it differs from
//! the cached one, GET `{base}/{provider}/{version}/catalog.zip`, take `{provider}.csv` out of
//! it and write `catalog/{provider}/{provider}.csv`, then `catalog/{provider}/version` (each via
//! a temporary file and a rename, so a crash leaves the old pair or a stale version that is
//! fetched again). Every request has a timeout. Unreachable = the cached catalog stays in use
//! (or the provider has no offers) and the status carries a warning; a corrupt download is
//! logged as an error and the previous catalog is kept.

use super::load::{check_header, load_files};
use super::table::Catalog;
use crate::sync::{LockExt, RwLockExt};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Where gpuhunt publishes its catalogs.
pub const DEFAULT_BASE_URL: &str = "https://dstack-gpu-pricing.s3.eu-west-1.amazonaws.com/v3";
/// How often the live catalog checks for new versions.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// The providers whose catalogs gpuhunt publishes as files (the others are queried live).
pub const OFFLINE_PROVIDERS: [&str; 9] = [
    "aws",
    "azure",
    "verda",
    "gcp",
    "lambdalabs",
    "nebius",
    "oci",
    "runpod",
    "cloudrift",
];

/// How the live catalog is fetched and kept.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// The daemon's state directory; the cache lives in its `catalog/` folder.
    pub state_dir: PathBuf,
    /// Without a trailing `/`: `https://.../v3`.
    pub base_url: String,
    pub interval: Duration,
    pub providers: Vec<String>,
    /// Limit for a `version` request (connecting included).
    pub version_timeout: Duration,
    /// Limit for a `catalog.zip` download.
    pub download_timeout: Duration,
    /// The largest zip, and the largest CSV inside it, accepted.
    pub max_bytes: u64,
}

impl LiveConfig {
    pub fn new(state_dir: impl Into<PathBuf>, base_url: &str, interval: Duration) -> Self {
        LiveConfig {
            state_dir: state_dir.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            interval,
            providers: OFFLINE_PROVIDERS.iter().map(|p| p.to_string()).collect(),
            version_timeout: Duration::from_secs(20),
            download_timeout: Duration::from_secs(300),
            max_bytes: 1 << 30,
        }
    }

    /// `catalog/{provider}` under the state directory.
    pub fn cache_dir(&self, provider: &str) -> PathBuf {
        self.state_dir.join("catalog").join(provider)
    }

    fn csv_path(&self, provider: &str) -> PathBuf {
        self.cache_dir(provider).join(format!("{provider}.csv"))
    }

    fn version_path(&self, provider: &str) -> PathBuf {
        self.cache_dir(provider).join("version")
    }
}

/// What one refresh did for one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRefresh {
    /// A new version was downloaded and cached.
    Updated { version: String },
    /// The published version is the cached one.
    Unchanged { version: String },
    /// The provider could not be refreshed; `cached` is the version still in use, if any.
    Failed {
        error: String,
        cached: Option<String>,
    },
}

/// What one refresh did: per provider, in the configured order, and whether the catalog in
/// use was rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefreshReport {
    pub providers: Vec<(String, ProviderRefresh)>,
    pub reloaded: bool,
}

impl RefreshReport {
    pub fn get(&self, provider: &str) -> Option<&ProviderRefresh> {
        self.providers
            .iter()
            .find(|(p, _)| p == provider)
            .map(|(_, r)| r)
    }
}

/// The live source behind a `CatalogService`.
#[derive(Debug)]
pub(super) struct LiveCatalog {
    pub config: LiveConfig,
    client: Result<reqwest::Client, String>,
    /// The last refresh's outcome per provider (empty before the first one).
    last: Mutex<BTreeMap<String, ProviderRefresh>>,
    /// Whether the cache has been loaded into the catalog in use.
    loaded: Mutex<bool>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl LiveCatalog {
    pub fn new(config: LiveConfig) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(config.version_timeout)
            .user_agent(concat!("flotillad/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)));
        LiveCatalog {
            config,
            client,
            last: Mutex::new(BTreeMap::new()),
            loaded: Mutex::new(false),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn is_loaded(&self) -> bool {
        *self.loaded.locked()
    }

    /// Builds the catalog from the cached files (off the async threads) and swaps it in.
    pub async fn load_cache(&self, current: &RwLock<Arc<Catalog>>) {
        let config = self.config.clone();
        let built = tokio::task::spawn_blocking(move || build_from_cache(&config)).await;
        match built {
            Ok(catalog) => {
                *current.write_locked() = Arc::new(catalog);
                *self.loaded.locked() = true;
            }
            Err(e) => tracing::error!("loading the cached catalog failed: {e}"),
        }
    }

    /// Checks every provider's version, downloads what changed, and swaps in a rebuilt
    /// catalog when anything changed (or the cache was never loaded).
    pub async fn refresh_once(&self, current: &RwLock<Arc<Catalog>>) -> RefreshReport {
        let _one_at_a_time = self.refreshing.lock().await;
        let mut outcomes: BTreeMap<String, ProviderRefresh> = BTreeMap::new();
        match &self.client {
            Ok(client) => {
                let mut tasks = tokio::task::JoinSet::new();
                for provider in &self.config.providers {
                    let (client, config, provider) =
                        (client.clone(), self.config.clone(), provider.clone());
                    tasks.spawn(async move {
                        let outcome = refresh_provider(&client, &config, &provider).await;
                        (provider, outcome)
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok((provider, outcome)) => {
                            outcomes.insert(provider, outcome);
                        }
                        Err(e) => tracing::error!("a catalog refresh task failed: {e}"),
                    }
                }
            }
            Err(e) => tracing::error!("live catalog: {e}"),
        }
        let mut report = RefreshReport::default();
        for provider in &self.config.providers {
            let outcome = outcomes
                .remove(provider)
                .unwrap_or_else(|| ProviderRefresh::Failed {
                    error: match &self.client {
                        Ok(_) => "the refresh task failed".to_string(),
                        Err(e) => e.clone(),
                    },
                    cached: read_version(&self.config.version_path(provider)),
                });
            report.providers.push((provider.clone(), outcome));
        }
        let changed = report
            .providers
            .iter()
            .any(|(_, r)| matches!(r, ProviderRefresh::Updated { .. }));
        if changed || !self.is_loaded() {
            self.load_cache(current).await;
            report.reloaded = true;
        }
        *self.last.locked() = report.providers.iter().cloned().collect();
        report
    }

    /// Status lines for the user: providers that could not be refreshed, and what is used
    /// instead.
    pub fn warnings(&self) -> Vec<String> {
        let last = self.last.locked();
        if last.is_empty() {
            if self.is_loaded() {
                return Vec::new();
            }
            return vec!["live catalog: not refreshed yet; no cloud offers until it is".into()];
        }
        let failed: Vec<(&String, &String, &Option<String>)> = last
            .iter()
            .filter_map(|(p, r)| match r {
                ProviderRefresh::Failed { error, cached } => Some((p, error, cached)),
                _ => None,
            })
            .collect();
        let Some((first, first_error, _)) = failed.first() else {
            return Vec::new();
        };
        let cached: Vec<String> = failed
            .iter()
            .filter_map(|(p, _, c)| c.as_ref().map(|v| format!("{p} ({v})")))
            .collect();
        let missing: Vec<&str> = failed
            .iter()
            .filter(|(_, _, c)| c.is_none())
            .map(|(p, _, _)| p.as_str())
            .collect();
        let mut line = if failed.len() == 1 {
            format!("live catalog: {first}: {first_error}")
        } else {
            format!(
                "live catalog: {} of {} providers not refreshed (first, {first}: {first_error})",
                failed.len(),
                last.len()
            )
        };
        if !cached.is_empty() {
            line.push_str(&format!(
                "; using the cached catalog of {}",
                cached.join(", ")
            ));
        }
        if !missing.is_empty() {
            line.push_str(&format!("; no offers from {}", missing.join(", ")));
        }
        vec![line]
    }
}

/// The version in a cached `version` file, when the file and its CSV are both there.
fn read_version(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let version = text.trim();
    let csv_present = path
        .parent()
        .and_then(|dir| {
            dir.file_name()
                .map(|p| dir.join(format!("{}.csv", p.to_string_lossy())))
        })
        .is_some_and(|csv| csv.is_file());
    (csv_present && valid_version(version)).then(|| version.to_string())
}

/// A version is a short token used in a URL path and a file: `20250101-3`.
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !v.starts_with('.')
}

fn build_from_cache(config: &LiveConfig) -> Catalog {
    let mut files = Vec::new();
    let mut versions = BTreeMap::new();
    for provider in &config.providers {
        let path = config.csv_path(provider);
        if path.is_file() {
            files.push((provider.clone(), path));
            if let Some(v) = read_version(&config.version_path(provider)) {
                versions.insert(provider.clone(), v);
            }
        }
    }
    let mut catalog = load_files(&files);
    for source in &mut catalog.sources {
        source.version = versions.get(&source.backend).cloned();
    }
    catalog
}

async fn refresh_provider(
    client: &reqwest::Client,
    config: &LiveConfig,
    provider: &str,
) -> ProviderRefresh {
    let cached = read_version(&config.version_path(provider));
    let failed = |error: String| ProviderRefresh::Failed {
        error,
        cached: cached.clone(),
    };
    let version_url = format!("{}/{provider}/version", config.base_url);
    let version = match fetch_text(client, &version_url, config.version_timeout).await {
        Ok(v) => v.trim().to_string(),
        Err(e) => {
            tracing::warn!("live catalog: {provider}: {e}");
            return failed(e);
        }
    };
    if !valid_version(&version) {
        let e = format!("GET {version_url}: {version:?} is not a catalog version");
        tracing::error!("live catalog: {provider}: {e}");
        return failed(e);
    }
    if cached.as_deref() == Some(version.as_str()) {
        return ProviderRefresh::Unchanged { version };
    }
    let zip_url = format!("{}/{provider}/{version}/catalog.zip", config.base_url);
    let bytes = match fetch_bytes(client, &zip_url, config.download_timeout, config.max_bytes).await
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("live catalog: {provider}: {e}");
            return failed(e);
        }
    };
    let (config_owned, provider_owned, version_owned) =
        (config.clone(), provider.to_string(), version.clone());
    let stored = tokio::task::spawn_blocking(move || {
        store_catalog(&config_owned, &provider_owned, &version_owned, &bytes)
    })
    .await
    .map_err(|e| format!("storing the catalog failed: {e}"))
    .and_then(|r| r);
    match stored {
        Ok(()) => {
            tracing::info!("live catalog: {provider}: version {version} cached");
            ProviderRefresh::Updated { version }
        }
        Err(e) => {
            let e = format!("{zip_url}: {e}; the previous catalog is kept");
            tracing::error!("live catalog: {provider}: {e}");
            failed(e)
        }
    }
}

async fn fetch_text(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<String, String> {
    let fail = |e: reqwest::Error| format!("GET {url}: {}", describe(&e));
    client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(fail)?
        .text()
        .await
        .map_err(fail)
}

async fn fetch_bytes(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    max: u64,
) -> Result<Vec<u8>, String> {
    let fail = |e: reqwest::Error| format!("GET {url}: {}", describe(&e));
    let mut response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(fail)?;
    let too_big = || format!("GET {url}: larger than {max} bytes");
    if response.content_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fail)? {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(too_big());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Takes `{provider}.csv` out of the zip, checks it is a gpuhunt catalog, and caches it with
/// its version; nothing is written unless the whole CSV could be read.
fn store_catalog(
    config: &LiveConfig,
    provider: &str,
    version: &str,
    zip_bytes: &[u8],
) -> Result<(), String> {
    let csv = extract_csv(zip_bytes, provider, config.max_bytes)?;
    check_header(&csv).map_err(|e| format!("{provider}.csv in the zip: {e}"))?;
    let dir = config.cache_dir(provider);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_atomically(&config.csv_path(provider), &csv)?;
    write_atomically(
        &config.version_path(provider),
        format!("{version}\n").as_bytes(),
    )
}

/// The bytes of `{provider}.csv` (at the top of the zip or in a folder of it).
pub(super) fn extract_csv(zip_bytes: &[u8], provider: &str, max: u64) -> Result<Vec<u8>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|e| format!("not a readable zip: {e}"))?;
    let wanted = format!("{provider}.csv");
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .name_for_index(i)
                .is_some_and(|name| name == wanted || name.ends_with(&format!("/{wanted}")))
        })
        .ok_or_else(|| format!("the zip holds no {wanted}"))?;
    let mut entry = archive
        .by_index(index)
        .map_err(|e| format!("cannot open {wanted} in the zip: {e}"))?;
    if entry.size() > max {
        return Err(format!("{wanted} is larger than {max} bytes"));
    }
    let mut csv = Vec::with_capacity(entry.size() as usize);
    (&mut entry)
        .take(max + 1)
        .read_to_end(&mut csv)
        .map_err(|e| format!("cannot decompress {wanted}: {e}"))?;
    if csv.len() as u64 > max {
        return Err(format!("{wanted} is larger than {max} bytes"));
    }
    Ok(csv)
}

/// Writes `path` through a temporary file in the same folder and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}
