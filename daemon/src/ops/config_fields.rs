//! Operations layer: which fields of a configuration this daemon honours, and the refusal of
//! every other one at `run.plan` / `run.apply` (runs) and `fleet.apply` (fleets), at the
//! field's line and column. A field the parser accepts is either honoured or refused here, never
//! dropped: the test at the end lists every field of every configuration type.

use flotilla_protocol::config::sites::Site;
use flotilla_protocol::config::{ConfigError, GatewayChoice, RunConfiguration, VolumeMount};

/// What the daemon does with a top-level field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured as dstack documents it (or, for deprecated fields, ignored as dstack ignores them).
    Honoured,
    /// Refused wherever it is written.
    Refused,
    /// Honoured for some values, refused for the others (see [`refusal`]).
    Partly,
}

/// How the daemon treats `field` of a configuration of `kind`.
pub fn support(kind: &str, field: &str) -> Support {
    use Support::*;
    match (kind, field) {
        // Volume files are refused whole (`type: volume`: no backend offers volumes).
        ("volume", _) => Refused,
        // A fleet's own fields; its `retry` (re-provisioning instances) is not built.
        ("fleet", "nodes" | "placement" | "blocks" | "ssh_config") => Honoured,
        ("fleet", "retry") => Refused,
        (_, "type" | "name" | "env" | "resources" | "priority" | "shell" | "working_dir") => {
            Honoured
        }
        // Containers (README "Jobs in containers").
        (
            _,
            "image" | "user" | "privileged" | "entrypoint" | "registry_auth" | "python" | "nvcc"
            | "docker",
        ) => Honoured,
        // Deprecated since dstack 0.18.31, without effect there (`setup` runs only in dev
        // environments, before `init`).
        (_, "home_dir" | "setup") => Honoured,
        (_, "ports" | "commands" | "nodes" | "init" | "port") => Honoured,
        // Dev environments stay up after `init` until nobody is attached for this long; `ide`
        // picks the link `attach` prints (its `ssh RUN` entry goes through the gateway).
        ("dev-environment", "inactivity_duration" | "ide") => Honoured,
        // Placement and the run's life.
        (
            _,
            "backends" | "regions" | "instance_types" | "spot_policy" | "retry" | "max_duration"
            | "stop_duration" | "max_price" | "creation_policy" | "idle_duration" | "fleets",
        ) => Honoured,
        // The run waits for its start; each start is a new submission.
        (_, "schedule") => Honoured,
        // Multi-node tasks (README "Multi-node tasks"): node groups, the nodes' start order and
        // when the run ends; an idle run's end by its GPUs' utilization.
        ("task", "groups") => Honoured,
        (_, "startup_order" | "stop_criteria" | "utilization_policy") => Honoured,
        // Cloning a repo's `url`: only its branch, or all (README "Files and repos").
        (_, "single_branch") => Honoured,
        // Put in place by the job's script: not with `entrypoint` or an image's own command.
        (_, "files" | "repos") => Partly,
        // Host directories are honoured, network volumes refused.
        (_, "volumes") => Partly,
        // `dstack: false` is what every run gets.
        (_, "dstack") => Partly,
        // Replica counts, ranges and groups; a group's `router` and `reservation` are refused.
        ("service", "replicas") => Partly,
        // Autoscaling on the requests the proxy counts; HTTP probes decide readiness.
        ("service", "scaling" | "probes") => Honoured,
        // The daemon's HTTP proxy (README "Services"): the URL, tokens, prefix stripping and
        // rate limits; an OpenAI-format model on the model endpoint.
        ("service", "auth" | "strip_prefix" | "rate_limits") => Honoured,
        // `model` in OpenAI's format (TGI's is refused); no gateway; plain HTTP.
        ("service", "model" | "gateway" | "https") => Partly,
        _ => Refused,
    }
}

