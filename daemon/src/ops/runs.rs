//! Operations layer: runs. What `run.plan`, `run.apply`, `run.list`, `run.get`, `run.stop` and
//! `run.delete` do.

use super::offers::{self, OfferRequest};
use super::runs_access::{check_owner, visible_to};
use super::stops::carry_out_stops;
use super::OpError;
use super::{config_fields, runs_interpolation, runs_update, secrets, uploads};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::lifecycle::{new_submission, request_job_stop, scheduled_wait};
use crate::store::StoreError;
use flotilla_protocol::config::cron::next_start;
use flotilla_protocol::config::sites::sites;
use flotilla_protocol::config::{parse_configuration, ConfigErrors, RunConfiguration};
use flotilla_protocol::model::{
    ClusterKey, Job, JobTerminationReason, Run, RunArchive, RunStatus, RunTerminationReason,
};
use flotilla_protocol::rpc::{JobPlan, RunApplyParams, RunPlan};
use flotilla_protocol::Timestamp;
use std::collections::BTreeMap;

/// A parsed run configuration with its final name and resolved environment.
pub struct RunRequest {
    pub name: String,
    pub name_generated: bool,
    pub configuration: RunConfiguration,
    pub caller_env: BTreeMap<String, String>,
    /// The uploaded archives of its `files` and local `repos` (checked by [`apply_params`]).
    pub archives: Vec<RunArchive>,
}

/// Parses a run's file and refuses what this daemon would not honour: fields it does not
/// support ([`config_fields`]) and `${{ }}` references dstack would not resolve
/// ([`runs_interpolation`]), each at its line and column. `secret_names`: the secrets that exist.
pub fn parse_request(
    params: &RunApplyParams,
    secret_names: &[String],
) -> Result<RunRequest, OpError> {
    let file = params
        .file_name
        .clone()
        .unwrap_or_else(|| "configuration".into());
    let config = parse_configuration(&file, &params.configuration).map_err(OpError::Config)?;
    let Some(configuration) = config.as_run() else {
        return Err(OpError::Invalid(format!(
            "{file} is a {} configuration; run.apply takes a task, service or dev-environment (fleets and volumes are not supported yet)",
            config.type_name()
        )));
    };
    let missing: Vec<&str> = configuration
        .common()
        .env
        .bare_keys()
        .filter(|k| !params.env.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(OpError::Invalid(format!(
            "{file}: env: {} must be set in your environment (the configuration lists {} without a value)",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        )));
    }
    let mut configuration = configuration;
    check_fields(&file, params, &configuration, secret_names)?;
    runs_interpolation::apply_client_side(&mut configuration, &params.env)
        .map_err(|e| OpError::Invalid(format!("{file}: {e}")))?;
    let explicit = params
        .name
        .clone()
        .or_else(|| configuration.common().name.clone());
    if let Some(n) = &explicit {
        validate_name(n)?;
    }
    Ok(RunRequest {
        name_generated: explicit.is_none(),
        name: explicit.unwrap_or_default(),
        configuration,
        caller_env: params.env.clone(),
        archives: params.archives.clone(),
    })
}

/// The refusals and reference errors of a parsed file, all at once.
fn check_fields(
    file: &str,
    params: &RunApplyParams,
    configuration: &RunConfiguration,
    secret_names: &[String],
) -> Result<(), OpError> {
    let sites = sites(file, &params.configuration).map_err(|e| OpError::Config(e.into()))?;
    let mut errors = config_fields::refusals(file, configuration, &sites);
    errors.extend(runs_interpolation::check(
        file,
        configuration,
        &sites,
        &params.env,
        secret_names,
    ));
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(OpError::Config(ConfigErrors(errors)))
}

fn validate_name(n: &str) -> Result<(), OpError> {
    let ok = n.len() <= 60
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "run name {n:?} is invalid: use lowercase letters, digits and '-', starting with a letter (at most 60 characters)"
        )))
    }
}

const ADJECTIVES: &[&str] = &[
    "quick", "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively",
    "merry", "nice", "proud", "silly", "witty", "zesty", "bold", "crisp", "deft", "keen",
];
const ANIMALS: &[&str] = &[
    "fox", "otter", "panda", "lynx", "owl", "seal", "wolf", "yak", "hare", "crab", "moth", "newt",
    "orca", "puma", "swan", "toad", "wren", "bison", "koala", "lemur",
];

