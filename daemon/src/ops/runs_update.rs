//! Operations layer: applying a configuration to the active run of the same name. As dstack
//! does (`services/runs/spec.py`, `check_can_update_run_spec`), only a service is updated while
//! it runs, and only in the fields dstack updates: `replicas`, `scaling` and `priority` in place,
//! and through a rolling update `port`, `probes`, `resources`, `volumes`, `docker`, `files`,
//! `image`, `user`, `privileged`, `entrypoint`, `working_dir`, `python`, `nvcc`,
//! `single_branch`, `env`, `shell` and `commands`. An update bumps the run's `deployment_num`;
//! jobs whose own configuration (their replica group's) is unchanged move to it in place, the
//! others are replaced by the replicas loop (new replicas first, old ones stopped once the new
//! ones are ready; see `crate::replica_rules`).

use super::runs::RunRequest;
use super::runs_access::check_owner;
use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::sealing::is_sealed;
use flotilla_protocol::config::{Range, RunConfiguration};
use flotilla_protocol::model::{ArchiveField, Job, Run, RunArchive};
use flotilla_protocol::rpc::{FieldChange, RunUpdate};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The fields of a running service that an apply may change (dstack's list).
const UPDATABLE: &[&str] = &[
    "priority",
    "replicas",
    "scaling",
    "port",
    "probes",
    "resources",
    "volumes",
    "docker",
    "files",
    "image",
    "user",
    "privileged",
    "entrypoint",
    "working_dir",
    "python",
    "nvcc",
    "single_branch",
    "env",
    "shell",
    "commands",
];

/// Fields whose values the plan does not print (credentials, the caller's environment).
const HIDDEN: &[&str] = &["env", "registry_auth"];

/// A configuration's fields as written, by dstack's names (`replicas` holds the groups when
/// `replicas` is a list); the registry password opened so that a re-sealed one compares equal.
fn fields(d: &Daemon, c: &RunConfiguration) -> Map<String, Value> {
    let mut c = c.clone();
    c.common_mut().name = None;
    if let Some(auth) = c.common_mut().registry_auth.as_mut() {
        if is_sealed(&auth.password) {
            match d.sealing().open(&auth.password) {
                Ok(open) => auth.password = open,
                // Unreadable: it counts as changed, which refuses the update and says so.
                Err(e) => auth.password = format!("(sealed: {e})"),
            }
        }
    }
    let mut map = match serde_json::to_value(&c) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Some(groups) = map.remove("replica_groups").filter(|g| !g.is_null()) {
        map.insert("replicas".into(), groups);
    }
    map
}

/// The fields that differ between the running configuration and the new one, in the order of
/// the configuration's fields; `env` also changes when a bare `KEY`'s value from the caller's
/// environment does.
pub fn changes(
    d: &Daemon,
    run: &Run,
    new: &RunConfiguration,
    caller_env: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    let old = fields(d, &run.configuration);
    let new_fields = fields(d, new);
    let mut out = Vec::new();
    let mut keys: Vec<&String> = old.keys().chain(new_fields.keys()).collect();
    keys.dedup();
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let (a, b) = (
            old.get(key).cloned().unwrap_or(Value::Null),
            new_fields.get(key).cloned().unwrap_or(Value::Null),
        );
        let env_values_changed = key == "env" && run.caller_env != *caller_env;
        if a == b && !env_values_changed {
            continue;
        }
        let (a, b) = if HIDDEN.contains(&key.as_str()) {
            let hidden = Value::String("(not shown)".into());
            (hidden.clone(), hidden)
        } else {
            (a, b)
        };
        out.push(FieldChange {
            field: key.clone(),
            old: a,
            new: b,
        });
    }
    out
}