/// The refusal of `field` as written in `config`, with what to do; `None` when it is honoured.
pub fn refusal(config: &RunConfiguration, field: &str) -> Option<String> {
    let kind = config.type_name();
    let common = config.common();
    let message = match support(kind, field) {
        Support::Honoured => return None,
        Support::Partly => match field {
            "volumes" => {
                let path = common.volumes.iter().find_map(|v| match v {
                    VolumeMount::Network { path, .. } => Some(path),
                    VolumeMount::Instance { .. } => None,
                })?;
                format!("the network volume at {path} is not supported yet; mount a directory of the host instead (`/host/path:{path}`)")
            }
            "files" | "repos" => files_refusal(config, field)?,
            "dstack" if !common.dstack => return None,
            "dstack" => "`dstack: true` (the dstack server reachable inside the run) is not supported; remove it".into(),
            "replicas" => {
                let RunConfiguration::Service(s) = config else {
                    return None;
                };
                let groups = s.replica_groups.as_deref().unwrap_or_default();
                if let Some(g) = groups.iter().find(|g| g.router.is_some()) {
                    format!("replica group `{}`: `router` (an in-service router) is not supported yet; remove it (the daemon balances requests over the replicas itself)", g.name)
                } else if let Some(g) = groups.iter().find(|g| g.reservation.is_some()) {
                    format!("replica group `{}`: `reservation`: no backend of this daemon takes it; remove it", g.name)
                } else {
                    return None;
                }
            }
            "model" => match config {
                RunConfiguration::Service(s) if s.model.as_ref().is_some_and(|m| m.format == "tgi") => {
                    "the `tgi` model format is not supported: serve the model with an OpenAI-compatible API (TGI has one at /v1) and write `format: openai`".into()
                }
                _ => return None,
            },
            "gateway" => match config {
                RunConfiguration::Service(s)
                    if matches!(s.gateway, Some(GatewayChoice::Enabled(false)) | None) =>
                {
                    return None
                }
                _ => "gateways are not supported: the daemon serves every service at its own HTTP endpoint; remove `gateway` (or write `gateway: false`)".into(),
            },
            "https" => match config {
                RunConfiguration::Service(s) if s.https == Some(false) => return None,
                _ => "the daemon serves services over plain HTTP (no certificates without a gateway); write `https: false`, and put a TLS proxy in front of the daemon's HTTP address if you need one".into(),
            },
            _ => format!("`{field}` is not supported yet; remove it"),
        },
        Support::Refused => refused_message(field),
    };
    Some(message)
}

/// `files` and `repos` are unpacked (or cloned) by the job's own script before its commands:
/// a job without one (an `entrypoint`, or an image's own command) cannot take them, and a
/// `~user` path is refused as dstack's runner refuses it.
fn files_refusal(config: &RunConfiguration, field: &str) -> Option<String> {
    let common = config.common();
    let dev = matches!(config, RunConfiguration::DevEnvironment(_));
    if common.entrypoint.is_some() {
        return Some(format!(
            "`{field}` with `entrypoint` is not supported yet: the files are put in place by the job's script; remove `entrypoint` and start the program in `commands`"
        ));
    }
    if common.image.is_some() && config.commands().is_empty() && !dev {
        return Some(format!(
            "`{field}` without `commands` is not supported yet: the files are put in place by the job's script before the commands; write the image's command in `commands`"
        ));
    }
    let paths: Vec<&str> = match field {
        "files" => common.files.iter().map(|f| f.path.as_str()).collect(),
        _ => common.repos.iter().map(|r| r.path.as_str()).collect(),
    };
    let home_of_other = paths
        .into_iter()
        .find(|p| p.starts_with('~') && *p != "~" && !p.starts_with("~/"))?;
    Some(format!(
        "{home_of_other:?}: `~user` paths are not supported (dstack's rule); write `~/...` (the job user's home) or an absolute path"
    ))
}

