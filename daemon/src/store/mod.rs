//! Bottom layer: the only code that touches sled. Typed trees for runs and jobs (`runs`),
//! fleets and instances (`fleets`), users (`users`), secrets (`secrets`, sealed), uploaded
//! archives (`uploads`, metadata only) and events
//! (`events`); the schema version and
//! its migrations (`schema`).
//!
//! Values are JSON; keys are big-endian so scans come out in order. Every mutation that a client
//! is told about is followed by [`Store::flush`] before the reply. Status changes of runs, jobs
//! and instances are turned into events here, in the same transaction as the change.

mod events;
mod failure;
mod fleets;
mod runs;
mod schema;
mod secrets;
mod uploads;
mod users;

pub use events::{status_changes, EventDraft};
pub use schema::SCHEMA_VERSION;

use crate::sync::{LockExt, RwLockExt};
use flotilla_protocol::model::Run;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store at {path}: {source}; is another flotillad using this data dir?")]
    Open { path: String, source: sled::Error },
    #[error("state store error: {0} (check free disk space in the data dir)")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in tree {tree}: {source}")]
    Decode {
        tree: &'static str,
        source: serde_json::Error,
    },
    #[error("corrupt key in tree {tree}: {len} bytes, not {expected}")]
    BadKey {
        tree: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("the state store has schema version {found}, newer than this flotillad ({supported}); upgrade flotillad")]
    TooNew { found: u32, supported: u32 },
    #[error("{0} not found")]
    NotFound(String),
    #[error("the state store failed and refuses writes until flotillad restarts: {0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    runs: sled::Tree,
    run_names: sled::Tree,
    jobs: sled::Tree,
    fleets: sled::Tree,
    instances: sled::Tree,
    events: sled::Tree,
    users: sled::Tree,
    /// Secrets by name, their values sealed.
    secrets: sled::Tree,
    /// Uploaded archives by hash: size and owners (the bytes are files, see `crate::blobs`).
    uploads: sled::Tree,
    /// Serialises read-modify-write cycles so that two writers never lose each other's change.
    write_lock: Mutex<()>,
    /// Unfinished runs with their jobs, decoded: what the loops and the default listing read.
    /// Written through on every change; finished runs are read from sled when asked for.
    active: RwLock<BTreeMap<u64, Arc<Run>>>,
    /// Runs inserted since the last successful flush.
    unflushed: Mutex<Vec<u64>>,
    /// The first I/O error, after which every write is refused.
    failure: failure::Failure,
}

fn be(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The id that a big-endian key holds.
fn id_of(tree: &'static str, key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StoreError::BadKey {
        tree,
        len: key.len(),
        expected: 8,
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own types always serialise; a failure here is a bug, not bad input.
    serde_json::to_vec(v).expect("model types serialise to JSON")
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode { tree, source })
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let t = |name: &str| db.open_tree(name);
        let store = Store {
            meta: t("meta")?,
            runs: t("runs")?,
            run_names: t("run_names")?,
            jobs: t("jobs")?,
            fleets: t("fleets")?,
            instances: t("instances")?,
            events: t("events")?,
            users: t("users")?,
            secrets: t("secrets")?,
            uploads: t("uploads")?,
            db,
            write_lock: Mutex::new(()),
            active: RwLock::new(BTreeMap::new()),
            unflushed: Mutex::new(Vec::new()),
            failure: failure::Failure::default(),
        };
        store.migrate()?;
        let active: BTreeMap<u64, Arc<Run>> = store
            .list_runs()?
            .into_iter()
            .filter(|r| !r.status.is_finished())
            .map(|r| (r.id, Arc::new(r)))
            .collect();
        *store.active.write_locked() = active;
        Ok(store)
    }

    /// Makes every change so far durable. Call before acknowledging a change to a client.
    /// A failed flush marks the store failed and takes the runs inserted since the last good
    /// flush out of memory.
    pub async fn flush(&self) -> Result<()> {
        if let Some(first) = self.failure() {
            self.forget_unflushed();
            return Err(StoreError::Failed(first));
        }
        let pending = self.unflushed.locked().clone();
        let flushed = self.db.flush_async().await.map_err(StoreError::from);
        match flushed {
            Ok(_) => {
                self.unflushed.locked().retain(|id| !pending.contains(id));
                Ok(())
            }
            Err(e) => {
                self.mark_failed_on(&e);
                self.forget_unflushed();
                Err(e)
            }
        }
    }

    /// A fresh id, unique for the life of the store.
    pub fn next_id(&self) -> Result<u64> {
        self.writing(|| Ok(self.db.generate_id()? + 1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.locked()
    }
}

#[cfg(test)]
mod tests;
