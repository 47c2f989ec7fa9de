//! Operations layer: the daemon's secrets (dstack's project secrets). Admins set, read back and
//! delete them; everyone may list their names; every user's runs use them through
//! `${{ secrets.NAME }}` in `env` and `registry_auth`. Values are sealed with the daemon's key
//! before they reach the store and are opened only to answer `secret.get` and to start a job.

use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::sealing::is_sealed;
use flotilla_protocol::config::interpolate::{references, InterpolateError, Interpolator};
use flotilla_protocol::model::{Run, Secret};
use flotilla_protocol::rpc::SecretInfo;
use flotilla_protocol::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

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

/// A run as one of its jobs starts it: `${{ secrets.NAME }}` replaced in `env` values (bare
/// keys first take the caller's values) and `registry_auth` (its password opened from its
/// seal). Lives only while the job starts; never stored.
pub struct ForJob {
    pub run: Run,
    /// The values put in, so that what the daemon prints can mask them.
    pub values: Vec<String>,
}

impl ForJob {
    /// `text` with every secret value put in replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        mask(text, &self.values)
    }
}

/// `text` with each of `values` (the longest first) replaced by `***`.
pub fn mask(text: &str, values: &[String]) -> String {
    let mut sorted: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for v in sorted {
        out = out.replace(v.as_str(), "***");
    }
    out
}

/// [`ForJob`] of `run`. The error is dstack's (`Secrets interpolation error: Failed to
/// interpolate due to missing vars: ['secrets.x']`), for a secret deleted since the apply.
pub fn resolve_for_job(d: &Daemon, run: &Run) -> Result<ForJob, String> {
    let mut run = run.clone();
    let caller_env = run.caller_env.clone();
    let common = run.configuration.common_mut();
    if let Some(auth) = common.registry_auth.as_mut() {
        if is_sealed(&auth.password) {
            auth.password = d
                .sealing()
                .open(&auth.password)
                .map_err(|e| format!("registry_auth: cannot open the stored password: {e}"))?;
        }
    }
    let mut texts: Vec<&mut String> = Vec::new();
    for (key, value) in common.env.0.iter_mut() {
        if value.is_none() {
            *value = caller_env.get(key).cloned();
        }
        if let Some(v) = value.as_mut() {
            texts.push(v);
        }
    }
    if let Some(auth) = common.registry_auth.as_mut() {
        texts.push(&mut auth.username);
        texts.push(&mut auth.password);
    }
    let wanted: BTreeSet<&str> = texts
        .iter()
        .flat_map(|t| references(t))
        .filter_map(|r| r.strip_prefix("secrets."))
        .collect();
    if wanted.is_empty() {
        return Ok(ForJob {
            run: run.clone(),
            values: Vec::new(),
        });
    }
    let opened = open_values(d, wanted.iter().copied())?;
    let i = Interpolator::new().namespace(
        "secrets",
        opened.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let error = |e: InterpolateError| format!("Secrets interpolation error: {e}");
    for t in texts.iter_mut() {
        **t = i.interpolate_or_error(t).map_err(error)?;
    }
    drop(texts);
    Ok(ForJob {
        values: opened.into_values().collect(),
        run,
    })
}
