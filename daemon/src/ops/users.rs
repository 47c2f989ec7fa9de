//! Operations layer: users and their SSH key pairs, made by the daemon at a user's first contact,
//! refreshable (dstack 0.19.33).

use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::hosts::Host;
use crate::sealing::is_sealed;
use crate::store::StoreError;
use flotilla_protocol::model::User;
use flotilla_protocol::Timestamp;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("cannot make an SSH key: {0}")]
    Key(String),
    #[error("a user's private key: {0}")]
    Sealing(#[from] crate::sealing::SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh ed25519 key pair: (OpenSSH public key, OpenSSH private key).
pub fn generate_key_pair(comment: &str) -> Result<(String, String), UserError> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| UserError::Key(format!("reading /dev/urandom: {e}")))?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| UserError::Key(e.to_string()))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| UserError::Key(e.to_string()))?;
    Ok((public, private))
}

/// The caller's user record, made (with a key pair) at first contact. The key opens the
/// daemon's SSH gateway into the user's own runs; it is installed on no host.
pub async fn ensure(d: &Daemon, caller: &Caller) -> Result<User, UserError> {
    if let Some(mut u) = d.store().get_user(caller.uid)? {
        // A user made before tokens existed gets one now.
        if u.token_hash.is_none() {
            super::tokens::give_token(&mut u)?;
            d.store().put_user(&sealed(d, &u)?)?;
        }
        return opened(d, u);
    }
    create(d, caller)
}

/// How many replaced keys a user's record keeps for hosts that were down at a refresh.
const MAX_RETIRED_KEYS: usize = 20;

/// Removes every user's keys, current and replaced, from one host's `authorized_keys`: users
/// reach their jobs through the daemon's gateway, and an earlier version of the daemon installed
/// their keys on hosts. The instances loop calls this when it provisions a host.
pub async fn revoke_user_keys(d: &Daemon, host: &Host) -> Result<(), OpError> {
    let retired: Vec<String> = d
        .store()
        .list_users()?
        .into_iter()
        .flat_map(|u| {
            let mut keys = u.retired_ssh_keys;
            keys.push(u.ssh_public_key);
            keys
        })
        .collect();
    if retired.is_empty() {
        return Ok(());
    }
    let input = retired.join("\n") + "\n";
    host.run(&["revoke_keys"], Some(input.as_bytes()))
        .await
        .map(|_| ())
        .map_err(|e| OpError::Internal(e.to_string()))
}

/// Removes a replaced public key from every SSH host that is up, in case an earlier version
/// of the daemon installed it (a host that is down now is cleaned when it is provisioned).
pub async fn revoke_key(d: &Daemon, key: &str) {
    let tasks: Vec<_> = ssh_hosts_up(d, "remove an old key from")
        .into_iter()
        .map(|h| {
            let host = Host::Ssh(h);
            let key = format!("{key}\n");
            tokio::spawn(async move {
                let revoked = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    host.run(&["revoke_keys"], Some(key.as_bytes())),
                )
                .await;
                match revoked {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!("{}: cannot remove a user's old key: {e}", host.label())
                    }
                    Err(_) => {
                        tracing::warn!("{}: removing a user's old key timed out", host.label())
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            tracing::warn!("removing a user's old key from a host failed: {e}");
        }
    }
}

/// The SSH hosts that are provisioned and reachable now.
fn ssh_hosts_up(d: &Daemon, what: &str) -> Vec<std::sync::Arc<crate::hosts::ssh::SshHost>> {
    let instances = match d.store().list_instances() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("cannot list the hosts to {what}: {e}");
            return Vec::new();
        }
    };
    instances
        .iter()
        .filter(|i| i.ssh.is_some() && !i.unreachable)
        .filter(|i| {
            matches!(
                i.status,
                flotilla_protocol::model::InstanceStatus::Idle
                    | flotilla_protocol::model::InstanceStatus::Busy
            )
        })
        .filter_map(|i| match d.host_for(Some(i.id)) {
            Host::Ssh(h) => Some(h),
            Host::Local(_) => None,
        })
        .collect()
}

