//! Bad configurations are rejected with file:line:column, the field path and what is allowed.

use flotilla_protocol::config::{parse_configuration, yaml_to_json, ConfigErrors};
use proptest::prelude::*;

fn errors(file: &str, text: &str) -> Vec<String> {
    match parse_configuration(file, text) {
        Ok(config) => panic!("{file} should be rejected, parsed as {config:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn single_error(file: &str, text: &str) -> String {
    let all = errors(file, text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.into_iter().next().unwrap_or_default()
}

#[test]
fn gpu_memory_of_zero_names_file_line_column_and_path() {
    let text = "\
type: task
name: train
commands:
  - python train.py
resources:
  gpu:
    A100:0GB
";
    assert_eq!(
        single_error("task.yml", text),
        "task.yml:7:5: resources.gpu: \"A100:0GB\" memory must be positive"
    );
}

#[test]
fn errors_carry_structured_positions() {
    let text = "type: task\ncommands: [echo]\nresources:\n  gpu: A100:2:4\n";
    let ConfigErrors(errors) = parse_configuration("t.yml", text).expect_err("two counts");
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!(
        (error.file.as_str(), error.line, error.column),
        ("t.yml", 4, 8)
    );
    assert_eq!(error.path, "resources.gpu");
    assert_eq!(error.message, "\"A100:2:4\" has two counts");
    let json = serde_json::to_value(error).expect("serializes");
    assert_eq!(json["line"], 4);
    assert_eq!(json["path"], "resources.gpu");
}

#[test]
fn unknown_field_suggests_the_closest_name() {
    let text = "type: task\ncommands: [echo]\nresorces:\n  gpu: 1\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:3:1: resorces: unknown field `resorces`, did you mean `resources`?"
    );
}

#[test]
fn unknown_nested_field_lists_the_allowed_ones() {
    let text = "type: task\ncommands: [echo]\nresources:\n  gpus_wanted: 1\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:4:3: resources.gpus_wanted: unknown field `gpus_wanted`; allowed fields: cpu, memory, shm_size, gpu, disk"
    );
}

#[test]
fn wrong_type_says_what_was_expected() {
    let text = "type: task\ncommands: echo hi\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:2:11: commands: expected a list, found \"echo hi\""
    );
    let text = "type: task\ncommands: [echo]\nprivileged: sometimes\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:3:13: privileged: expected `true` or `false`, found \"sometimes\""
    );
}

#[test]
fn bad_ranges_are_rejected() {
    let text = "type: task\ncommands: [echo]\nresources:\n  memory: 16GB..8GB\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:4:11: resources.memory: \"16GB..8GB\" is not a range: the minimum is above the maximum"
    );
    let text = "type: task\ncommands: [echo]\nresources:\n  cpu: ..\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:4:8: resources.cpu: \"..\": \"..\" is not a range: give a minimum, a maximum or both (`2..`, `..8`, `2..8`)"
    );
}

#[test]
fn gpu_tokens_that_make_no_sense() {
    let gpu_error = |gpu: &str| {
        let text = format!("type: task\ncommands: [echo]\nresources:\n  gpu: \"{gpu}\"\n");
        single_error("t.yml", &text)
    };
    assert_eq!(
        gpu_error("A100:2:8"),
        "t.yml:4:8: resources.gpu: \"A100:2:8\" has two counts"
    );
    assert_eq!(
        gpu_error("nvidia:amd:2"),
        "t.yml:4:8: resources.gpu: \"nvidia:amd:2\" has two vendors"
    );
    assert!(gpu_error("nvidai:A100").contains(
        "\"nvidai:A100\" has two GPU name lists (`nvidai` and `A100`); list names with `,`"
    ));
    let text =
        "type: task\ncommands: [echo]\nresources:\n  gpu:\n    vendor: nvida\n    count: 2\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:5:13: resources.gpu.vendor: unknown GPU vendor `nvida`; expected nvidia, amd, tpu (or google), intel, tt (or tenstorrent)"
    );
}

#[test]
fn image_excludes_python_and_nvcc() {
    let text = "type: task\nimage: ubuntu\npython: 3.11\ncommands: [echo]\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:3:1: python: `python` cannot be used together with `image` (the image brings its own Python); remove one of them"
    );
    let text = "type: task\nimage: ubuntu\nnvcc: true\ncommands: [echo]\n";
    assert!(single_error("t.yml", text)
        .starts_with("t.yml:3:1: nvcc: `nvcc` cannot be used together with `image`"));
}

