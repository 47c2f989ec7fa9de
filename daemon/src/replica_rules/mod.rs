//! Handle layer, pure: which replicas of a service exist. From a service run, the readiness and
//! requests in flight of its replicas and its traffic, [`plan`] decides (as dstack's run
//! pipeline does for a service, `pipeline_tasks/runs/active.py`):
//!
//! - each replica group's desired count ([`scaling`]);
//! - replicas to start: a group below its count gets new submissions, on its finished
//!   replicas first (a failed replica is replaced this way, visible in its job's history), then
//!   on new replica numbers;
//! - replicas to stop (`scaled_down`): a group above its count stops its least important
//!   replicas (out of date first, then submitted, provisioning, running but not ready);
//! - a rolling update: a group with replicas of an older deployment (`Job::deployment_num`)
//!   is not scaled; it gets up to one extra replica of the new deployment (dstack's surge of
//!   one), and an old replica is stopped only once the ready replicas exceed the count (or at
//!   once while it is not ready), so the service is never left without a ready replica;
//! - replicas of groups no longer in the configuration are stopped.
//!
//! A replica to stop with requests in flight is drained: it takes no new request and is
//! stopped once its last request is answered. Services have one job per replica.

pub mod probes;
pub mod scaling;

use crate::scheduler::retry_delay;
use flotilla_protocol::config::{ServiceConfig, DEFAULT_REPLICA_GROUP};
use flotilla_protocol::model::{Job, JobStatus, Run};
use flotilla_protocol::Timestamp;
use scaling::{desired_count, Traffic};
use std::collections::{BTreeMap, HashMap};

/// dstack's `ROLLING_DEPLOYMENT_MAX_SURGE`: at most one extra replica during a rolling update.
pub const MAX_SURGE: u32 = 1;

/// What the loop knows of a running replica now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub ready: bool,
    /// Requests in flight on it (counted by the proxy).
    pub in_flight: u32,
}

/// A replica to start: a new submission of replica `replica_num` of `group` (a new job when
/// `new_job`), placed no sooner than `not_before` (a replica that keeps failing backs off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub group: String,
    pub replica_num: u32,
    pub new_job: bool,
    pub not_before: Option<Timestamp>,
}

/// What to do with a service run now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Each group's desired count.
    pub desired: BTreeMap<String, u32>,
    /// The desired counts changed (the run's `last_scaled_at` becomes now).
    pub scaled: bool,
    pub start: Vec<Start>,
    /// Replica numbers to stop now (`scaled_down`).
    pub stop: Vec<u32>,
    /// Submissions to stop once their requests in flight are answered: they take no new one.
    pub draining: Vec<u64>,
}

/// The group a job belongs to (jobs of services submitted before groups: `0`).
pub fn group_of(job: &Job) -> &str {
    job.replica_group
        .as_deref()
        .unwrap_or(DEFAULT_REPLICA_GROUP)
}

/// Whether a replica is active (on its way up or running, not stopping).
fn is_active(job: &Job) -> bool {
    !job.current.status.is_finished()
        && job.current.status != JobStatus::Terminating
        && job.current.stop.is_none()
}

/// Whether a replica was stopped for a reason that ends its run (not a scale-down, not a
/// failure the replica rules replace).
fn ends_the_run(job: &Job) -> bool {
    use flotilla_protocol::model::JobTerminationReason as R;
    let reason = job
        .current
        .stop
        .as_ref()
        .map(|s| s.reason)
        .or(job.current.termination_reason);
    matches!(
        reason,
        Some(
            R::MaxDurationExceeded
                | R::InactivityDurationExceeded
                | R::TerminatedByUser
                | R::AbortedByUser
        )
    )
}

/// How much a replica matters (dstack's importance): submitted 0, provisioning or pulling 1,
/// running but not ready 2, ready 3.
fn importance(job: &Job, live: &HashMap<u64, Live>) -> u8 {
    match job.current.status {
        JobStatus::Submitted => 0,
        JobStatus::Provisioning | JobStatus::Pulling => 1,
        _ if live.get(&job.current.id).is_some_and(|l| l.ready) => 3,
        _ => 2,
    }
}