/// A free `adjective-animal-N` name.
pub fn generate_name(d: &Daemon, seed: u64) -> Result<String, StoreError> {
    let a = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
    let b = ANIMALS[((seed / 7) % ANIMALS.len() as u64) as usize];
    for n in 1.. {
        let name = format!("{a}-{b}-{n}");
        if d.store().run_by_name(&name)?.is_none() {
            return Ok(name);
        }
    }
    unreachable!("an unbounded range always yields a free name")
}

/// `run.apply`: parses the configuration and submits the run.
pub async fn apply_params(
    d: &Daemon,
    caller: &Caller,
    params: &RunApplyParams,
) -> Result<Run, OpError> {
    // Parsed on the blocking pool: a large file holds up no async worker.
    let owned = params.clone();
    let names = secrets::names(d)?;
    let mut req = tokio::task::spawn_blocking(move || parse_request(&owned, &names))
        .await
        .map_err(|e| OpError::Internal(format!("the configuration parser stopped: {e}")))??;
    req.configuration.common_mut().name = None;
    req.archives = uploads::for_run(d, caller, &req.configuration, &params.archives)?;
    let mut run = apply(d, caller, req).await?;
    run.configuration_path = params.file_name.clone();
    Ok(visible_to(caller, run))
}

/// `run.plan`: what `run.apply` would submit, with the offers each job could take now (the
/// same offers as `offer.list` for the run's profile).
pub fn plan(d: &Daemon, caller: &Caller, params: &RunApplyParams) -> Result<RunPlan, OpError> {
    let req = parse_request(params, &secrets::names(d)?)?;
    let common = req.configuration.common();
    let existing = if req.name_generated {
        None
    } else {
        d.store().run_by_name(&req.name)?
    };
    let current = existing.as_ref().map(|r| r.status.to_string());
    let update = existing
        .filter(|r| !r.status.is_finished())
        .map(|r| runs_update::preview(d, caller, &r, &req));
    let replicas = req.configuration.replicas().min.unwrap_or(1).max(1);
    let nodes = req.configuration.nodes().max(1);
    // The offers of each distinct resources (a task's node groups each ask for their own).
    let mut by_resources: Vec<(
        flotilla_protocol::config::ResourcesSpec,
        Vec<_>,
        usize,
        Option<f64>,
    )> = Vec::new();
    let mut jobs = Vec::new();
    for r in 0..replicas {
        for j in 0..nodes {
            let resources = req.configuration.job_resources(j);
            let at = match by_resources.iter().position(|(res, ..)| res == resources) {
                Some(at) => at,
                None => {
                    let mut request = OfferRequest::for_run(common);
                    request.requirements.resources = resources.clone();
                    let mut offers = offers::assemble(d, &request)?;
                    let total = offers.len();
                    let max_price = offers
                        .iter()
                        .map(|o| o.price)
                        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
                    offers.truncate(50);
                    by_resources.push((resources.clone(), offers, total, max_price));
                    by_resources.len() - 1
                }
            };
            let (_, offers, total, max_price) = &by_resources[at];
            jobs.push(JobPlan {
                replica_num: r,
                job_num: j,
                job_name: format!("{}-{j}-{r}", req.name),
                offers: offers.clone(),
                total_offers: *total,
                max_price: *max_price,
            });
        }
    }
    Ok(RunPlan {
        run_name: req.name.clone(),
        configuration_type: req.configuration.type_name().to_string(),
        user: caller.user.clone(),
        current_run_status: current,
        jobs,
        update,
    })
}

/// `run.list`: every run (`all`), newest first; else the unfinished runs, newest first, or
/// else the last run; others' runs without their contents (see [`visible_to`]).
pub fn list(d: &Daemon, caller: &Caller, all: bool) -> Result<Vec<Run>, OpError> {
    let runs: Vec<Run> = if all {
        let mut runs: Vec<Run> = d.store().list_runs()?;
        runs.reverse(); // newest first
        runs
    } else {
        let active = d.store().active_runs();
        if active.is_empty() {
            d.store().last_run()?.into_iter().collect()
        } else {
            active.iter().rev().map(|r| Run::clone(r)).collect()
        }
    };
    Ok(runs
        .into_iter()
        .map(|r| visible_to(caller, super::proxy::with_endpoint(d, r)))
        .collect())
}

