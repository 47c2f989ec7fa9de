//! The only code that touches sled: typed trees for runs, jobs, fleets, instances, events and log offsets.
//!
//! Values are JSON; keys are big-endian so scans come out in order. Every mutation that a client
//! is told about is followed by [`Store::flush`] before the reply. Status changes of runs, jobs
//! and instances are turned into events here, in the same transaction as the change.

use flotilla_protocol::model::{Event, Fleet, Instance, Job, Run, User};
use flotilla_protocol::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// Bumped when the layout of the trees changes; migrations run at open.
pub const SCHEMA_VERSION: u32 = 1;

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
    #[error("the state store has schema version {found}, newer than this flotillad ({supported}); upgrade flotillad")]
    TooNew { found: u32, supported: u32 },
    #[error("{0} not found")]
    NotFound(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An event before it has its sequence number.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub kind: &'static str,
    pub resource: String,
    pub old_status: Option<String>,
    pub new_status: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    runs: sled::Tree,
    run_names: sled::Tree,
    jobs: sled::Tree,
    fleets: sled::Tree,
    instances: sled::Tree,
    events: sled::Tree,
    log_offsets: sled::Tree,
    users: sled::Tree,
    /// Serialises read-modify-write cycles so that two writers never lose each other's change.
    write_lock: Mutex<()>,
    /// Unfinished runs with their jobs, decoded: what the loops and the default listing read.
    /// Written through on every change; finished runs are read from sled when asked for.
    active: RwLock<BTreeMap<u64, Arc<Run>>>,
}

