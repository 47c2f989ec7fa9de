//! Operations layer: `${{ }}` references of a run configuration, as dstack reads them.
//!
//! - `${{ secrets.NAME }}` in `env` values and `registry_auth`: checked at plan and apply (an
//!   unknown secret is an error at its line and column), kept as written in the store and
//!   replaced when the job starts ([`super::secrets::resolve_for_job`]), so the value is never
//!   stored with the run;
//! - `${{ env.NAME }}` in `registry_auth` (the run's `env`), replaced at apply, as dstack's CLI does;
//! - `${{ run.args }}` in a task's or service's `commands` (and a task's group `commands`): the
//!   run's arguments, which flotilla does not take yet, so empty (dstack's value without
//!   arguments);
//! - `${{ groups[i].nodes[j].IP_ADDRESS }}` in a task's `commands` and group `commands`: checked
//!   here (the group and node exist), replaced with the node's address when the job starts
//!   ([`group_addresses`]);
//! - anywhere else, a reference is an error naming the field: dstack would pass it on as
//!   written, and the job would get `${{ ... }}` literally.

use flotilla_protocol::config::groups_ref;
use flotilla_protocol::config::interpolate::{has_reference, missing_error, Interpolator};
use flotilla_protocol::config::sites::Site;
use flotilla_protocol::config::{ConfigError, RunConfiguration};
use std::collections::BTreeMap;

/// What dstack interpolates in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Env,
    RegistryAuth,
    Commands,
    Elsewhere,
}