#[test]
fn replica_range_needs_scaling() {
    let text = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 1..4\n";
    assert_eq!(
        single_error("s.yml", text),
        "s.yml:4:11: replicas: a range of replicas needs `scaling` ({metric: rps, target: N}) to choose between 1 and 4"
    );
    let text = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 2\nscaling: {metric: rps, target: 10}\n";
    assert_eq!(
        single_error("s.yml", text),
        "s.yml:5:1: scaling: `scaling` needs `replicas` to be a range (`1..4`)"
    );
    let text = "type: service\nport: 8000\ncommands: [serve]\nreplicas: 1..2\nscaling: {metric: rps, target: 10, window: 2m}\n";
    assert!(
        single_error("s.yml", text).starts_with(
            "s.yml:5:44: scaling.window: `window` must be one of `30s`, `60s`, `300s`"
        ),
        "{}",
        single_error("s.yml", text)
    );
}

#[test]
fn priority_must_be_within_0_and_100() {
    let text = "type: task\ncommands: [echo]\npriority: 101\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:3:11: priority: priority must be a whole number from 0 to 100, found \"101\""
    );
}

#[test]
fn yaml_syntax_error_has_its_position() {
    let text = "type: task\ncommands: [echo\nname: x\n";
    let error = single_error("t.yml", text);
    assert!(
        error.starts_with("t.yml:3:5: YAML syntax error: "),
        "{error}"
    );
}

#[test]
fn empty_file_and_missing_or_unknown_type() {
    assert_eq!(
        single_error("t.yml", "# nothing here\n"),
        "t.yml:1:1: the file is empty; a configuration needs at least `type:` (task, service, dev-environment, fleet or volume)"
    );
    assert_eq!(
        single_error("t.yml", "name: x\ncommands: [echo]\n"),
        "t.yml:1:1: type: missing field `type`; expected one of task, service, dev-environment, fleet, volume"
    );
    assert_eq!(
        single_error("t.yml", "type: servce\n"),
        "t.yml:1:7: type: unknown configuration type \"servce\", did you mean `service`?"
    );
    assert_eq!(
        single_error("t.yml", "type: pipeline\n"),
        "t.yml:1:7: type: unknown configuration type \"pipeline\"; expected one of task, service, dev-environment, fleet, volume"
    );
    assert_eq!(
        single_error("t.yml", "type: [task]\n"),
        "t.yml:1:7: type: expected one of task, service, dev-environment, fleet, volume, found a list"
    );
    assert_eq!(
        single_error("t.yml", "type: task\ncommands: [x]\n---\ntype: fleet\n"),
        "t.yml:4:1: a configuration file holds one YAML document; remove the `---` and what follows"
    );
    assert_eq!(
        single_error("t.yml", "- type: task\n"),
        "t.yml:1:1: expected a mapping of fields starting with `type:`, found a list"
    );
}

#[test]
fn gateways_give_a_single_error() {
    let text =
        "type: gateway\nname: gw\nbackend: aws\nregion: eu-west-1\ndomain: example.com\nbogus: 1\n";
    assert_eq!(
        single_error("gw.yml", text),
        "gw.yml:1:7: type: gateways are not supported yet"
    );
}

#[test]
fn every_error_in_a_file_is_reported_in_file_order() {
    let text = "\
type: task
name: Bad_Name
commands: [echo]
priority: 500
resources:
  gpu: H100:0GB
  memory: lots
max_duration: 2y
ssh_config: {}
";
    let all = errors("t.yml", text);
    assert_eq!(
        all,
        [
            "t.yml:2:7: name: \"Bad_Name\" is not a valid name: use 2-41 lowercase letters, digits and `-`, starting with a letter",
            "t.yml:4:11: priority: priority must be a whole number from 0 to 100, found \"500\"",
            "t.yml:6:8: resources.gpu: \"H100:0GB\" memory must be positive",
            "t.yml:7:11: resources.memory: \"lots\" is not a size; write a number with MB, GB or TB (a bare number means GB)",
            "t.yml:8:15: max_duration: \"2y\" is not a duration; write whole seconds or a whole number with s, m, h, d or w (`90s`, `30m`, `2h`, `1d`), or `off` or `false` to switch it off",
            "t.yml:9:1: ssh_config: unknown field `ssh_config`; allowed fields: name, image, user, privileged, entrypoint, working_dir, home_dir, registry_auth, python, nvcc, docker, dstack, single_branch, env, shell, resources, priority, volumes, files, repos, setup, backends, regions, availability_zones, instance_types, reservation, spot_policy, retry, max_duration, stop_duration, max_price, creation_policy, idle_duration, utilization_policy, startup_order, stop_criteria, schedule, fleets, instances, tags, backend_options, commands, ports, nodes, groups",
        ]
    );
}

