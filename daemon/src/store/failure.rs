//! Bottom layer, store: a store that sled reported an I/O error from. Once sled has hit one (a
//! full or failing disk), it keeps refusing writes until it is reopened, so the store marks itself
//! failed: every later write is refused with the first error, and the daemon, which watches
//! [`Store::failed`], exits with that message so that its supervisor (systemd) restarts it and the
//! store is reopened. Runs inserted since the last successful flush leave the cache of active runs
//! when a flush fails, so nothing that a client was told failed stays behind in memory.

use super::{Result, Store, StoreError};
use crate::sync::LockExt;
use tokio::sync::watch;

/// The first I/O error of the store, once there was one.
pub(super) struct Failure {
    first: watch::Sender<Option<String>>,
}

impl Default for Failure {
    fn default() -> Self {
        Failure {
            first: watch::channel(None).0,
        }
    }
}

/// Errors after which sled refuses writes until it is reopened.
fn breaks_the_store(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Sled(
            sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
        )
    )
}

impl Store {
    /// Runs a write: refused once the store has failed; an I/O error marks it failed.
    pub(super) fn writing<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some(first) = self.failure() {
            return Err(StoreError::Failed(first));
        }
        let result = write();
        if let Err(e) = &result {
            self.mark_failed_on(e);
        }
        result
    }

    pub(super) fn mark_failed_on(&self, e: &StoreError) {
        if !breaks_the_store(e) {
            return;
        }
        let message = e.to_string();
        self.failure.first.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            tracing::error!("the state store failed: {message}; it refuses writes from now on");
            *first = Some(message);
            true
        });
    }

    /// The first I/O error of the store, when there was one: it refuses every write since.
    pub fn failure(&self) -> Option<String> {
        self.failure.first.borrow().clone()
    }

    /// Waits until the store has failed; returns the first error.
    pub async fn failed(&self) -> String {
        let mut rx = self.failure.first.subscribe();
        let first = match rx.wait_for(|first| first.is_some()).await {
            Ok(first) => first.clone(),
            Err(_) => None,
        };
        match first {
            Some(first) => first,
            // The sender lives as long as the store; without it nothing can fail.
            None => std::future::pending().await,
        }
    }

    /// A flush failed: the runs inserted since the last good flush are not kept in memory.
    pub(super) fn forget_unflushed(&self) {
        let ids = std::mem::take(&mut *self.unflushed.locked());
        for id in ids {
            self.cache_forget(id);
        }
    }
}