fn be(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn job_key(run_id: u64, replica: u32, job: u32) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&run_id.to_be_bytes());
    k[8..12].copy_from_slice(&replica.to_be_bytes());
    k[12..].copy_from_slice(&job.to_be_bytes());
    k
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
            log_offsets: t("log_offsets")?,
            users: t("users")?,
            db,
            write_lock: Mutex::new(()),
            active: RwLock::new(BTreeMap::new()),
        };
        store.migrate()?;
        let active: BTreeMap<u64, Arc<Run>> = store
            .list_runs()?
            .into_iter()
            .filter(|r| !r.status.is_finished())
            .map(|r| (r.id, Arc::new(r)))
            .collect();
        *store.active.write().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(store)
    }

    fn cache_put(&self, run: &Run) {
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        if run.status.is_finished() {
            active.remove(&run.id);
        } else {
            active.insert(run.id, Arc::new(run.clone()));
        }
    }

    /// Unfinished runs with their jobs, oldest first, from memory.
    pub fn active_runs(&self) -> Vec<Arc<Run>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The most recently submitted run.
    pub fn last_run(&self) -> Result<Option<Run>> {
        match self.runs.last()? {
            Some((k, _)) => {
                self.get_run(u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])))
            }
            None => Ok(None),
        }
    }

    fn migrate(&self) -> Result<()> {
        let found = match self.meta.get("schema_version")? {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0),
            None => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        // Version 0 is an empty store; there is nothing older to migrate from yet.
        if found < SCHEMA_VERSION {
            self.meta
                .insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
            self.db.flush()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .meta
            .get("schema_version")?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Makes every change so far durable. Call before acknowledging a change to a client.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// A fresh id, unique for the life of the store.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()? + 1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- runs and jobs ----

    fn load_jobs(&self, run_id: u64) -> Result<Vec<Job>> {
        self.jobs
            .scan_prefix(be(run_id))
            .map(|kv| {
                let (_, v) = kv?;
                decode("jobs", &v)
            })
            .collect()
    }

    fn load_run(&self, id: u64) -> Result<Option<Run>> {
        if let Some(r) = self
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(Some(Run::clone(r)));
        }
        let Some(v) = self.runs.get(be(id))? else {
            return Ok(None);
        };
        let mut run: Run = decode("runs", &v)?;
        run.jobs = self.load_jobs(id)?;
        Ok(Some(run))
    }

    pub fn get_run(&self, id: u64) -> Result<Option<Run>> {
        self.load_run(id)
    }

    /// The latest run with this name.
    pub fn run_by_name(&self, name: &str) -> Result<Option<Run>> {
        match self.run_names.get(name.as_bytes())? {
            Some(id) => {
                let id = u64::from_be_bytes(id.as_ref().try_into().unwrap_or([0; 8]));
                self.load_run(id)
            }
            None => Ok(None),
        }
    }

    /// All runs, oldest first, with their jobs.
    pub fn list_runs(&self) -> Result<Vec<Run>> {
        let mut runs: Vec<Run> = Vec::new();
        for kv in self.runs.iter() {
            let (_, v) = kv?;
            runs.push(decode("runs", &v)?);
        }
        // One pass over the jobs tree, grouped by run id (keys are ordered the same way).
        let mut idx = 0;
        for kv in self.jobs.iter() {
            let (k, v) = kv?;
            let run_id = u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]));
            while idx < runs.len() && runs[idx].id < run_id {
                idx += 1;
            }
            if idx < runs.len() && runs[idx].id == run_id {
                runs[idx].jobs.push(decode("jobs", &v)?);
            }
        }
        Ok(runs)
    }

    pub fn count_runs(&self) -> usize {
        self.runs.len()
    }

    /// Stores a new run with its jobs, and points its name at it, in one transaction.
    /// Returns the events of the submission.
    pub fn insert_run(&self, run: &Run) -> Result<Vec<Event>> {
        let _g = self.lock();
        let mut drafts = vec![EventDraft {
            kind: "run",
            resource: run.name.clone(),
            old_status: None,
            new_status: Some(run.status.to_string()),
            reason: None,
            message: Some(format!("submitted by {}", run.user)),
        }];
        for j in &run.jobs {
            drafts.push(EventDraft {
                kind: "job",
                resource: format!("{}/{}/{}", run.name, j.replica_num, j.job_num),
                old_status: None,
                new_status: Some(j.current.status.to_string()),
                reason: None,
                message: None,
            });
        }
        self.write_run_locked(run, None, drafts)
    }

    fn write_run_locked(
        &self,
        run: &Run,
        old: Option<&Run>,
        drafts: Vec<EventDraft>,
    ) -> Result<Vec<Event>> {
        let mut bare = run.clone();
        bare.jobs.clear();
        let run_bytes = encode(&bare);
        let jobs: Vec<([u8; 16], Vec<u8>)> = run
            .jobs
            .iter()
            .filter(|j| {
                old.and_then(|o| o.job(j.replica_num, j.job_num))
                    .is_none_or(|prev| prev != *j)
            })
            .map(|j| (job_key(run.id, j.replica_num, j.job_num), encode(j)))
            .collect();
        let now = Timestamp::now();
        let seqs: Vec<u64> = drafts
            .iter()
            .map(|_| self.next_id())
            .collect::<Result<_>>()?;
        let events: Vec<Event> = drafts
            .into_iter()
            .zip(seqs)
            .map(|(d, seq)| Event {
                seq,
                time: now,
                kind: d.kind.into(),
                resource: d.resource,
                old_status: d.old_status,
                new_status: d.new_status,
                reason: d.reason,
                message: d.message,
            })
            .collect();
        let event_bytes: Vec<([u8; 8], Vec<u8>)> =
            events.iter().map(|e| (be(e.seq), encode(e))).collect();
        (&self.runs, &self.run_names, &self.jobs, &self.events)
            .transaction(|(runs, names, jobs_t, events_t)| -> TxResult<()> {
                runs.insert(&be(run.id), run_bytes.as_slice())?;
                names.insert(run.name.as_bytes(), &be(run.id))?;
                for (k, v) in &jobs {
                    jobs_t.insert(k, v.as_slice())?;
                }
                for (k, v) in &event_bytes {
                    events_t.insert(k, v.as_slice())?;
                }
                Ok(())
            })
            .map_err(tx_err)?;
        self.cache_put(run);
        Ok(events)
    }

    /// Reads a run, lets `f` change it, writes it back with an event per status change.
    /// `f` returns a value for the caller; it must not do I/O.
    pub fn update_run<T>(
        &self,
        id: u64,
        f: impl FnOnce(&mut Run) -> T,
    ) -> Result<(Run, T, Vec<Event>)> {
        let _g = self.lock();
        let old = self
            .load_run(id)?
            .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
        let mut run = old.clone();
        let out = f(&mut run);
        if run == old {
            return Ok((run, out, Vec::new()));
        }
        let drafts = status_changes(&old, &run);
        let events = self.write_run_locked(&run, Some(&old), drafts)?;
        Ok((run, out, events))
    }

    /// Removes a finished run and its jobs (their logs are removed by the caller); the event
    /// says `deleted`.
    pub fn delete_run(&self, id: u64) -> Result<Vec<Event>> {
        let _g = self.lock();
        let Some(run) = self.load_run(id)? else {
            return Ok(Vec::new());
        };
        let keys: Vec<[u8; 16]> = run
            .jobs
            .iter()
            .map(|j| job_key(id, j.replica_num, j.job_num))
            .collect();
        let subs: Vec<u64> = run
            .jobs
            .iter()
            .flat_map(|j| {
                j.previous_submissions
                    .iter()
                    .map(|s| s.id)
                    .chain([j.current.id])
            })
            .collect();
        (&self.runs, &self.run_names, &self.jobs, &self.log_offsets)
            .transaction(|(runs, names, jobs_t, offsets)| -> TxResult<()> {
                runs.remove(&be(id))?;
                if names.get(run.name.as_bytes())?.as_deref() == Some(&be(id)[..]) {
                    names.remove(run.name.as_bytes())?;
                }
                for k in &keys {
                    jobs_t.remove(k)?;
                }
                for s in &subs {
                    offsets.remove(&be(*s))?;
                }
                Ok(())
            })
            .map_err(tx_err)?;
        self.active
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.append_events_locked(vec![EventDraft {
            kind: "run",
            resource: run.name.clone(),
            old_status: Some(run.status.to_string()),
            new_status: None,
            reason: None,
            message: Some("deleted".into()),
        }])
    }

    // ---- fleets and instances ----

    pub fn put_fleet(&self, fleet: &Fleet) -> Result<()> {
        let mut bare = fleet.clone();
        bare.instances.clear();
        self.fleets.insert(fleet.name.as_bytes(), encode(&bare))?;
        Ok(())
    }

    pub fn get_fleet(&self, name: &str) -> Result<Option<Fleet>> {
        match self.fleets.get(name.as_bytes())? {
            Some(v) => {
                let mut f: Fleet = decode("fleets", &v)?;
                f.instances = self
                    .list_instances()?
                    .into_iter()
                    .filter(|i| i.fleet == f.name)
                    .collect();
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// Fleets by name, each with its instances.
    pub fn list_fleets(&self) -> Result<Vec<Fleet>> {
        let instances = self.list_instances()?;
        let mut out = Vec::new();
        for kv in self.fleets.iter() {
            let (_, v) = kv?;
            let mut f: Fleet = decode("fleets", &v)?;
            f.instances = instances
                .iter()
                .filter(|i| i.fleet == f.name)
                .cloned()
                .collect();
            out.push(f);
        }
        Ok(out)
    }

    pub fn list_instances(&self) -> Result<Vec<Instance>> {
        self.instances
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("instances", &v)
            })
            .collect()
    }

    pub fn get_instance(&self, id: u64) -> Result<Option<Instance>> {
        match self.instances.get(be(id))? {
            Some(v) => Ok(Some(decode("instances", &v)?)),
            None => Ok(None),
        }
    }

    /// Writes an instance, with an event when its status or reachability changed.
    pub fn put_instance(&self, inst: &Instance) -> Result<Vec<Event>> {
        let _g = self.lock();
        let old = self.get_instance(inst.id)?;
        let mut drafts = Vec::new();
        let old_status = old.as_ref().map(|o| o.status);
        if old_status != Some(inst.status)
            || old.as_ref().map(|o| o.unreachable) != Some(inst.unreachable)
        {
            drafts.push(EventDraft {
                kind: "instance",
                resource: format!("{}/{}", inst.fleet, inst.name),
                old_status: old_status.map(|s| s.to_string()),
                new_status: Some(inst.status.to_string()),
                reason: inst.termination_reason.clone(),
                message: if inst.unreachable {
                    Some("unreachable".into())
                } else {
                    inst.error.clone()
                },
            });
        }
        self.instances.insert(be(inst.id), encode(inst))?;
        self.append_events_locked(drafts)
    }

    /// Removes an instance record (its host is released, not touched).
    pub fn delete_instance(&self, inst: &Instance, reason: &str) -> Result<Vec<Event>> {
        let _g = self.lock();
        self.instances.remove(be(inst.id))?;
        self.append_events_locked(vec![EventDraft {
            kind: "instance",
            resource: format!("{}/{}", inst.fleet, inst.name),
            old_status: Some(inst.status.to_string()),
            new_status: Some("terminated".into()),
            reason: Some(reason.to_string()),
            message: None,
        }])
    }

    /// Removes a fleet record (its instances first, with [`Store::delete_instance`]).
    pub fn delete_fleet(&self, name: &str) -> Result<Vec<Event>> {
        let _g = self.lock();
        self.fleets.remove(name.as_bytes())?;
        self.append_events_locked(vec![EventDraft {
            kind: "fleet",
            resource: name.to_string(),
            old_status: Some("active".into()),
            new_status: Some("terminated".into()),
            reason: Some("deleted".into()),
            message: None,
        }])
    }

    // ---- users ----

    pub fn get_user(&self, uid: u32) -> Result<Option<User>> {
        match self.users.get(uid.to_be_bytes())? {
            Some(v) => Ok(Some(decode("users", &v)?)),
            None => Ok(None),
        }
    }

    pub fn put_user(&self, user: &User) -> Result<()> {
        self.users.insert(user.uid.to_be_bytes(), encode(user))?;
        Ok(())
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.users
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("users", &v)
            })
            .collect()
    }

    // ---- events ----

    fn append_events_locked(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>> {
        let now = Timestamp::now();
        let mut out = Vec::with_capacity(drafts.len());
        for d in drafts {
            let e = Event {
                seq: self.next_id()?,
                time: now,
                kind: d.kind.into(),
                resource: d.resource,
                old_status: d.old_status,
                new_status: d.new_status,
                reason: d.reason,
                message: d.message,
            };
            self.events.insert(be(e.seq), encode(&e))?;
            out.push(e);
        }
        Ok(out)
    }

    pub fn append_events(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>> {
        let _g = self.lock();
        self.append_events_locked(drafts)
    }

    /// Events with `seq > since`, oldest first, at most `limit`.
    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        self.events
            .range(be(since.saturating_add(1))..)
            .take(limit)
            .map(|kv| {
                let (_, v) = kv?;
                decode("events", &v)
            })
            .collect()
    }

    /// The last `n` events, oldest first.
    pub fn last_events(&self, n: usize) -> Result<Vec<Event>> {
        let mut v: Vec<Event> = self
            .events
            .iter()
            .rev()
            .take(n)
            .map(|kv| {
                let (_, v) = kv?;
                decode("events", &v)
            })
            .collect::<Result<_>>()?;
        v.reverse();
        Ok(v)
    }

    pub fn last_event_seq(&self) -> Result<u64> {
        Ok(match self.events.last()? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        })
    }

    // ---- log offsets ----

    /// How many bytes of a submission's host log the daemon has copied.
    pub fn log_offset(&self, submission: u64) -> Result<u64> {
        Ok(self
            .log_offsets
            .get(be(submission))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    pub fn set_log_offset(&self, submission: u64, offset: u64) -> Result<()> {
        self.log_offsets.insert(be(submission), &be(offset))?;
        Ok(())
    }
}

/// The events that the change from `old` to `new` makes: one per run or job status change.
fn status_changes(old: &Run, new: &Run) -> Vec<EventDraft> {
    let mut out = Vec::new();
    if old.status != new.status {
        out.push(EventDraft {
            kind: "run",
            resource: new.name.clone(),
            old_status: Some(old.status.to_string()),
            new_status: Some(new.status.to_string()),
            reason: new.termination_reason.map(|r| r.to_string()),
            message: new.status_message.clone(),
        });
    }
    for j in &new.jobs {
        let prev = old.job(j.replica_num, j.job_num);
        let prev_status = prev.map(|p| {
            if p.current.id == j.current.id {
                p.current.status
            } else {
                // A new submission: its previous state is "none".
                j.current.status
            }
        });
        let is_new_submission = prev.is_some_and(|p| p.current.id != j.current.id);
        let newly_waiting = !is_new_submission
            && prev_status == Some(j.current.status)
            && j.current.waiting_reason.is_some()
            && prev.and_then(|p| p.current.waiting_reason.as_ref())
                != j.current.waiting_reason.as_ref();
        if newly_waiting {
            out.push(EventDraft {
                kind: "job",
                resource: format!("{}/{}/{}", new.name, j.replica_num, j.job_num),
                old_status: prev_status.map(|s| s.to_string()),
                new_status: Some(j.current.status.to_string()),
                reason: j.current.waiting_reason.clone(),
                message: Some("waiting".into()),
            });
        }
        if prev_status != Some(j.current.status) || is_new_submission {
            out.push(EventDraft {
                kind: "job",
                resource: format!("{}/{}/{}", new.name, j.replica_num, j.job_num),
                old_status: if is_new_submission {
                    None
                } else {
                    prev_status.map(|s| s.to_string())
                },
                new_status: Some(j.current.status.to_string()),
                reason: j
                    .current
                    .termination_reason
                    .map(|r| r.to_string())
                    .or_else(|| j.current.waiting_reason.clone()),
                message: j.current.termination_message.clone().or_else(|| {
                    j.current
                        .instance
                        .as_ref()
                        .filter(|_| j.current.status.is_on_host())
                        .map(|i| format!("on {i}"))
                }),
            });
        }
    }
    out
}