/// `run.get`: the run, without its contents for others than its owner and the admins.
pub fn get(d: &Daemon, caller: &Caller, name: &str) -> Result<Run, OpError> {
    find_run(d, name).map(|r| visible_to(caller, super::proxy::with_endpoint(d, r)))
}

/// A non-root daemon runs every job as its own user: it takes runs from that user (and root)
/// alone, and says how a team shares one daemon.
fn check_can_run_as(caller: &Caller) -> Result<(), OpError> {
    let own = crate::caller::own_uid();
    if own == 0 || caller.uid == own || caller.uid == 0 {
        return Ok(());
    }
    let daemon_user = crate::caller::user_name(own);
    Err(OpError::Forbidden(format!(
        "this daemon runs as {daemon_user} and would run your job as {daemon_user}, not as {}; \
         a daemon shared by several users runs as root under systemd (see the README) and starts \
         each job as its submitter",
        caller.user
    )))
}

/// Stores a new run with one submitted job per node of each replica, and wakes the scheduler.
pub async fn apply(d: &Daemon, caller: &Caller, req: RunRequest) -> Result<Run, OpError> {
    check_can_run_as(caller)?;
    let id = d.store().next_id()?;
    let name = if req.name_generated {
        generate_name(
            d,
            id.wrapping_mul(2_654_435_761) ^ Timestamp::now().millis(),
        )?
    } else {
        req.name.clone()
    };
    if let Some(existing) = d.store().run_by_name(&name)? {
        // A running service takes the new configuration (dstack's in-place update).
        if !existing.status.is_finished()
            && matches!(existing.configuration, RunConfiguration::Service(_))
        {
            return runs_update::update(d, caller, existing, req).await;
        }
        if existing.uid != caller.uid {
            return Err(OpError::Forbidden(format!(
                "run {name} belongs to {}; give yours another name",
                existing.user
            )));
        }
        if !existing.status.is_finished() {
            return Err(OpError::Conflict(format!(
                "run {name} is still {}; stop it first (`flotilla stop {name}`) or give this one another name",
                existing.status
            )));
        }
        d.delete_run(&existing)?;
    }
    let now = Timestamp::now();
    let nodes = req.configuration.nodes().max(1);
    // A service starts each replica group's `min` replicas (0 for `replicas: 0..N`).
    let groups: Vec<(Option<String>, u32)> = match &req.configuration {
        RunConfiguration::Service(s) => s
            .scale_groups()
            .iter()
            .map(|g| (Some(g.name.to_string()), g.count.min.unwrap_or(0)))
            .collect(),
        _ => vec![(None, 1)],
    };
    let mut jobs = Vec::new();
    let mut replica_num = 0;
    for (group, count) in &groups {
        for _ in 0..*count {
            for job_num in 0..nodes {
                jobs.push(Job {
                    replica_num,
                    job_num,
                    job_name: format!("{name}-{job_num}-{replica_num}"),
                    replica_group: group.clone(),
                    deployment_num: 0,
                    current: new_submission(d.store().next_id()?, 0, now),
                    previous_submissions: Vec::new(),
                });
            }
            replica_num += 1;
        }
    }
    let desired_replicas = groups
        .iter()
        .filter_map(|(g, count)| g.clone().map(|g| (g, *count)))
        .collect();
    let next_triggered_at = schedule_first_start(&req.configuration, &mut jobs, now)?;
    let mut configuration = req.configuration;
    // The registry password is kept sealed with the daemon's key, never in clear.
    if let Some(auth) = configuration.common_mut().registry_auth.as_mut() {
        auth.password = d
            .sealing()
            .seal(&auth.password)
            .map_err(|e| OpError::Invalid(format!("registry_auth: {e}")))?;
    }
    let cluster_key = cluster_key(d, &configuration, &name)?;
    let run = Run {
        id,
        name,
        user: caller.user.clone(),
        uid: caller.uid,
        // A `replicas: 0..N` service starts with no replica: pending until a request comes.
        status: if next_triggered_at.is_some() || jobs.is_empty() {
            RunStatus::Pending
        } else {
            RunStatus::Submitted
        },
        termination_reason: None,
        status_message: None,
        submitted_at: now,
        finished_at: None,
        configuration_type: configuration.type_name().to_string(),
        configuration_path: None,
        configuration,
        caller_env: req.caller_env,
        retry_window_started_at: None,
        service: None,
        next_triggered_at,
        archives: req.archives,
        deployment_num: 0,
        desired_replicas,
        last_scaled_at: (!jobs.is_empty()).then_some(now),
        jobs,
        cluster_key,
    };
    d.insert_run(&run).await?;
    Ok(super::proxy::with_endpoint(d, run))
}

