//! Start-up floor: `flotillad --rotate-key`. With the daemon stopped, every value the store
//! keeps sealed (secrets, users' private SSH keys, runs' registry passwords) is sealed again
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
        if let Some(private) = user.ssh_private_key.as_mut() {
            *private = rotation
                .reseal(private)
                .with_context(|| format!("the private key of user {}", user.name))?;
            store.put_user(&user)?;
            done.user_keys += 1;
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
    rotation.finish()?;
    Ok(done)
}
