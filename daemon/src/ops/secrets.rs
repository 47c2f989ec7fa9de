//! Operations layer: the daemon's secrets (dstack's project secrets). Admins set, read back and
//! delete them; everyone may list their names; every user's runs use them through
//! `${{ secrets.NAME }}` in `env` and `registry_auth`. Values are sealed with the daemon's key
//! before they reach the store and are opened only to answer `secret.get` and to start a job.

use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use flotilla_protocol::model::Secret;
use flotilla_protocol::rpc::SecretInfo;
use flotilla_protocol::Timestamp;
use std::collections::BTreeMap;

/// dstack's limits: names of 1-200 `A-Z a-z 0-9 - _`, values of at most 5000 characters.
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_VALUE_LEN: usize = 5000;

fn check_admin(caller: &Caller, what: &str) -> Result<(), OpError> {
    if caller.admin {
        Ok(())
    } else {
        Err(OpError::Forbidden(format!(
            "only root or the daemon's own user can {what} secrets; ask an admin"
        )))
    }
}

/// Whether `name` is a valid secret name (dstack's `^[A-Za-z0-9-_]{1,200}$`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn info(secret: &Secret, value: Option<String>) -> SecretInfo {
    SecretInfo {
        name: secret.name.clone(),
        set_by: secret.set_by.clone(),
        set_by_uid: secret.set_by_uid,
        created_at: secret.created_at,
        updated_at: secret.updated_at,
        value,
    }
}

fn not_found(name: &str) -> OpError {
    OpError::NotFound(format!(
        "secret {name} not found; `flotilla secret list` lists the secrets"
    ))
}

/// `secret.set`: creates or replaces a secret, sealed.
pub async fn set(
    d: &Daemon,
    caller: &Caller,
    name: &str,
    value: &str,
) -> Result<SecretInfo, OpError> {
    check_admin(caller, "set")?;
    if !valid_name(name) {
        return Err(OpError::Invalid(format!(
            "secret name {name:?} is invalid: use 1-{MAX_NAME_LEN} letters, digits, `-` and `_`"
        )));
    }
    if value.chars().count() > MAX_VALUE_LEN {
        return Err(OpError::Invalid(format!(
            "the value of secret {name} is longer than {MAX_VALUE_LEN} characters"
        )));
    }
    let sealed_value = d
        .sealing()
        .seal(value)
        .map_err(|e| OpError::Internal(format!("cannot seal secret {name}: {e}")))?;
    let now = Timestamp::now();
    let created_at = d
        .store()
        .get_secret(name)?
        .map_or(now, |old| old.created_at);
    let secret = Secret {
        name: name.to_string(),
        sealed_value,
        set_by: caller.user.clone(),
        set_by_uid: caller.uid,
        created_at,
        updated_at: now,
    };
    d.store().put_secret(&secret)?;
    d.store().flush().await?;
    tracing::info!("secret {name} set by {}", caller.user);
    Ok(info(&secret, None))
}

/// `secret.list`: names, who set them and when; never values.
pub fn list(d: &Daemon) -> Result<Vec<SecretInfo>, OpError> {
    Ok(d.store()
        .list_secrets()?
        .iter()
        .map(|s| info(s, None))
        .collect())
}

/// `secret.get`: one secret with its value (admins).
pub fn get(d: &Daemon, caller: &Caller, name: &str) -> Result<SecretInfo, OpError> {
    check_admin(caller, "read")?;
    let secret = d.store().get_secret(name)?.ok_or_else(|| not_found(name))?;
    let value = d
        .sealing()
        .open(&secret.sealed_value)
        .map_err(|e| OpError::Internal(format!("secret {name}: {e}")))?;
    Ok(info(&secret, Some(value)))
}

/// `secret.delete` (admins).
pub async fn delete(d: &Daemon, caller: &Caller, name: &str) -> Result<(), OpError> {
    check_admin(caller, "delete")?;
    if !d.store().delete_secret(name)? {
        return Err(not_found(name));
    }
    d.store().flush().await?;
    tracing::info!("secret {name} deleted by {}", caller.user);
    Ok(())
}

/// The names of the secrets that exist (for plan-time checks of `${{ secrets.NAME }}`).
pub fn names(d: &Daemon) -> Result<Vec<String>, OpError> {
    Ok(d.store()
        .list_secrets()?
        .into_iter()
        .map(|s| s.name)
        .collect())
}

/// The values of the secrets `wanted` names, opened from their seals, for a job that starts
/// now. A name without a secret is left out (the interpolation then reports it missing).
pub fn open_values<'a>(
    d: &Daemon,
    wanted: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for name in wanted {
        let secret = d
            .store()
            .get_secret(name)
            .map_err(|e| format!("cannot read secret {name}: {e}"))?;
        if let Some(secret) = secret {
            let value = d
                .sealing()
                .open(&secret.sealed_value)
                .map_err(|e| format!("secret {name}: {e}"))?;
            values.insert(name.to_string(), value);
        }
    }
    Ok(values)
}