/// Why the run cannot be updated with these changes, or `None` when it can.
pub fn refusal(run: &Run, changes: &[FieldChange]) -> Option<String> {
    let name = &run.name;
    if !matches!(run.configuration, RunConfiguration::Service(_)) {
        return Some(format!(
            "run {name} is still {}; only a service is updated while it runs: stop it first (`flotilla stop {name}`) or give this one another name",
            run.status
        ));
    }
    if run.termination_reason.is_some() {
        return Some(format!(
            "run {name} is {}; wait until it has stopped, then apply again",
            run.status
        ));
    }
    if changes.is_empty() {
        return Some(format!(
            "run {name} is still {} with this configuration: nothing to update (stop it first to start it again)",
            run.status
        ));
    }
    let fixed: Vec<&str> = changes
        .iter()
        .map(|c| c.field.as_str())
        .filter(|f| !UPDATABLE.contains(f))
        .collect();
    if !fixed.is_empty() {
        return Some(format!(
            "{} cannot be updated in a running service (it may change: {}); stop run {name} first (`flotilla stop {name}`) or give this one another name",
            fixed.join(", "),
            UPDATABLE.join(", ")
        ));
    }
    None
}

/// What applying `req` to the active run `run` would do, as `run.plan` shows it.
pub fn preview(d: &Daemon, caller: &Caller, run: &Run, req: &RunRequest) -> RunUpdate {
    if let Err(e) = check_owner(caller, run, "update") {
        return RunUpdate {
            changes: Vec::new(),
            refusal: Some(e.to_string()),
        };
    }
    let changes = changes(d, run, &req.configuration, &req.caller_env);
    let refusal = refusal(run, &changes);
    RunUpdate { changes, refusal }
}

/// The fields (`files`, `repos`) whose uploaded archives differ.
fn archive_changes(old: &[RunArchive], new: &[RunArchive]) -> Vec<&'static str> {
    let of = |list: &[RunArchive], field: ArchiveField| -> Vec<(usize, String)> {
        let mut v: Vec<(usize, String)> = list
            .iter()
            .filter(|a| a.field == field)
            .map(|a| (a.index, a.hash.clone()))
            .collect();
        v.sort();
        v
    };
    [
        (ArchiveField::Files, "files"),
        (ArchiveField::Repos, "repos"),
    ]
    .into_iter()
    .filter(|(field, _)| of(old, *field) != of(new, *field))
    .map(|(_, name)| name)
    .collect()
}

/// A job's own configuration without what changes in place (counts, scaling, priority).
fn job_spec(c: &RunConfiguration, job: &Job) -> RunConfiguration {
    let mut spec = c
        .for_replica_group(job.replica_group.as_deref())
        .into_owned();
    spec.common_mut().priority = 0;
    spec.common_mut().name = None;
    if let RunConfiguration::Service(s) = &mut spec {
        s.replicas = Range::exact(1);
        s.replica_groups = None;
        s.scaling = None;
    }
    spec
}