/// How long a replica whose last submissions failed waits before its next: none after one
/// failure (it is replaced at once), then the retry backoff (15s, 30s, ...), scaled.
fn backoff(job: &Job, now: Timestamp, delay_scale: f64) -> Option<Timestamp> {
    let failures = std::iter::once(&job.current)
        .chain(job.previous_submissions.iter().rev())
        .take_while(|s| s.status == JobStatus::Failed)
        .count() as u32;
    if failures < 2 {
        return None;
    }
    let delay = retry_delay(failures - 2).as_millis() as f64 * delay_scale.max(0.0);
    let from = job.current.finished_at.unwrap_or(now);
    Some(Timestamp(from.millis() + delay as u64)).filter(|t| *t > now)
}

/// The decisions for a service run at `now` (see the module's comment). `live`: readiness and
/// requests in flight by submission id; `traffic(window_secs)`: the run's traffic over a window.
pub fn plan(
    run: &Run,
    service: &ServiceConfig,
    live: &HashMap<u64, Live>,
    traffic: impl Fn(u64) -> Traffic,
    now: Timestamp,
    delay_scale: f64,
) -> Plan {
    // A run whose replicas were stopped for a reason of the whole run (`max_duration`, a
    // user's stop) is ending: nothing is started or stopped any more.
    if run.termination_reason.is_some() || run.jobs.iter().any(ends_the_run) {
        return Plan {
            desired: run.desired_replicas.clone(),
            ..Plan::default()
        };
    }
    let mut out = Plan::default();
    let mut next_replica = run
        .jobs
        .iter()
        .map(|j| j.replica_num + 1)
        .max()
        .unwrap_or(0);
    let mut to_stop: Vec<&Job> = Vec::new();
    let groups = service.scale_groups();
    for group in &groups {
        let jobs: Vec<&Job> = run
            .jobs
            .iter()
            .filter(|j| group_of(j) == group.name)
            .collect();
        let current = run.desired_replicas.get(group.name).copied().unwrap_or(
            // Not decided yet: the replicas created at apply.
            jobs.iter().filter(|j| is_active(j)).count() as u32,
        );
        let desired = desired_count(
            group.count,
            group.scaling,
            current,
            traffic(scaling::window_secs(group.scaling)),
            run.last_scaled_at,
            now,
        );
        out.scaled |= run
            .desired_replicas
            .get(group.name)
            .is_some_and(|before| *before != desired);
        out.desired.insert(group.name.to_string(), desired);
        let mut active: Vec<&Job> = jobs.iter().copied().filter(|j| is_active(j)).collect();
        // Up to date first, most important first, then by number (dstack's order); the ones
        // to stop are taken from the end.
        active.sort_by_key(|j| {
            (
                j.deployment_num < run.deployment_num,
                std::cmp::Reverse(importance(j, live)),
                j.replica_num,
            )
        });
        let reusable: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| j.current.status.is_finished())
            .collect();
        let out_of_date = active.iter().any(|j| j.deployment_num < run.deployment_num);
        let (start, stop) = if out_of_date {
            let non_terminated = jobs
                .iter()
                .filter(|j| !j.current.status.is_finished())
                .count() as u32;
            let start = (desired + MAX_SURGE).saturating_sub(non_terminated);
            let not_ready_old = active
                .iter()
                .filter(|j| j.deployment_num < run.deployment_num && importance(j, live) < 3)
                .count() as u32;
            let ready = active.iter().filter(|j| importance(j, live) == 3).count() as u32;
            (start, not_ready_old + ready.saturating_sub(desired))
        } else {
            let have = active.len() as u32;
            (desired.saturating_sub(have), have.saturating_sub(desired))
        };
        let mut reuse = reusable.into_iter();
        for _ in 0..start {
            let s = match reuse.next() {
                Some(j) => Start {
                    group: group.name.to_string(),
                    replica_num: j.replica_num,
                    new_job: false,
                    not_before: backoff(j, now, delay_scale),
                },
                None => {
                    next_replica += 1;
                    Start {
                        group: group.name.to_string(),
                        replica_num: next_replica - 1,
                        new_job: true,
                        not_before: None,
                    }
                }
            };
            out.start.push(s);
        }
        let n = (stop as usize).min(active.len());
        to_stop.extend(active[active.len() - n..].iter().rev());
    }
    // Replicas of groups no longer written.
    to_stop.extend(
        run.jobs
            .iter()
            .filter(|j| is_active(j) && !groups.iter().any(|g| g.name == group_of(j))),
    );
    for job in to_stop {
        match live.get(&job.current.id) {
            Some(l) if l.in_flight > 0 => out.draining.push(job.current.id),
            _ => out.stop.push(job.replica_num),
        }
    }
    out
}

#[cfg(test)]
mod tests;