fn create(d: &Daemon, caller: &Caller) -> Result<User, UserError> {
    let (public, private) = generate_key_pair(&format!("flotilla:{}", caller.user))?;
    let mut user = User {
        uid: caller.uid,
        name: caller.user.clone(),
        admin: caller.admin,
        ssh_public_key: public,
        ssh_private_key: Some(private),
        created_at: Timestamp::now(),
        retired_ssh_keys: Vec::new(),
        token: None,
        token_hash: None,
    };
    super::tokens::give_token(&mut user)?;
    d.store().put_user(&sealed(d, &user)?)?;
    Ok(user)
}

/// The user as the store keeps it: the private key and the token sealed with the daemon's key.
pub(super) fn sealed(d: &Daemon, user: &User) -> Result<User, UserError> {
    let mut stored = user.clone();
    for value in [stored.ssh_private_key.as_mut(), stored.token.as_mut()]
        .into_iter()
        .flatten()
    {
        if !is_sealed(value) {
            *value = d.sealing().seal(value)?;
        }
    }
    Ok(stored)
}

/// A stored user with the private key and the token opened (a key stored before sealing
/// existed is read as it is, and sealed at the next refresh).
pub(super) fn opened(d: &Daemon, mut user: User) -> Result<User, UserError> {
    for value in [user.ssh_private_key.as_mut(), user.token.as_mut()]
        .into_iter()
        .flatten()
    {
        if is_sealed(value) {
            *value = d.sealing().open(value)?;
        }
    }
    Ok(user)
}

/// Replaces a user's key pair (the gateway takes the new one at once; the old one is removed
/// from hosts in case an earlier daemon installed it).
pub async fn refresh(d: &Daemon, uid: u32) -> Result<Option<User>, UserError> {
    let Some(user) = d.store().get_user(uid)? else {
        return Ok(None);
    };
    let mut user = opened(d, user)?;
    let (public, private) = generate_key_pair(&format!("flotilla:{}", user.name))?;
    let old = std::mem::replace(&mut user.ssh_public_key, public);
    user.ssh_private_key = Some(private);
    user.retired_ssh_keys.push(old.clone());
    let excess = user.retired_ssh_keys.len().saturating_sub(MAX_RETIRED_KEYS);
    user.retired_ssh_keys.drain(..excess);
    d.store().put_user(&sealed(d, &user)?)?;
    revoke_key(d, &old).await;
    Ok(Some(user))
}

/// `user.refresh_ssh_key`: a new key pair for the caller, or (an admin) for another user,
/// whose private key then stays with its owner.
pub async fn refresh_key(d: &Daemon, caller: &Caller, uid: Option<u32>) -> Result<User, OpError> {
    let uid = uid.unwrap_or(caller.uid);
    if uid != caller.uid && !caller.admin {
        return Err(OpError::Forbidden(
            "only an admin can refresh another user's key".into(),
        ));
    }
    let internal = |e: UserError| OpError::Internal(e.to_string());
    if uid == caller.uid {
        ensure(d, caller).await.map_err(internal)?;
    }
    let mut user = refresh(d, uid)
        .await
        .map_err(internal)?
        .ok_or_else(|| OpError::NotFound(format!("no user with uid {uid}")))?;
    if uid != caller.uid {
        // The private key and the token go to their owner alone.
        user.ssh_private_key = None;
        user.token = None;
    }
    user.token_hash = None;
    Ok(user)
}

/// `user.me`: the caller's user record (made at first contact).
pub async fn me(d: &Daemon, caller: &Caller) -> Result<User, OpError> {
    let mut user = ensure(d, caller)
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?;
    user.token_hash = None;
    Ok(user)
}