/// Updates the active service `run` with `req` (a rolling update where jobs change).
pub async fn update(
    d: &Daemon,
    caller: &Caller,
    run: Run,
    req: RunRequest,
) -> Result<Run, OpError> {
    check_owner(caller, &run, "update")?;
    let mut changes = changes(d, &run, &req.configuration, &req.caller_env);
    // New content in `files` (or the repo) is a change even when the file says the same.
    for field in archive_changes(&run.archives, &req.archives) {
        if !changes.iter().any(|c| c.field == field) {
            changes.push(FieldChange {
                field: field.to_string(),
                old: Value::String("(uploaded content)".into()),
                new: Value::String("(new content)".into()),
            });
        }
    }
    if let Some(why) = refusal(&run, &changes) {
        return Err(OpError::Conflict(why));
    }
    let mut configuration = req.configuration;
    configuration.common_mut().name = None;
    let registry_changed = changes.iter().any(|c| c.field == "registry_auth");
    if let Some(auth) = configuration.common_mut().registry_auth.as_mut() {
        auth.password = match (&run.configuration.common().registry_auth, registry_changed) {
            (Some(old), false) => old.password.clone(),
            _ => d
                .sealing()
                .seal(&auth.password)
                .map_err(|e| OpError::Invalid(format!("registry_auth: {e}")))?,
        };
    }
    let caller_env = req.caller_env;
    let archives = req.archives;
    let (run, _) = d.update_run(run.id, move |run| {
        let old_config = std::mem::replace(&mut run.configuration, configuration);
        let env_same = run.caller_env == caller_env && run.archives == archives;
        run.caller_env = caller_env;
        run.archives = archives;
        run.deployment_num += 1;
        let deployment = run.deployment_num;
        let new_config = run.configuration.clone();
        for job in run.jobs.iter_mut() {
            if env_same && job_spec(&old_config, job) == job_spec(&new_config, job) {
                job.deployment_num = deployment;
            }
        }
    })?;
    d.store().flush().await?;
    tracing::info!(
        "run {}: updated to deployment {} ({})",
        run.name,
        run.deployment_num,
        changes
            .iter()
            .map(|c| c.field.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_content_in_files_or_the_repo_is_a_change_of_that_field() {
        let a = |field, index, hash: &str| RunArchive {
            field,
            index,
            hash: hash.into(),
            size: 1,
        };
        let old = vec![
            a(ArchiveField::Files, 0, "x"),
            a(ArchiveField::Repos, 0, "r"),
        ];
        assert!(archive_changes(&old, &old).is_empty());
        let new = vec![
            a(ArchiveField::Repos, 0, "r"),
            a(ArchiveField::Files, 0, "y"),
        ];
        assert_eq!(archive_changes(&old, &new), ["files"]);
        assert_eq!(archive_changes(&old, &new[1..]), ["files", "repos"]);
    }
    use flotilla_protocol::config::parse_configuration;
    use flotilla_protocol::model::RunStatus;

    fn config(yaml: &str) -> RunConfiguration {
        parse_configuration("s.yml", yaml)
            .expect("parses")
            .as_run()
            .expect("a run")
    }

    fn run_of(yaml: &str) -> Run {
        Run {
            id: 1,
            name: "web".into(),
            user: "ana".into(),
            uid: 1000,
            status: RunStatus::Running,
            termination_reason: None,
            status_message: None,
            submitted_at: flotilla_protocol::Timestamp(0),
            finished_at: None,
            configuration_type: "service".into(),
            configuration_path: None,
            configuration: config(yaml),
            caller_env: Default::default(),
            retry_window_started_at: None,
            next_triggered_at: None,
            deployment_num: 0,
            desired_replicas: Default::default(),
            last_scaled_at: None,
            archives: Vec::new(),
            cluster_key: None,
            service: None,
            jobs: Vec::new(),
        }
    }

    fn change(field: &str) -> FieldChange {
        FieldChange {
            field: field.into(),
            old: Value::Null,
            new: Value::Null,
        }
    }

    #[test]
    fn only_dstacks_fields_of_a_running_service_may_change() {
        let service = run_of("type: service\nport: 80\ncommands: [serve]\n");
        assert_eq!(
            refusal(&service, &[change("env"), change("replicas")]),
            None
        );
        let why = refusal(&service, &[change("env"), change("max_duration")]).expect("refused");
        assert!(
            why.starts_with("max_duration cannot be updated in a running service"),
            "{why}"
        );
        let same = refusal(&service, &[]).expect("refused");
        assert!(same.contains("nothing to update"), "{same}");
        let task = run_of("type: task\ncommands: [train]\n");
        let why = refusal(&task, &[change("commands")]).expect("refused");
        assert!(
            why.contains("only a service is updated while it runs"),
            "{why}"
        );
    }

    #[test]
    fn counts_and_scaling_change_in_place_commands_and_env_roll() {
        let job = Job {
            replica_num: 0,
            job_num: 0,
            job_name: "web-0-0".into(),
            replica_group: Some("0".into()),
            deployment_num: 0,
            current: crate::lifecycle::new_submission(1, 0, flotilla_protocol::Timestamp(0)),
            previous_submissions: Vec::new(),
        };
        let base = config("type: service\nport: 80\ncommands: [serve]\nreplicas: 1\n");
        let more = config("type: service\nport: 80\ncommands: [serve]\nreplicas: 1..3\nscaling: {metric: rps, target: 5}\npriority: 7\n");
        assert_eq!(job_spec(&base, &job), job_spec(&more, &job));
        let env = config("type: service\nport: 80\ncommands: [serve]\nenv: [A=1]\n");
        assert_ne!(job_spec(&base, &job), job_spec(&env, &job));
        let cmd = config("type: service\nport: 80\ncommands: [serve --v2]\n");
        assert_ne!(job_spec(&base, &job), job_spec(&cmd, &job));
    }
}