#[test]
fn nested_paths_index_into_lists() {
    let text = "\
type: fleet
name: on-prem
ssh_config:
  user: ubuntu
  hosts:
    - 10.0.0.1
    - hostname: 10.0.0.2
      port: 70000
";
    assert_eq!(
        single_error("f.yml", text),
        "f.yml:8:13: ssh_config.hosts[1].port: expected a whole number from 0 to 65535, found \"70000\""
    );
}

#[test]
fn duplicate_keys_and_bad_env_names_are_errors() {
    let text = "type: task\ncommands: [echo]\nname: a1\nname: b1\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:4:1: duplicate key `name` (the same field is written twice)"
    );
    let text = "type: task\ncommands: [echo]\nname: a1\nname: b1\nimage: [x]\n";
    assert_eq!(
        errors("t.yml", text),
        [
            "t.yml:4:1: duplicate key `name` (the same field is written twice)",
            "t.yml:5:8: image: expected a string, found a list",
        ]
    );
    let text = "type: task\ncommands: [echo]\nenv:\n  - GOOD=1\n  - 1BAD=2\n  - GOOD=3\n";
    assert_eq!(
        errors("t.yml", text),
        [
            "t.yml:5:5: env[1]: `1BAD` is not a variable name (letters, digits and `_`, not starting with a digit)",
            "t.yml:6:5: env[2]: environment variable `GOOD` is set twice",
        ]
    );
}

#[test]
fn kind_specific_rules() {
    let text = "type: dev-environment\nide: vscode\nentrypoint: /bin/x\n";
    assert_eq!(
        single_error("d.yml", text),
        "d.yml:3:1: entrypoint: `entrypoint` is not supported for dev environments"
    );
    let text = "type: dev-environment\nide: emacs\n";
    assert_eq!(
        single_error("d.yml", text),
        "d.yml:2:6: ide: expected one of `vscode`, `cursor`, `windsurf`, `zed`, found \"emacs\""
    );
    let text = "type: fleet\nname: f1\nplacement: cluster\n";
    assert_eq!(
        single_error("f.yml", text),
        "f.yml:1:1: a fleet needs `nodes` (machines to provision) or `ssh_config` (existing hosts)"
    );
    let text = "type: fleet\nnodes: {min: 3, max: 2}\n";
    assert_eq!(
        single_error("f.yml", text),
        "f.yml:2:8: nodes: `max` (2) must not be below `min` and `target` (3)"
    );
    let text = "type: service\ncommands: [serve]\nport: 8000\nports: [8080]\n";
    assert!(single_error("s.yml", text)
        .starts_with("s.yml:4:1: ports: unknown field `ports`, did you mean `port`?"));
    let text = "type: volume\nname: data\nsize: 100GB\n";
    assert_eq!(
        single_error("v.yml", text),
        "v.yml:1:1: backend: missing field `backend`"
    );
    let text = "type: task\ncommands: [echo]\nretry:\n  on_events: [no-capacity, oops]\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:4:28: retry.on_events[1]: expected one of `no-capacity`, `interruption`, `error`, found \"oops\""
    );
    let text = "type: task\nimage: ubuntu\nnodes: 2\ngroups:\n  - nodes: 1\n";
    assert_eq!(
        single_error("t.yml", text),
        "t.yml:3:1: nodes: `nodes` and `groups` are mutually exclusive; give each group its `nodes`"
    );
}

proptest! {
    #[test]
    fn arbitrary_yaml_like_text_never_panics(text in "[a-z0-9:\\-\\[\\]{}, \n\"'&*!|>#.~]{0,300}") {
        let _ = parse_configuration("fuzz.yml", &text);
        let _ = yaml_to_json("fuzz.yml", &text);
    }

    #[test]
    fn damaged_corpus_files_never_panic(cut in 0usize..2000, len in 0usize..40) {
        let text = "type: service\nname: svc\nimage: vllm\nport: 8000\nreplicas:\n  - count: 1..4\n    scaling: {metric: rps, target: 3}\n    resources: {gpu: H200:8}\nmodel: {name: m, format: openai}\nprobes: [{type: http, url: /health}]\nenv: [A=1, B]\nvolumes: [data:/data, {instance_path: /x, path: /y}]\n";
        let start = cut % text.len();
        let end = (start + len).min(text.len());
        let damaged = format!("{}{}", &text[..start], &text[end..]);
        let _ = parse_configuration("damaged.yml", &damaged);
    }
}
