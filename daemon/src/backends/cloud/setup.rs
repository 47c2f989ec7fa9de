//! Building cloud backends from `config.yml`: API keys are sealed in the file with the daemon's
//! key at start (a clear `api_key` is replaced by its `sealed:v1:...` form, nothing else in
//! the file changes), opened in memory only, and never written anywhere else.

use super::key::CloudKey;
use super::DEFAULT_PROVISIONING_TIMEOUT_SECS;
use super::{lambda, runpod, vastai, ApiKey, CloudBackend, CloudConfig, Creds, Provider};
use crate::backends::CloudSettings;
use crate::catalog::CatalogService;
use crate::config::{parse_duration_secs, BackendConfig};
use crate::sealing::{is_sealed, SealingKey};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces every clear `api_key` of `backends` in the text of `path` by its sealed form.
/// A key whose clear text is not found exactly once in the file is left as it is, with a
/// warning (the daemon then still uses it).
pub fn seal_keys_in_file(
    path: &Path,
    backends: &[BackendConfig],
    key: &SealingKey,
) -> Result<Vec<String>, String> {
    let clear: Vec<(String, &str)> = backends
        .iter()
        .filter_map(|b| {
            let Creds::ApiKey { api_key } = &b.cloud()?.creds;
            (!is_sealed(api_key)).then(|| (b.name(), api_key.as_str()))
        })
        .collect();
    if clear.is_empty() {
        return Ok(Vec::new());
    }
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {} to seal its API keys: {e}", path.display()))?;
    let mut warnings = Vec::new();
    let mut changed = false;
    for (name, plain) in clear {
        if text.matches(plain).count() != 1 {
            warnings.push(format!(
                "{}: the api_key of backend {name} could not be sealed in place (its text is not found exactly once); it stays in clear",
                path.display()
            ));
            continue;
        }
        let sealed = key
            .seal(plain)
            .map_err(|e| format!("cannot seal the api_key of backend {name}: {e}"))?;
        text = text.replacen(plain, &sealed, 1);
        changed = true;
    }
    if changed {
        write_replacing(path, &text).map_err(|e| {
            format!(
                "cannot write the sealed API keys to {}: {e}",
                path.display()
            )
        })?;
        tracing::info!("sealed the backends' API keys in {}", path.display());
    }
    Ok(warnings)
}

/// Writes `text` to a file beside `path` with its mode, then renames it over `path`.
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    let tmp = path.with_extension("yml.sealing");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The clear API key of a cloud backend (opened when sealed).
fn api_key(name: &str, cfg: &CloudConfig, sealing: &SealingKey) -> Result<ApiKey, String> {
    let Creds::ApiKey { api_key } = &cfg.creds;
    if is_sealed(api_key) {
        sealing.open(api_key).map(ApiKey::new).map_err(|e| {
            format!("backend {name}: its api_key cannot be opened ({e}); the daemon's key changed: paste the provider's API key again")
        })
    } else {
        Ok(ApiKey::new(api_key.clone()))
    }
}

/// The backend of one cloud entry of `backends:`.
pub fn build(
    b: &BackendConfig,
    catalog: &CatalogService,
    sealing: &SealingKey,
    key: &CloudKey,
) -> Result<Option<CloudBackend>, String> {
    let Some(cfg) = b.cloud() else {
        return Ok(None);
    };
    let name = b.name();
    let secret = api_key(&name, cfg, sealing)?;
    let url = |default: &str| cfg.api_url.clone().unwrap_or_else(|| default.to_string());
    let (provider, api_url): (Box<dyn Provider>, String) = match b {
        BackendConfig::Lambda(_) => {
            let u = url(lambda::DEFAULT_API_URL);
            (Box::new(lambda::Lambda::new(&name, &u, secret)?), u)
        }
        BackendConfig::Runpod(_) => {
            let u = url(runpod::DEFAULT_API_URL);
            (Box::new(runpod::RunPod::new(&name, &u, secret)?), u)
        }
        BackendConfig::Vastai(_) => {
            let u = url(vastai::DEFAULT_API_URL);
            (Box::new(vastai::VastAi::new(&name, &u, secret)?), u)
        }
        BackendConfig::Pool(_) => return Ok(None),
    };
    let settings = CloudSettings {
        provisioning_timeout_secs: cfg
            .provisioning_timeout
            .as_ref()
            .and_then(parse_duration_secs)
            .unwrap_or(DEFAULT_PROVISIONING_TIMEOUT_SECS),
        terminate_orphans: cfg.terminate_orphans,
        api_url,
    };
    Ok(Some(CloudBackend::new(
        name,
        provider,
        cfg,
        catalog.clone(),
        key.clone(),
        settings,
    )))
}
