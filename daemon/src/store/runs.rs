//! Bottom layer, store: runs and their jobs, with the in-memory cache of unfinished runs. Every
//! write records the events of its status changes in the same transaction.

use super::events::{status_changes, submission_events, EventDraft};
use super::{be, decode, encode, id_of, tx_err, Result, Store, StoreError, TxResult};
use crate::sync::{LockExt, RwLockExt};
use flotilla_protocol::model::{Event, Job, Run};
use sled::transaction::Transactional;
use std::sync::Arc;

fn job_key(run_id: u64, replica: u32, job: u32) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&run_id.to_be_bytes());
    k[8..12].copy_from_slice(&replica.to_be_bytes());
    k[12..].copy_from_slice(&job.to_be_bytes());
    k
}

impl Store {
    pub(super) fn cache_put(&self, run: &Run) {
        let mut active = self.active.write_locked();
        if run.status.is_finished() {
            active.remove(&run.id);
        } else {
            active.insert(run.id, Arc::new(run.clone()));
        }
    }

    pub(super) fn cache_forget(&self, id: u64) {
        self.active.write_locked().remove(&id);
    }

    /// Unfinished runs with their jobs, oldest first, from memory.
    pub fn active_runs(&self) -> Vec<Arc<Run>> {
        self.active.read_locked().values().cloned().collect()
    }

    /// The most recently submitted run.
    pub fn last_run(&self) -> Result<Option<Run>> {
        match self.runs.last()? {
            Some((k, _)) => self.get_run(id_of("runs", &k)?),
            None => Ok(None),
        }
    }

    // ---- runs and jobs ----

    pub(super) fn load_jobs(&self, run_id: u64) -> Result<Vec<Job>> {
        self.jobs
            .scan_prefix(be(run_id))
            .map(|kv| {
                let (_, v) = kv?;
                decode("jobs", &v)
            })
            .collect()
    }

    pub(super) fn load_run(&self, id: u64) -> Result<Option<Run>> {
        if let Some(r) = self.active.read_locked().get(&id) {
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
                let id = id_of("run_names", &id)?;
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
            let run_id = id_of("jobs", k.get(..8).unwrap_or(&k))?;
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
        self.writing(|| {
            let _g = self.lock();
            let events = self.write_run_locked(run, None, submission_events(run))?;
            // Until a flush makes it durable: a failed flush takes it out of memory again.
            self.unflushed.locked().push(run.id);
            Ok(events)
        })
    }

    pub(super) fn write_run_locked(
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
        let events = self.number_events(drafts)?;
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
        self.writing(|| {
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
        })
    }

    /// Removes a finished run and its jobs (their logs are removed by the caller); the event
    /// says `deleted`.
    pub fn delete_run(&self, id: u64) -> Result<Vec<Event>> {
        self.writing(|| {
            let _g = self.lock();
            let Some(run) = self.load_run(id)? else {
                return Ok(Vec::new());
            };
            let keys: Vec<[u8; 16]> = run
                .jobs
                .iter()
                .map(|j| job_key(id, j.replica_num, j.job_num))
                .collect();
            (&self.runs, &self.run_names, &self.jobs)
                .transaction(|(runs, names, jobs_t)| -> TxResult<()> {
                    runs.remove(&be(id))?;
                    if names.get(run.name.as_bytes())?.as_deref() == Some(&be(id)[..]) {
                        names.remove(run.name.as_bytes())?;
                    }
                    for k in &keys {
                        jobs_t.remove(k)?;
                    }
                    Ok(())
                })
                .map_err(tx_err)?;
            self.active.write_locked().remove(&id);
            self.append_events_locked(vec![EventDraft {
                kind: "run",
                resource: run.name.clone(),
                old_status: Some(run.status.to_string()),
                new_status: None,
                reason: None,
                message: Some("deleted".into()),
            }])
        })
    }
}