fn top_field(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

fn place_of(kind: &str, path: &str) -> Place {
    match top_field(path) {
        "env" => Place::Env,
        "registry_auth" => Place::RegistryAuth,
        "commands" if kind != "dev-environment" => Place::Commands,
        "groups" if kind == "task" && is_group_commands(path) => Place::Commands,
        _ => Place::Elsewhere,
    }
}

/// `groups[3].commands[0]`: a command of a task's node group.
fn is_group_commands(path: &str) -> bool {
    path.split_once("].")
        .is_some_and(|(_, rest)| rest.starts_with("commands["))
}

/// How many nodes each group of a task has (one group of all its nodes without `groups`), for
/// `${{ groups[i].nodes[j].IP_ADDRESS }}`; empty for other kinds.
fn node_group_sizes(config: &RunConfiguration) -> Vec<usize> {
    match config {
        RunConfiguration::Task(t) => match &t.groups {
            Some(groups) => groups.iter().map(|g| g.nodes as usize).collect(),
            None => vec![t.nodes.max(1) as usize],
        },
        _ => Vec::new(),
    }
}

/// A task's commands with `${{ groups[i].nodes[j].IP_ADDRESS }}` replaced by the nodes'
/// addresses (`node_ips`: the replica's, master first), when the job starts.
pub fn group_addresses(
    config: &RunConfiguration,
    commands: Vec<String>,
    node_ips: &[String],
) -> Result<Vec<String>, String> {
    if !commands.iter().any(|c| c.contains("groups")) {
        return Ok(commands);
    }
    let RunConfiguration::Task(task) = config else {
        return Ok(commands);
    };
    let sizes = node_group_sizes(config);
    let mut view = Vec::with_capacity(sizes.len());
    for (g, n) in sizes.iter().enumerate() {
        let row = (0..*n as u32)
            .map(|j| {
                let job = if task.groups.is_some() {
                    task.job_of(g, j)
                } else {
                    Some(j)
                };
                job.and_then(|k| node_ips.get(k as usize))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        view.push(row);
    }
    commands
        .into_iter()
        .map(|c| {
            groups_ref::replace(&c, groups_ref::Member::Nodes, &view).map_err(|e| e.to_string())
        })
        .collect()
}

/// The run's `env` as dstack's CLI sees it: bare keys take the caller's values.
fn env_values(
    config: &RunConfiguration,
    caller_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    config
        .common()
        .env
        .0
        .iter()
        .filter_map(|(k, v)| {
            let value = v.clone().or_else(|| caller_env.get(k).cloned())?;
            Some((k.clone(), value))
        })
        .collect()
}

const HOW_TO_SET: &str =
    "an admin creates a secret with `flotilla secret set NAME` (`flotilla secret list` lists them)";

/// Every misplaced or unknown reference in the file, at its line and column.
pub fn check(
    file: &str,
    config: &RunConfiguration,
    sites: &[Site],
    caller_env: &BTreeMap<String, String>,
    secret_names: &[String],
) -> Vec<ConfigError> {
    let kind = config.type_name();
    let env = env_values(config, caller_env);
    let sizes = node_group_sizes(config);
    let secrets =
        Interpolator::new().namespace("secrets", secret_names.iter().map(|n| (n.as_str(), "")));
    let mut errors = Vec::new();
    for site in sites {
        let Some(value) = site.value.as_deref().filter(|v| has_reference(v)) else {
            continue;
        };
        let checked = match place_of(kind, &site.path) {
            Place::Env => secrets.interpolate_or_error(value).map(drop).map_err(|e| {
                format!("{e}; {HOW_TO_SET} (`env` takes `${{{{ secrets.NAME }}}}` only)")
            }),
            Place::RegistryAuth => Interpolator::new()
                .namespace("env", env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .skip("secrets")
                .interpolate_or_error(value)
                .and_then(|v| secrets.interpolate_or_error(&v))
                .map(drop)
                .map_err(|e| format!("{e}; `registry_auth` takes `${{{{ env.NAME }}}}` of the run's `env` and `${{{{ secrets.NAME }}}}` ({HOW_TO_SET})")),
            Place::Commands => groups_ref::check_bounds(value, groups_ref::Member::Nodes, &sizes)
                .and_then(|()| groups_ref::without_refs(value))
                .and_then(|value| Interpolator::new()
                .namespace("run", [("args", "")])
                .interpolate(&value))
                .map_err(|e| e.to_string())
                .and_then(|(_, missing)| {
                    if missing.is_empty() {
                        Ok(())
                    } else if missing.iter().any(|m| m.starts_with("secrets.")) {
                        Err("secrets are not interpolated in `commands` (dstack would run them as written); set `env: [NAME=${{ secrets.NAME }}]` and use `$NAME` in the command".to_string())
                    } else {
                        Err(format!("{}; `commands` take `${{{{ run.args }}}}` only", missing_error(&missing)))
                    }
                }),
            Place::Elsewhere => Err(format!(
                "`${{{{ ... }}}}` is not interpolated in `{}`: dstack interpolates `${{{{ secrets.NAME }}}}` in `env` and `registry_auth`, `${{{{ env.NAME }}}}` in `registry_auth` and `${{{{ run.args }}}}` in `commands`; write the value itself",
                top_field(&site.path)
            )),
        };
        if let Err(message) = checked {
            errors.push(site.error(file, message));
        }
    }
    errors
}

/// What dstack's CLI replaces before it submits: `${{ env.NAME }}` in `registry_auth` and
/// `${{ run.args }}` (empty) in `commands`. Runs after [`check`] found nothing wrong.
pub fn apply_client_side(
    config: &mut RunConfiguration,
    caller_env: &BTreeMap<String, String>,
) -> Result<(), String> {
    let env = env_values(config, caller_env);
    if let Some(auth) = config.common_mut().registry_auth.as_mut() {
        let i = Interpolator::new()
            .namespace("env", env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .skip("secrets");
        auth.username = i
            .interpolate_or_error(&auth.username)
            .map_err(|e| format!("registry_auth.username: {e}"))?;
        auth.password = i
            .interpolate_or_error(&auth.password)
            .map_err(|e| format!("registry_auth.password: {e}"))?;
    }
    let run_args = Interpolator::new().namespace("run", [("args", "")]);
    let commands: Vec<&mut String> = match config {
        RunConfiguration::Task(t) => t
            .commands
            .iter_mut()
            .chain(
                t.groups
                    .iter_mut()
                    .flatten()
                    .flat_map(|g| g.commands.iter_mut()),
            )
            .collect(),
        RunConfiguration::Service(s) => s.commands.iter_mut().collect(),
        RunConfiguration::DevEnvironment(_) => return Ok(()),
    };
    for c in commands.into_iter().filter(|c| has_reference(c)) {
        *c = around_groups(&run_args, c).map_err(|e| format!("commands: {e}"))?;
    }
    Ok(())
}

/// `c` interpolated by `i`, its `groups` references kept as written for the job's start.
fn around_groups(
    i: &Interpolator<'_>,
    c: &str,
) -> Result<String, flotilla_protocol::config::interpolate::InterpolateError> {
    let mut out = String::with_capacity(c.len());
    let mut at = 0;
    for r in groups_ref::find(c)? {
        out.push_str(&i.interpolate_or_error(&c[at..r.start])?);
        out.push_str(&c[r.start..r.end]);
        at = r.end;
    }
    out.push_str(&i.interpolate_or_error(&c[at..])?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::{parse_configuration, sites::sites};

    fn errors(yaml: &str, secrets: &[&str]) -> Vec<String> {
        let config = parse_configuration("t.yml", yaml)
            .expect("parses")
            .as_run()
            .expect("a run");
        let sites = sites("t.yml", yaml).expect("loads");
        let names: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let caller = BTreeMap::from([("FROM_SHELL".to_string(), "x".to_string())]);
        check("t.yml", &config, &sites, &caller, &names)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn known_secrets_in_env_and_registry_auth_pass() {
        let yaml = "type: task\nimage: r.io/a\nenv:\n  - HF_TOKEN=${{ secrets.hf_token }}\n  - FROM_SHELL\n  - KEY=${{ secrets.api_key }}x\nregistry_auth:\n  username: ${{ env.FROM_SHELL }}\n  password: ${{ secrets.api_key }}\ncommands:\n  - echo ${{ run.args }}\n";
        assert_eq!(errors(yaml, &["hf_token", "api_key"]), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_secret_is_dstacks_error_at_its_line_and_column() {
        let yaml = "type: task\nenv:\n  - HF_TOKEN=${{ secrets.hf_tokn }}\ncommands: [\"true\"]\n";
        let e = errors(yaml, &["hf_token"]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.yml:3:5: env[0]: Failed to interpolate due to missing vars: ['secrets.hf_tokn']; an admin creates a secret with `flotilla secret set NAME`"),
            "{e:?}"
        );
        let map = "type: task\nenv:\n  HF_TOKEN: ${{ env.OTHER }}\ncommands: [\"true\"]\n";
        let e = errors(map, &[]);
        assert!(e[0].starts_with("t.yml:3:13: env.HF_TOKEN: Failed to interpolate due to missing vars: ['env.OTHER']"), "{e:?}");
        let auth = "type: task\nimage: a\nregistry_auth:\n  username: ${{ env.NOPE }}\n  password: ${{ secrets.gone }}\n";
        let e = errors(auth, &[]);
        assert!(e[0].starts_with("t.yml:4:13: registry_auth.username: Failed to interpolate due to missing vars: ['env.NOPE']"), "{e:?}");
        assert!(e[1].starts_with("t.yml:5:13: registry_auth.password: Failed to interpolate due to missing vars: ['secrets.gone']"), "{e:?}");
        let bad = "type: task\nenv:\n  - A=${{ secrets.x\ncommands: [\"true\"]\n";
        assert!(errors(bad, &["x"])[0].contains("No pattern closing"));
    }

    #[test]
    fn references_in_wrong_places_are_errors_naming_the_field() {
        let e = errors("type: task\nimage: ${{ secrets.img }}\n", &["img"]);
        assert!(
            e[0].starts_with("t.yml:2:8: image: `${{ ... }}` is not interpolated in `image`"),
            "{e:?}"
        );
        let e = errors("type: task\ncommands:\n  - echo ${{ secrets.k }}\n", &["k"]);
        assert!(
            e[0].starts_with("t.yml:3:5: commands[0]: secrets are not interpolated in `commands`"),
            "{e:?}"
        );
        let e = errors("type: task\ncommands:\n  - echo ${{ run.nope }}\n", &[]);
        assert!(e[0].contains("missing vars: ['run.nope']"), "{e:?}");
        let e = errors(
            "type: dev-environment\ninit:\n  - echo ${{ run.args }}\n",
            &[],
        );
        assert!(
            e[0].starts_with("t.yml:3:5: init[0]: `${{ ... }}` is not interpolated in `init`"),
            "{e:?}"
        );
    }

    #[test]
    fn node_addresses_are_checked_in_commands_and_kept_for_the_jobs_start() {
        let yaml = "type: task\ngroups:\n  - nodes: 1\n    commands:\n      - ray start --head ${{ run.args }}\n  - nodes: 2\n    commands:\n      - ray start --address=${{ groups[0].nodes[0].IP_ADDRESS }}:6379\n";
        assert_eq!(errors(yaml, &[]), Vec::<String>::new());
        let bad = yaml.replace("groups[0].nodes[0]", "groups[1].nodes[2]");
        let e = errors(&bad, &[]);
        assert!(e[0].starts_with("t.yml:8:9: groups[1].commands[0]: Invalid reference groups[1].nodes[2].IP_ADDRESS: out of range"), "{e:?}");
        let typo = yaml.replace("IP_ADDRESS", "IP");
        assert!(errors(&typo, &[])[0].contains("Illegal reference name: groups[0].nodes[0].IP"));
        let single =
            "type: task\nnodes: 2\ncommands:\n  - echo ${{ groups[0].nodes[1].IP_ADDRESS }}\n";
        assert_eq!(errors(single, &[]), Vec::<String>::new());
        let mut config = parse_configuration("t.yml", yaml)
            .expect("parses")
            .as_run()
            .expect("a run");
        apply_client_side(&mut config, &BTreeMap::new()).expect("interpolated");
        assert_eq!(
            config.job_commands(0),
            vec!["ray start --head ".to_string()]
        );
        let kept = config.job_commands(2);
        assert_eq!(
            kept,
            vec!["ray start --address=${{ groups[0].nodes[0].IP_ADDRESS }}:6379".to_string()]
        );
        let ips: Vec<String> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            group_addresses(&config, kept, &ips).expect("replaced"),
            vec!["ray start --address=10.0.0.1:6379".to_string()]
        );
    }

    #[test]
    fn env_in_registry_auth_and_run_args_are_replaced_at_apply() {
        let yaml = "type: task\nimage: a\nenv:\n  - USER_NAME=bob\nregistry_auth:\n  username: ${{ env.USER_NAME }}\n  password: ${{ secrets.pw }}\ncommands:\n  - python train.py ${{ run.args }}\n";
        let mut config = parse_configuration("t.yml", yaml)
            .expect("parses")
            .as_run()
            .expect("a run");
        apply_client_side(&mut config, &BTreeMap::new()).expect("interpolated");
        let auth = config.common().registry_auth.clone().expect("auth");
        assert_eq!(auth.username, "bob");
        assert_eq!(auth.password, "${{ secrets.pw }}");
        assert_eq!(config.commands(), vec!["python train.py ".to_string()]);
    }
}