/// A multi-node task's key pair, with which its nodes log in to each other (the private key
/// sealed with the daemon's key); `None` for single-node runs.
fn cluster_key(
    d: &Daemon,
    configuration: &RunConfiguration,
    name: &str,
) -> Result<Option<ClusterKey>, OpError> {
    if configuration.nodes() < 2 {
        return Ok(None);
    }
    let (public, private) = super::users::generate_key_pair(&format!("flotilla-run-{name}"))
        .map_err(|e| OpError::Internal(format!("run {name}: {e}")))?;
    let private_sealed = d
        .sealing()
        .seal(&private)
        .map_err(|e| OpError::Internal(format!("run {name}: cannot seal its SSH key: {e}")))?;
    Ok(Some(ClusterKey {
        public,
        private_sealed,
    }))
}

/// A run with `schedule` waits for its first start: each job's submission waits until then
/// (dstack's `pending` run with `next_triggered_at`).
fn schedule_first_start(
    configuration: &RunConfiguration,
    jobs: &mut [Job],
    now: Timestamp,
) -> Result<Option<Timestamp>, OpError> {
    let Some(schedule) = &configuration.common().policy.schedule else {
        return Ok(None);
    };
    let at = next_start(&schedule.cron, now).ok_or_else(|| {
        OpError::Invalid(format!(
            "schedule: {} never comes in the next 8 years; check the day and month",
            schedule.cron.join(", ")
        ))
    })?;
    for job in jobs.iter_mut() {
        scheduled_wait(&mut job.current, at);
    }
    Ok(Some(at))
}

pub fn find_run(d: &Daemon, name: &str) -> Result<Run, OpError> {
    d.store().run_by_name(name)?.ok_or_else(|| {
        OpError::NotFound(format!(
            "run {name} not found; `flotilla ps -a` lists the runs"
        ))
    })
}

/// Stops a run: gracefully (SIGTERM, then SIGKILL after `stop_duration`) or at once (`abort`).
pub async fn stop(d: &Daemon, caller: &Caller, name: &str, abort: bool) -> Result<Run, OpError> {
    let run = find_run(d, name)?;
    check_owner(caller, &run, "stop")?;
    if run.status.is_finished() {
        return Ok(visible_to(caller, run));
    }
    let now = Timestamp::now();
    let stop_duration = run.configuration.common().policy.stop_duration;
    let (run, _) = d.update_run(run.id, |run| {
        let reason = if abort {
            RunTerminationReason::AbortedByUser
        } else {
            RunTerminationReason::StoppedByUser
        };
        // An abort after a stop wins; otherwise the first reason stays.
        if run.termination_reason.is_none() || abort {
            run.termination_reason = Some(reason);
        }
        let job_reason = if abort {
            JobTerminationReason::AbortedByUser
        } else {
            JobTerminationReason::TerminatedByUser
        };
        for job in run.jobs.iter_mut() {
            request_job_stop(job, job_reason, abort, stop_duration, now);
        }
    })?;
    d.store().flush().await?;
    carry_out_stops(d, run.id).await;
    let run = d.store().get_run(run.id)?.unwrap_or(run);
    Ok(visible_to(caller, run))
}

/// Deletes a finished run with its logs.
pub async fn delete(d: &Daemon, caller: &Caller, name: &str) -> Result<(), OpError> {
    let run = find_run(d, name)?;
    check_owner(caller, &run, "delete")?;
    if !run.status.is_finished() {
        return Err(OpError::Conflict(format!(
            "run {name} is still {}; stop it first (`flotilla stop {name}`)",
            run.status
        )));
    }
    d.delete_run(&run)?;
    d.store().flush().await?;
    Ok(())
}
