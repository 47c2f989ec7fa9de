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
        BackendConfig::Pool(_) | BackendConfig::Slurm(_) => return Ok(None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::Backend;
    use crate::config::DaemonConfig;
    use flotilla_protocol::config::ResourcesSpec;

    fn resolve(dir: &Path, yaml: &str) -> anyhow::Result<DaemonConfig> {
        let path = dir.join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        DaemonConfig::resolve(Some(dir.to_path_buf()), None, Some(path), None)
    }

    #[test]
    fn cloud_backends_are_read_in_dstacks_shape_and_bad_fields_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(
            dir.path(),
            "backends:\n  - type: lambda\n    creds: {type: api_key, api_key: k1}\n    regions: [us-east-1]\n  - type: vastai\n    name: vast2\n    creds: {type: api_key, api_key: k2}\n    api_url: http://127.0.0.1:9/api/v0\n    provisioning_timeout: 5m\n",
        )
        .unwrap();
        let names: Vec<String> = c.backends.iter().map(|b| b.name()).collect();
        assert_eq!(names, ["lambda", "vast2"]);
        for (yaml, words) in [
            ("backends:\n  - type: lambda\n    creds: {type: api_key, api_key: k}\n    zone: x\n", "invalid daemon configuration"),
            ("backends:\n  - type: lambda\n    creds: {type: api_key, api_key: k}\n    provisioning_timeout: soon\n", "provisioning_timeout"),
            ("backends:\n  - type: lambda\n    creds: {type: api_key, api_key: k}\n    api_url: ftp://x\n", "api_url"),
            ("backends:\n  - type: lambda\n    creds: {type: api_key, api_key: ''}\n", "api_key is empty"),
            ("backends:\n  - type: lambda\n    creds: {type: api_key, api_key: a}\n  - type: lambda\n    creds: {type: api_key, api_key: b}\n", "two backends are named lambda"),
            ("backends:\n  - type: gcp\n    creds: {type: api_key, api_key: a}\n", "invalid daemon configuration"),
        ] {
            let e = format!("{:#}", resolve(dir.path(), yaml).unwrap_err());
            assert!(e.contains(words), "{yaml}: {e}");
        }
    }

    #[test]
    fn clear_keys_are_sealed_in_place_and_opened_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "# my backends\nbackends:\n  - type: lambda\n    creds: {type: api_key, api_key: secret_abc_123}  # from the console\n";
        let c = resolve(dir.path(), yaml).unwrap();
        let sealing = SealingKey::load_or_create(&dir.path().join("key")).unwrap();
        let warnings = seal_keys_in_file(&c.config_file, &c.backends, &sealing).unwrap();
        assert!(warnings.is_empty());
        let text = std::fs::read_to_string(&c.config_file).unwrap();
        assert!(!text.contains("secret_abc_123"), "{text}");
        assert!(text.starts_with("# my backends\n") && text.contains("# from the console"));
        // the next start reads the sealed key and leaves the file as it is
        let again = resolve(dir.path(), &text).unwrap();
        assert!(
            seal_keys_in_file(&again.config_file, &again.backends, &sealing)
                .unwrap()
                .is_empty()
        );
        assert_eq!(std::fs::read_to_string(&again.config_file).unwrap(), text);
        let Creds::ApiKey { api_key } = &again.backends[0].cloud().unwrap().creds;
        let opened =
            super::api_key("lambda", again.backends[0].cloud().unwrap(), &sealing).unwrap();
        assert_eq!(opened.expose(), "secret_abc_123");
        assert!(is_sealed(api_key));
        assert_eq!(format!("{opened:?}"), "ApiKey(..)");
        // another daemon key cannot open it: the start stops with what to do
        let other = SealingKey::load_or_create(&dir.path().join("other")).unwrap();
        let e = super::api_key("lambda", again.backends[0].cloud().unwrap(), &other).unwrap_err();
        assert!(e.contains("paste the provider's API key again"), "{e}");
    }

    #[test]
    fn offers_come_from_the_providers_catalog_in_its_regions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lambda.csv"),
            "instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,provider_data\n\
             gpu_1x_a10,us-east-1,0.75,30,200.0,1,A10,24.0,False,,nvidia,,x86,{}\n\
             gpu_1x_a10,europe-central-1,0.75,30,200.0,1,A10,24.0,False,,nvidia,,x86,{}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("aws.csv"),
            "instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,provider_data\n\
             g5.xlarge,us-east-1,0.5,4,16.0,1,A10G,24.0,False,,nvidia,,x86,{}\n",
        )
        .unwrap();
        let catalog = CatalogService::from_dir(dir.path()).unwrap();
        let c = resolve(
            dir.path(),
            "backends:\n  - type: lambda\n    name: lam\n    creds: {type: api_key, api_key: k}\n    regions: [us-east-1]\n",
        )
        .unwrap();
        let sealing = SealingKey::load_or_create(&dir.path().join("key")).unwrap();
        let key = CloudKey::load_or_create(&dir.path().join("cloud_key")).unwrap();
        let b = build(&c.backends[0], &catalog, &sealing, &key)
            .unwrap()
            .unwrap();
        let req = ResourcesSpec {
            gpu: flotilla_protocol::config::GpuSpec {
                count: flotilla_protocol::config::Range::at_least(1),
                ..Default::default()
            },
            ..ResourcesSpec::default()
        };
        let offers = b.offers(&req);
        assert_eq!(offers.len(), 1, "{offers:?}");
        assert_eq!(offers[0].backend, "lam");
        assert_eq!(offers[0].region, "us-east-1");
        assert_eq!(b.catalog_name(), Some("lambda"));
        assert_eq!(b.cloud().unwrap().provisioning_timeout_secs, 600);
    }
}
