//! Bottom layer. The daemon's configuration: command-line flags, the optional `config.yml` in the data dir, and XDG defaults.

use anyhow::Context;
use flotilla_protocol::paths;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// A directory of gpuhunt CSV catalogs, loaded once (`catalog_dir`, env `FLOTILLA_CATALOG_DIR`).
    pub catalog_dir: Option<PathBuf>,
    /// Download the providers' catalogs and refresh them in the background.
    pub live_catalog: bool,
    pub catalog_url: String,
    pub catalog_refresh_secs: u64,
    /// How often each SSH host is pinged over its connection.
    pub health_interval_secs: u64,
    /// How long a host may stay unreachable before its jobs fail with `instance_unreachable`.
    pub unreachable_grace_secs: u64,
    /// Backends that create instances (`backends:` in config.yml).
    pub backends: Vec<BackendConfig>,
    /// Multiplies the retry backoff (1.0 = dstack's 15s, 30s, 1m, ...); tests shorten it.
    pub retry_delay_scale: f64,
    /// The group whose members may use the socket (`--socket-group`, `socket_group`): the
    /// socket is then 0660 for it. None: only root and the daemon's own user.
    pub socket_group: Option<String>,
}

/// `config.yml` in the data dir; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    catalog_dir: Option<PathBuf>,
    live_catalog: Option<bool>,
    catalog_url: Option<String>,
    catalog_refresh_secs: Option<u64>,
    health_interval_secs: Option<u64>,
    unreachable_grace_secs: Option<u64>,
    retry_delay_scale: Option<f64>,
    socket_group: Option<String>,
    #[serde(default)]
    backends: Vec<BackendConfig>,
}

/// One entry of `backends:`, selected by its `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    Pool(crate::backends::pool::PoolConfig),
}

pub const DEFAULT_CATALOG_URL: &str = "https://dstack-gpu-pricing.s3.eu-west-1.amazonaws.com/v3";

impl DaemonConfig {
    /// Resolves the configuration from flags (which win), `config.yml`, the environment and defaults.
    pub fn resolve(
        data_dir: Option<PathBuf>,
        socket: Option<PathBuf>,
        config_file: Option<PathBuf>,
        socket_group: Option<String>,
    ) -> anyhow::Result<DaemonConfig> {
        let data_dir = data_dir.unwrap_or_else(paths::default_state_dir);
        let file_path = config_file.unwrap_or_else(|| data_dir.join("config.yml"));
        let file = read_file_config(&file_path)?;
        let catalog_dir = std::env::var_os("FLOTILLA_CATALOG_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or(file.catalog_dir);
        Ok(DaemonConfig {
            socket: socket.unwrap_or_else(paths::default_socket_path),
            catalog_dir,
            live_catalog: file.live_catalog.unwrap_or(false),
            catalog_url: file
                .catalog_url
                .unwrap_or_else(|| DEFAULT_CATALOG_URL.to_string()),
            catalog_refresh_secs: file.catalog_refresh_secs.unwrap_or(3600),
            health_interval_secs: file.health_interval_secs.unwrap_or(5).max(1),
            unreachable_grace_secs: file.unreachable_grace_secs.unwrap_or(120),
            retry_delay_scale: file.retry_delay_scale.unwrap_or(1.0),
            backends: file.backends,
            socket_group: socket_group.or(file.socket_group).filter(|g| !g.is_empty()),
            data_dir,
        })
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let name = path.display().to_string();
    let value = flotilla_protocol::config::yaml_to_json(&name, &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if value.is_null() {
        return Ok(FileConfig::default());
    }
    serde_json::from_value(value).with_context(|| {
        format!("{name}: invalid daemon configuration (keys: catalog_dir, live_catalog, catalog_url, catalog_refresh_secs, health_interval_secs, unreachable_grace_secs, retry_delay_scale, socket_group, backends)")
    })
}
