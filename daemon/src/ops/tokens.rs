//! Operations layer: users' tokens for services' HTTP endpoints (dstack's user tokens). Each
//! user has one, made at first contact; `user.me` returns it to its owner, `user.refresh_token`
//! replaces it. The store keeps it sealed with the daemon's key, beside its SHA-256, which is
//! what a request's `Authorization: Bearer TOKEN` is looked up by.

use super::users::{ensure, opened, sealed, UserError};
use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use flotilla_protocol::model::User;
use sha2::{Digest, Sha256};

/// What every token starts with (so that one found in a file is recognisable).
const PREFIX: &str = "flt_";

/// A fresh token: `flt_` and 64 hex digits (256 random bits).
pub fn new_token() -> Result<String, UserError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| UserError::Key(format!("no random bytes for a token: {e}")))?;
    Ok(format!("{PREFIX}{}", hex(&bytes)))
}

/// The token's SHA-256 in hex (what the store keeps to look it up).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}"); // writing to a String cannot fail
        s
    })
}

/// Gives `user` a new token (clear in the record; [`sealed`] seals it for the store).
pub fn give_token(user: &mut User) -> Result<(), UserError> {
    let token = new_token()?;
    user.token_hash = Some(token_hash(&token));
    user.token = Some(token);
    Ok(())
}

/// Who a bearer token belongs to: `(uid, name)`, or `None` for a token no user has.
pub fn authenticate(d: &Daemon, token: &str) -> Result<Option<(u32, String)>, OpError> {
    let wanted = token_hash(token);
    Ok(d.store()
        .list_users()?
        .into_iter()
        .find(|u| u.token_hash.as_deref() == Some(wanted.as_str()))
        .map(|u| (u.uid, u.name)))
}

/// `user.refresh_token`: a new token for the caller; the old one stops working at once.
pub async fn refresh(d: &Daemon, caller: &Caller) -> Result<User, OpError> {
    let internal = |e: UserError| OpError::Internal(e.to_string());
    let mut user = ensure(d, caller).await.map_err(internal)?;
    give_token(&mut user).map_err(internal)?;
    d.store().put_user(&sealed(d, &user).map_err(internal)?)?;
    let mut user = opened(d, user).map_err(internal)?;
    user.token_hash = None;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_looked_up_by_their_hash() {
        let a = new_token().expect("a token");
        let b = new_token().expect("a token");
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64, "{a}");
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
