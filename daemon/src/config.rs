//! Bottom layer. The daemon's configuration: command-line flags, the optional `config.yml` in the data dir, and XDG defaults.

use anyhow::Context;
use flotilla_protocol::paths;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    /// The `config.yml` read (the daemon seals clear API keys in it).
    pub config_file: PathBuf,
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
    /// Multiplies a run's `utilization_policy.time_window` (and the minute of samples it may
    /// lack at its start); 1.0 = dstack's; tests shorten it.
    pub utilization_window_scale: f64,
    /// The group whose members may use the socket (`--socket-group`, `socket_group`): the
    /// socket is then 0660 for it. None: only root and the daemon's own user.
    pub socket_group: Option<String>,
    /// How long finished job directories stay on hosts (`job_retention`; default 7 days).
    pub job_retention_secs: u64,
    /// The image of jobs with `python`/`nvcc` and no `image` (`base_image`; default dstack's
    /// base image), for mirrors and offline sites.
    pub base_image: Option<String>,
    /// The largest archive (`files`, a repo) a client may upload, in bytes; 0: no limit
    /// (`code_upload_limit`; dstack's default, 2 MiB).
    pub code_upload_limit: u64,
    /// Where the HTTP server in front of services listens (`--http`, `http_listen`).
    pub http_listen: HttpListen,
}

/// The HTTP server's address as configured: an address (port 0: any free port) or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpListen {
    Off,
    At(std::net::SocketAddr),
}

/// The HTTP server's address when none is configured.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:3000";

impl HttpListen {
    /// `off`, or `HOST:PORT` with an IP address (`127.0.0.1:3000`, `0.0.0.0:8080`, `[::1]:0`).
    pub fn parse(text: &str) -> Result<HttpListen, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(HttpListen::Off);
        }
        t.parse().map(HttpListen::At).map_err(|_| {
            format!("http_listen: {t:?} is not an address; write IP:PORT (e.g. 127.0.0.1:3000, 0.0.0.0:8080, port 0 for any free port) or `off`")
        })
    }
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
    utilization_window_scale: Option<f64>,
    socket_group: Option<String>,
    job_retention: Option<serde_json::Value>,
    base_image: Option<String>,
    code_upload_limit: Option<serde_json::Value>,
    http_listen: Option<String>,
    #[serde(default)]
    backends: Vec<BackendConfig>,
}

/// One entry of `backends:`, selected by its `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    Pool(crate::backends::pool::PoolConfig),
    Slurm(crate::backends::slurm::config::SlurmConfig),
    Lambda(crate::backends::cloud::CloudConfig),
    Runpod(crate::backends::cloud::CloudConfig),
    Vastai(crate::backends::cloud::CloudConfig),
}

impl BackendConfig {
    /// The backend's name: `name`, or the type for cloud backends without one.
    pub fn name(&self) -> String {
        match self {
            BackendConfig::Pool(p) => p.name.clone(),
            BackendConfig::Lambda(c) => c.name.clone().unwrap_or_else(|| "lambda".into()),
            BackendConfig::Runpod(c) => c.name.clone().unwrap_or_else(|| "runpod".into()),
            BackendConfig::Vastai(c) => c.name.clone().unwrap_or_else(|| "vastai".into()),
            BackendConfig::Slurm(_) => "slurm".into(),
        }
    }

    pub fn cloud(&self) -> Option<&crate::backends::cloud::CloudConfig> {
        match self {
            BackendConfig::Pool(_) | BackendConfig::Slurm(_) => None,
            BackendConfig::Lambda(c) | BackendConfig::Runpod(c) | BackendConfig::Vastai(c) => {
                Some(c)
            }
        }
    }
}