fn refused_message(field: &str) -> String {
    let what = match field {
        "instances" => "`instances` is not supported yet; remove it and name the fleets with `fleets`",
        "retry" => "a fleet's `retry` (re-provisioning its instances) is not supported yet; remove it (a run's `retry` is)",
        "availability_zones" | "reservation" | "tags" | "backend_options" => "no backend of this daemon takes it; remove it",
        "version" => "flotilla does not pre-install the IDE's server at a version; remove `version` (the IDE installs its own server when it connects through `ssh RUN`)",
        "router" => "an in-service router is not supported yet: the daemon balances requests over the replicas itself; remove `router`",
        _ => "it is not supported yet; remove it",
    };
    what.to_string()
}

/// Every field written in a fleet file that the daemon refuses, at its key.
pub fn fleet_refusals(file: &str, sites: &[Site]) -> Vec<ConfigError> {
    sites
        .iter()
        .filter(|s| s.value.is_none() && !s.path.contains(['.', '[']))
        .filter(|s| support("fleet", &s.path) == Support::Refused)
        .map(|s| s.error(file, refused_message(&s.path)))
        .collect()
}

/// Every field written in the file that the daemon refuses, at its key.
pub fn refusals(file: &str, config: &RunConfiguration, sites: &[Site]) -> Vec<ConfigError> {
    sites
        .iter()
        .filter(|s| s.value.is_none() && !s.path.contains(['.', '[']))
        .filter_map(|s| refusal(config, &s.path).map(|m| s.error(file, m)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::{field_names, parse_configuration, sites::sites};

    /// Every field the parser accepts, by type, and what the daemon does with it. A field added
    /// to the parser fails this test until it is put here, honoured or refused.
    #[test]
    fn every_field_of_every_run_type_is_honoured_or_refused() {
        use Support::*;
        let common: &[(&str, Support)] = &[
            ("type", Honoured),
            ("name", Honoured),
            ("image", Honoured),
            ("user", Honoured),
            ("privileged", Honoured),
            ("entrypoint", Honoured),
            ("working_dir", Honoured),
            ("home_dir", Honoured),
            ("registry_auth", Honoured),
            ("python", Honoured),
            ("nvcc", Honoured),
            ("docker", Honoured),
            ("dstack", Partly),
            ("single_branch", Honoured),
            ("env", Honoured),
            ("shell", Honoured),
            ("resources", Honoured),
            ("priority", Honoured),
            ("volumes", Partly),
            ("files", Partly),
            ("repos", Partly),
            ("setup", Honoured),
            ("backends", Honoured),
            ("regions", Honoured),
            ("availability_zones", Refused),
            ("instance_types", Honoured),
            ("reservation", Refused),
            ("spot_policy", Honoured),
            ("retry", Honoured),
            ("max_duration", Honoured),
            ("stop_duration", Honoured),
            ("max_price", Honoured),
            ("creation_policy", Honoured),
            ("idle_duration", Honoured),
            ("utilization_policy", Honoured),
            ("startup_order", Honoured),
            ("stop_criteria", Honoured),
            ("schedule", Honoured),
            ("fleets", Honoured),
            ("instances", Refused),
            ("tags", Refused),
            ("backend_options", Refused),
        ];
        let own: &[(&str, &[(&str, Support)])] = &[
            (
                "task",
                &[
                    ("commands", Honoured),
                    ("ports", Honoured),
                    ("nodes", Honoured),
                    ("groups", Honoured),
                ],
            ),
            (
                "service",
                &[
                    ("commands", Honoured),
                    ("port", Honoured),
                    ("replicas", Partly),
                    ("scaling", Honoured),
                    ("auth", Honoured),
                    ("model", Partly),
                    ("probes", Honoured),
                    ("gateway", Partly),
                    ("https", Partly),
                    ("strip_prefix", Honoured),
                    ("rate_limits", Honoured),
                    ("router", Refused),
                ],
            ),
            (
                "dev-environment",
                &[
                    ("ports", Honoured),
                    ("ide", Honoured),
                    ("version", Refused),
                    ("init", Honoured),
                    ("inactivity_duration", Honoured),
                ],
            ),
        ];
        let fleet: &[(&str, Support)] = &[
            ("type", Honoured),
            ("name", Honoured),
            ("nodes", Honoured),
            ("placement", Honoured),
            ("blocks", Honoured),
            ("resources", Honoured),
            ("ssh_config", Honoured),
            ("env", Honoured),
            ("backends", Honoured),
            ("regions", Honoured),
            ("availability_zones", Refused),
            ("instance_types", Honoured),
            ("reservation", Refused),
            ("spot_policy", Honoured),
            ("retry", Refused),
            ("max_price", Honoured),
            ("idle_duration", Honoured),
            ("tags", Refused),
            ("backend_options", Refused),
        ];
        let mut fleet_fields = field_names("fleet").expect("fleet").to_vec();
        let mut listed: Vec<&str> = fleet.iter().map(|(f, _)| *f).collect();
        fleet_fields.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, fleet_fields, "fleet: fields differ");
        for (field, want) in fleet {
            assert_eq!(support("fleet", field), *want, "fleet.{field}");
        }
        // A volume file is refused whole.
        for field in field_names("volume").expect("volume") {
            assert_eq!(support("volume", field), Refused, "volume.{field}");
        }
        for (kind, fields) in own {
            let expected: Vec<(&str, Support)> =
                common.iter().chain(fields.iter()).copied().collect();
            let parsed = field_names(kind).expect("a run type");
            let mut listed: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
            let mut accepted = parsed.to_vec();
            listed.sort_unstable();
            accepted.sort_unstable();
            assert_eq!(
                listed, accepted,
                "{kind}: the fields the parser accepts and the fields listed here differ"
            );
            for (field, want) in &expected {
                assert_eq!(support(kind, field), *want, "{kind}.{field}");
            }
        }
    }

    fn refused(yaml: &str) -> Vec<String> {
        let config = parse_configuration("t.yml", yaml)
            .expect("parses")
            .as_run()
            .expect("a run");
        let sites = sites("t.yml", yaml).expect("loads");
        refusals("t.yml", &config, &sites)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn files_and_repos_are_honoured_where_the_jobs_script_can_put_them_in_place() {
        let honoured = [
            "type: task\nfiles: [data, \"~/.ssh/id_rsa:/root/.ssh/id_rsa\"]\nrepos: [\"..:/work\"]\ncommands: [ls]\n",
            "type: task\nimage: ubuntu\nfiles: [data]\nrepos: [https://example.com/r.git]\ncommands: [ls]\n",
            "type: dev-environment\nide: vscode\nimage: ubuntu\nfiles: [data]\n",
        ];
        for yaml in honoured {
            assert_eq!(refused(yaml), Vec::<String>::new(), "{yaml}");
        }
        let got = refused("type: task\nimage: ubuntu\nfiles: [data]\n");
        assert!(
            got[0].starts_with("t.yml:3:1: files: `files` without `commands` is not supported yet"),
            "{got:?}"
        );
    }

    #[test]
    fn each_refused_field_is_named_at_its_line_with_what_to_do() {
        let cases: &[(&str, &str)] = &[
            (
                "entrypoint: python\nfiles:\n  - a.txt:/b/a.txt\n",
                "t.yml:4:1: files: `files` with `entrypoint` is not supported yet",
            ),
            (
                "repos:\n  - .:~bob/src\n",
                "t.yml:3:1: repos: \"~bob/src\": `~user` paths are not supported",
            ),
            (
                "instances:\n  - name: a\n",
                "t.yml:3:1: instances: `instances` is not supported yet",
            ),
            (
                "tags:\n  team: ml\n",
                "t.yml:3:1: tags: no backend of this daemon takes it",
            ),
            (
                "reservation: r-1\n",
                "t.yml:3:1: reservation: no backend of this daemon takes it",
            ),
            (
                "availability_zones: [a]\n",
                "t.yml:3:1: availability_zones: no backend",
            ),
            (
                "backend_options:\n  x: 1\n",
                "t.yml:3:1: backend_options: no backend",
            ),
            ("dstack: true\n", "t.yml:3:1: dstack: `dstack: true`"),
            (
                "volumes:\n  - name: data\n    path: /data\n",
                "t.yml:3:1: volumes: the network volume at /data is not supported yet",
            ),
        ];
        for (extra, want) in cases {
            let yaml = format!("type: task\ncommands: [\"true\"]\n{extra}");
            let got = refused(&yaml);
            assert_eq!(got.len(), 1, "{yaml}: {got:?}");
            assert!(got[0].starts_with(want), "{yaml}: {got:?}");
        }
        // The multi-node fields and the utilization policy are honoured.
        let multi = "type: task\nstartup_order: workers-first\nstop_criteria: master-done\nutilization_policy:\n  min_gpu_utilization: 10\n  time_window: 1h\ngroups:\n  - name: a\n    nodes: 1\n    commands: [\"true\"]\n";
        assert!(refused(multi).is_empty(), "{:?}", refused(multi));
        let service = |extra: &str| {
            refused(&format!(
                "type: service\nport: 80\ncommands: [\"true\"]\n{extra}"
            ))
        };
        for (extra, want) in [
            (
                "router:\n  type: sglang\n",
                "t.yml:4:1: router: an in-service router is not supported yet",
            ),
            (
                "gateway: true\n",
                "t.yml:4:1: gateway: gateways are not supported",
            ),
            (
                "model:\n  name: m\n  format: tgi\n",
                "t.yml:4:1: model: the `tgi` model format is not supported",
            ),
            (
                "https: true\n",
                "t.yml:4:1: https: the daemon serves services over plain HTTP",
            ),
            (
                "https: auto\n",
                "t.yml:4:1: https: the daemon serves services over plain HTTP",
            ),
        ] {
            let got = service(extra);
            assert!(got.iter().any(|g| g.starts_with(want)), "{extra}: {got:?}");
        }
        let fleet = "type: fleet\nname: f\nretry: true\ntags:\n  a: b\nssh_config:\n  hosts: [h]\n";
        let got: Vec<String> = fleet_refusals("f.yml", &sites("f.yml", fleet).expect("loads"))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            got[0].starts_with("f.yml:3:1: retry: a fleet's `retry`"),
            "{got:?}"
        );
        assert!(got[1].starts_with("f.yml:4:1: tags: no backend"), "{got:?}");
        // Ranges with scaling, groups and probes are honoured; a group's router is refused.
        assert!(refused("type: service\nport: 80\nreplicas:\n  - name: a\n    count: 1\n    commands: [\"true\"]\n").is_empty());
        assert!(service("replicas: 0..2\nscaling:\n  metric: rps\n  target: 10\nprobes:\n  - type: http\n    url: /health\n").is_empty());
        let router = refused("type: service\nport: 80\nreplicas:\n  - name: r\n    count: 1\n    commands: [\"true\"]\n    router:\n      type: sglang\n");
        assert!(
            router[0].starts_with("t.yml:3:1: replicas: replica group `r`: `router`"),
            "{router:?}"
        );
        // Honoured values of partly honoured fields pass.
        assert!(service("replicas: 2\nauth: false\ngateway: false\n").is_empty());
        assert!(service(
            "auth: true\nmodel: llama\nhttps: false\nstrip_prefix: false\nrate_limits:\n  - rps: 1\n"
        )
        .is_empty());
        assert!(refused(
            "type: task\ncommands: [\"true\"]\ndstack: false\nvolumes: [\"/tmp:/data\"]\n"
        )
        .is_empty());
        let dev = refused(
            "type: dev-environment\nide: vscode\nversion: 1.90.0\ninactivity_duration: 1h\n",
        );
        assert_eq!(dev.len(), 1, "{dev:?}");
        assert!(
            dev[0].starts_with("t.yml:3:1: version: flotilla does not pre-install"),
            "{dev:?}"
        );
    }
}
