//! Start-up floor: `flotillad --rotate-key`. With the daemon stopped, every value the store
//! keeps sealed (secrets, users' private SSH keys and service tokens, runs' registry passwords) is sealed again
//! under a new key, the store is flushed, and the new key replaces `<data_dir>/key`. An
//! interrupted rotation is finished by running it again (the daemon refuses to start meanwhile).

use crate::sealing::Rotation;
use crate::store::Store;
use anyhow::Context;
use std::path::Path;

/// What a rotation re-sealed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    pub secrets: usize,
    pub user_keys: usize,
    pub registry_passwords: usize,
    /// Sealed values in `<data_dir>/config.yml` (backends' API keys).
    pub config_values: usize,
}

pub async fn rotate_key(data_dir: &Path) -> anyhow::Result<Resealed> {
    let key = data_dir.join("key");
    let store =
        Store::open(&data_dir.join("state")).context("stop the daemon before rotating its key")?;
    let rotation = Rotation::begin(&key)?;
    let mut done = Resealed::default();
    for mut secret in store.list_secrets()? {
        secret.sealed_value = rotation
            .reseal(&secret.sealed_value)
            .with_context(|| format!("secret {}", secret.name))?;
        store.put_secret(&secret)?;
        done.secrets += 1;
    }
    for mut user in store.list_users()? {
        let mut changed = false;
        if let Some(private) = user.ssh_private_key.as_mut() {
            *private = rotation
                .reseal(private)
                .with_context(|| format!("the private key of user {}", user.name))?;
            changed = true;
            done.user_keys += 1;
        }
        if let Some(token) = user.token.as_mut() {
            *token = rotation
                .reseal(token)
                .with_context(|| format!("the service token of user {}", user.name))?;
            changed = true;
        }
        if changed {
            store.put_user(&user)?;
        }
    }
    for run in store.list_runs()? {
        let Some(auth) = &run.configuration.common().registry_auth else {
            continue;
        };
        let password = rotation
            .reseal(&auth.password)
            .with_context(|| format!("the registry password of run {}", run.name))?;
        store.update_run(run.id, |r| {
            if let Some(a) = r.configuration.common_mut().registry_auth.as_mut() {
                a.password = password;
            }
        })?;
        done.registry_passwords += 1;
    }
    store
        .flush()
        .await
        .context("the re-sealed values could not be made durable; the old key stays")?;
    done.config_values = reseal_config(&data_dir.join("config.yml"), &rotation)?;
    rotation.finish()?;
    Ok(done)
}

/// Seals again every `sealed:v1:` value of the daemon's `config.yml` (the backends' API keys
/// the daemon sealed there), writing the file back atomically; the number re-sealed.
fn reseal_config(path: &Path, rotation: &Rotation) -> anyhow::Result<usize> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    const PREFIX: &str = "sealed:v1:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut count = 0;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + PREFIX.len()..];
        let len = tail
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(tail.len());
        let value = &rest[at..at + PREFIX.len() + len];
        out.push_str(
            &rotation
                .reseal(value)
                .with_context(|| format!("a sealed value in {}", path.display()))?,
        );
        count += 1;
        rest = &tail[len..];
    }
    out.push_str(rest);
    if count > 0 {
        let tmp = path.with_extension("yml.rotating");
        std::fs::write(&tmp, &out)
            .and_then(|_| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::SealingKey;

    #[test]
    fn the_sealed_values_of_config_yml_are_sealed_again_under_the_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("key");
        let old = SealingKey::load_or_create(&key_path).expect("a key");
        let sealed = old.seal("api-key-123").expect("sealed");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "backends:\n  - type: lambda\n    creds: {{type: api_key, api_key: {sealed}}}\n"
            ),
        )
        .expect("config");
        let rotation = Rotation::begin(&key_path).expect("rotation");
        assert_eq!(reseal_config(&config, &rotation).expect("resealed"), 1);
        rotation.finish().expect("finished");
        let text = std::fs::read_to_string(&config).expect("config");
        assert!(text.starts_with(
            "backends:\n  - type: lambda\n    creds: {type: api_key, api_key: sealed:v1:"
        ));
        assert!(!text.contains(&sealed));
        let new = SealingKey::load_or_create(&key_path).expect("the new key");
        let value = text
            .split("api_key: ")
            .nth(1)
            .and_then(|t| t.split('}').next())
            .expect("the value");
        assert_eq!(new.open(value).expect("opens"), "api-key-123");
    }
}