/// Finished job directories stay on hosts a week unless `job_retention` says otherwise.
pub const DEFAULT_JOB_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// A duration as dstack writes them: a number of seconds, or a number with a unit
/// (`s`, `m`, `h`, `d`, `w`), e.g. `90`, `"30m"`, `"7d"`.
pub fn parse_duration_secs(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// dstack's `DSTACK_SERVER_CODE_UPLOAD_LIMIT` default: 2 MiB per archive.
pub const DEFAULT_CODE_UPLOAD_LIMIT: u64 = 2 * 1024 * 1024;

/// Bytes from a number or a size with a unit (`10MB`, `64MiB`, `1GB`; units of 1024).
pub fn parse_size_bytes(v: &serde_json::Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let text = v.as_str()?.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * scale) as u64)
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
        let job_retention_secs = match &file.job_retention {
            None => DEFAULT_JOB_RETENTION_SECS,
            Some(v) => parse_duration_secs(v).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: job_retention: {v} is not a duration (seconds, or e.g. 7d, 12h, 30m)",
                    file_path.display()
                )
            })?,
        };
        let code_upload_limit = match &file.code_upload_limit {
            None => DEFAULT_CODE_UPLOAD_LIMIT,
            Some(v) => parse_size_bytes(v).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: code_upload_limit: {v} is not a size (bytes, or e.g. 2MB, 100MB; 0 for no limit)",
                    file_path.display()
                )
            })?,
        };
        for b in &file.backends {
            if let BackendConfig::Slurm(s) = b {
                s.validate()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file_path.display()))?;
            }
        }
        if file
            .backends
            .iter()
            .filter(|b| matches!(b, BackendConfig::Slurm(_)))
            .count()
            > 1
        {
            anyhow::bail!(
                "{}: backends: `type: slurm` appears twice; list every cluster under one `clusters:`",
                file_path.display()
            );
        }
        let http_listen =
            HttpListen::parse(file.http_listen.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN))
                .map_err(|e| anyhow::anyhow!("{}: {e}", file_path.display()))?;
        Ok(DaemonConfig {
            http_listen,
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
            utilization_window_scale: file.utilization_window_scale.unwrap_or(1.0),
            job_retention_secs,
            code_upload_limit,
            backends: checked_backends(&file_path, file.backends)?,
            config_file: file_path,
            base_image: file.base_image.filter(|i| !i.trim().is_empty()),
            socket_group: socket_group.or(file.socket_group).filter(|g| !g.is_empty()),
            data_dir,
        })
    }
}

/// Backend names are unique; cloud settings that cannot be honoured are refused here.
fn checked_backends(path: &Path, list: Vec<BackendConfig>) -> anyhow::Result<Vec<BackendConfig>> {
    let mut seen = std::collections::HashSet::new();
    for b in &list {
        let name = b.name();
        if !seen.insert(name.clone()) {
            anyhow::bail!(
                "{}: backends: two backends are named {name}; give one a different `name`",
                path.display()
            );
        }
        if let Some(c) = b.cloud() {
            if let Some(v) = &c.provisioning_timeout {
                if parse_duration_secs(v).is_none() {
                    anyhow::bail!(
                        "{}: backends: {name}: provisioning_timeout: {v} is not a duration (seconds, or e.g. 10m)",
                        path.display()
                    );
                }
            }
            if let Some(url) = &c.api_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    anyhow::bail!(
                        "{}: backends: {name}: api_url {url} is not an http(s) URL",
                        path.display()
                    );
                }
            }
            let crate::backends::cloud::Creds::ApiKey { api_key } = &c.creds;
            if api_key.trim().is_empty() {
                anyhow::bail!(
                    "{}: backends: {name}: creds.api_key is empty; paste the provider's API key",
                    path.display()
                );
            }
        }
    }
    Ok(list)
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
        format!("{name}: invalid daemon configuration (keys: catalog_dir, live_catalog, catalog_url, catalog_refresh_secs, health_interval_secs, unreachable_grace_secs, retry_delay_scale, utilization_window_scale, socket_group, job_retention, base_image, code_upload_limit, http_listen, backends)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_upload_limit_takes_bytes_or_sizes() {
        assert_eq!(parse_size_bytes(&json!(0)), Some(0));
        assert_eq!(parse_size_bytes(&json!("2MB")), Some(2 * 1024 * 1024));
        assert_eq!(parse_size_bytes(&json!("64 KiB")), Some(64 * 1024));
        assert_eq!(parse_size_bytes(&json!("1.5GB")), Some(1024 * 1024 * 1536));
        assert_eq!(parse_size_bytes(&json!("lots")), None);
        assert_eq!(parse_size_bytes(&json!("5PB")), None);
    }

    #[test]
    fn job_retention_takes_seconds_or_dstack_durations() {
        assert_eq!(parse_duration_secs(&json!(90)), Some(90));
        assert_eq!(parse_duration_secs(&json!("90")), Some(90));
        assert_eq!(parse_duration_secs(&json!("30m")), Some(1800));
        assert_eq!(parse_duration_secs(&json!("7d")), Some(604_800));
        assert_eq!(parse_duration_secs(&json!("2w")), Some(1_209_600));
        assert_eq!(parse_duration_secs(&json!("soon")), None);
        assert_eq!(parse_duration_secs(&json!("5y")), None);
    }

    #[test]
    fn http_listen_is_an_address_or_off() {
        assert_eq!(HttpListen::parse("off"), Ok(HttpListen::Off));
        assert_eq!(
            HttpListen::parse("127.0.0.1:0"),
            Ok(HttpListen::At(([127, 0, 0, 1], 0).into()))
        );
        assert!(HttpListen::parse("[::1]:3000").is_ok());
        let e = HttpListen::parse("localhost:3000").expect_err("a host name is refused");
        assert!(e.contains("IP:PORT"), "{e}");
    }
}
