//! Parsed configurations resolve every default and serialize to one stable JSON shape.

use flotilla_protocol::config::{
    parse_configuration, yaml_to_json, Blocks, Configuration, Env, FleetNodes, GpuVendor,
    InstanceSelector, PortMapping, Range, RetryEvent, RetrySpec, RunConfiguration, SpotPolicy,
    VolumeMount,
};
use serde_json::json;
use std::collections::BTreeMap;

fn parse(text: &str) -> Configuration {
    parse_configuration("test.yml", text).unwrap_or_else(|e| panic!("should parse:\n{e}"))
}

fn run(text: &str) -> RunConfiguration {
    parse(text).as_run().expect("a run configuration")
}

#[test]
fn resources_have_the_exact_normalized_shape() {
    let config = parse("type: task\ncommands: [nvidia-smi]\nresources: {cpu: 2.., memory: 8GB.., gpu: A100:80GB:2}\n");
    assert_eq!(
        config.to_normalized_json()["resources"],
        json!({
            "cpu": {"arch": null, "count": {"min": 2, "max": null}},
            "memory": {"min": 8.0, "max": null},
            "disk": {"size": {"min": 100.0, "max": null}},
            "shm_size": null,
            "gpu": {
                "vendor": "nvidia",
                "name": ["A100"],
                "count": {"min": 2, "max": 2},
                "memory": {"min": 80.0, "max": 80.0},
                "total_memory": null,
                "compute_capability": null
            }
        })
    );
}

#[test]
fn scalars_may_be_ints_or_strings() {
    let common = run("type: task\ncommands: [x]\nresources:\n  cpu: 2\n  memory: 8\n  gpu: 1\n  shm_size: 512MB\n  disk: 1.5TB..\npriority: \"7\"\n")
        .common()
        .clone();
    let resources = &common.resources;
    assert_eq!(resources.cpu.count, Range::exact(2));
    assert_eq!(resources.memory, Range::exact(8.0));
    assert_eq!(resources.gpu.count, Range::exact(1));
    assert_eq!(resources.gpu.vendor, Some(GpuVendor::Nvidia));
    assert_eq!(resources.gpu.memory, None);
    assert_eq!(resources.shm_size, Some(0.5));
    assert_eq!(resources.disk.size, Range::at_least(1536.0));
    assert_eq!(common.priority, 7);

    let ranges = run("type: task\ncommands: [x]\nresources:\n  cpu: {min: 4, max: 8}\n  memory: {min: 512MB, max: 2TB}\n  disk: {size: 200GB..}\n");
    let resources = &ranges.common().resources;
    assert_eq!(resources.cpu.count, Range::new(Some(4), Some(8)));
    assert_eq!(resources.memory, Range::new(Some(0.5), Some(2048.0)));
    assert_eq!(resources.disk.size, Range::at_least(200.0));

    let cpu_only = run("type: task\ncommands: [x]\nresources: {gpu: 0}\n");
    assert!(cpu_only.common().resources.is_cpu_only());
    assert_eq!(cpu_only.common().resources.gpu.vendor, None);

    let mapping = run("type: task\ncommands: [x]\nresources:\n  cpu: {arch: arm, count: 4..}\n  gpu: {name: [H100, H200], memory: 80GB.., count: 8}\n");
    let resources = &mapping.common().resources;
    assert_eq!(resources.cpu.count, Range::at_least(4));
    assert_eq!(
        resources.gpu.name,
        Some(vec!["H100".to_string(), "H200".to_string()])
    );
    assert_eq!(resources.gpu.vendor, Some(GpuVendor::Nvidia));
    assert_eq!(resources.gpu.to_string(), "H100,H200:80GB..:8");
}

#[test]
fn run_defaults_are_resolved() {
    let config = run("type: task\ncommands: [echo hi]\n");
    let common = config.common();
    assert_eq!(common.priority, 0);
    assert_eq!(common.profile.spot_policy, SpotPolicy::OnDemand);
    assert_eq!(common.policy.max_duration, None);
    assert_eq!(common.policy.stop_duration, Some(300));
    assert_eq!(common.profile.idle_duration, Some(300));
    assert_eq!(common.profile.retry, None);
    assert_eq!(config.nodes(), 1);
    assert_eq!(config.replicas(), Range::exact(1));
    assert_eq!(config.commands(), ["echo hi"]);
    assert_eq!(config.type_name(), "task");
    let json = config.to_normalized_json();
    assert_eq!(json["creation_policy"], "reuse-or-create");
    assert_eq!(json["type"], "task");
}

#[test]
fn durations_normalize_to_seconds_or_off() {
    let config =
        run("type: task\ncommands: [x]\nmax_duration: 2h\nstop_duration: off\nidle_duration: -1\n");
    let common = config.common();
    assert_eq!(common.policy.max_duration, Some(7200));
    assert_eq!(common.policy.stop_duration, None);
    assert_eq!(common.profile.idle_duration, None);

    let config = run(
        "type: task\ncommands: [x]\nmax_duration: false\nstop_duration: 90\nidle_duration: 1w\n",
    );
    let common = config.common();
    assert_eq!(common.policy.max_duration, None);
    assert_eq!(common.policy.stop_duration, Some(90));
    assert_eq!(common.profile.idle_duration, Some(604_800));

    let config = run("type: task\ncommands: [x]\nidle_duration: off\nutilization_policy: {min_gpu_utilization: 10, time_window: 1h}\n");
    assert_eq!(config.common().profile.idle_duration, None);
    assert_eq!(
        config.to_normalized_json()["utilization_policy"],
        json!({"min_gpu_utilization": 10, "time_window": 3600})
    );

    let RunConfiguration::DevEnvironment(dev) =
        run("type: dev-environment\nide: vscode\ninactivity_duration: 2h\n")
    else {
        panic!("a dev environment")
    };
    assert_eq!(dev.inactivity_duration, Some(7200));

    let Configuration::Fleet(fleet) = parse("type: fleet\nnodes: 2\n") else {
        panic!("a fleet")
    };
    assert_eq!(fleet.profile.idle_duration, Some(259_200));
}

#[test]
fn env_accepts_a_mapping_or_a_list() {
    let expected = Env(BTreeMap::from([
        ("HF_TOKEN".to_string(), None),
        ("MODEL".to_string(), Some("llama=3".to_string())),
    ]));
    let from_list = run("type: task\ncommands: [x]\nenv:\n  - HF_TOKEN\n  - MODEL=llama=3\n");
    let from_map = run("type: task\ncommands: [x]\nenv:\n  HF_TOKEN:\n  MODEL: llama=3\n");
    assert_eq!(from_list.common().env, expected);
    assert_eq!(from_map.common().env, expected);
    assert_eq!(
        from_list.to_normalized_json()["env"],
        json!({"HF_TOKEN": null, "MODEL": "llama=3"})
    );
    let caller = BTreeMap::from([("HF_TOKEN".to_string(), "hf_x".to_string())]);
    let resolved = expected.resolve(&caller).expect("resolves");
    assert_eq!(resolved["HF_TOKEN"], "hf_x");
}

#[test]
fn retry_normalizes_true_false_and_mapping() {
    let all = RetrySpec {
        on_events: RetryEvent::ALL.to_vec(),
        duration: 3600,
    };
    assert_eq!(
        run("type: task\ncommands: [x]\nretry: true\n")
            .common()
            .profile
            .retry,
        Some(all)
    );
    assert_eq!(
        run("type: task\ncommands: [x]\nretry: false\n")
            .common()
            .profile
            .retry,
        None
    );
    let config = run(
        "type: task\ncommands: [x]\nretry:\n  on_events: [no-capacity, error]\n  duration: 1d\n",
    );
    assert_eq!(
        config.to_normalized_json()["retry"],
        json!({"on_events": ["no-capacity", "error"], "duration": 86400})
    );
}

#[test]
fn replicas_normalize_to_a_range() {
    let service = |extra: &str| run(&format!("type: service\nport: 8000\n{extra}"));
    assert_eq!(service("commands: [x]\n").replicas(), Range::exact(1));
    assert_eq!(
        service("commands: [x]\nreplicas: 2\n").replicas(),
        Range::exact(2)
    );
    assert_eq!(
        service("commands: [x]\nreplicas: 0..4\nscaling: {metric: rps, target: 10}\n").replicas(),
        Range::new(Some(0), Some(4))
    );
    let groups = service(
        "image: vllm\nreplicas:\n  - name: prefill\n    count: 1..2\n    scaling: {metric: rps, target: 3}\n  - count: 1\n    commands: [serve]\n",
    );
    assert_eq!(groups.replicas(), Range::new(Some(2), Some(3)));
    let RunConfiguration::Service(service) = groups else {
        panic!("a service")
    };
    let names: Vec<_> = service
        .replica_groups
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["prefill", "1"]);
}

#[test]
fn a_replica_group_runs_its_own_commands_image_and_resources() {
    let config = run(
        "type: service\nport: 8000\nimage: base\nresources: {cpu: 8}\nreplicas:\n  - name: a\n    count: 1..2\n    scaling: {metric: rps, target: 3}\n    commands: [serve-a]\n    resources: {cpu: 2}\n  - name: b\n    count: 1\n    python: \"3.12\"\n    commands: [serve-b]\n",
    );
    let RunConfiguration::Service(a) = config.for_replica_group(Some("a")).into_owned() else {
        panic!("a service")
    };
    assert_eq!(a.commands, ["serve-a"]);
    assert_eq!(a.common.image.as_deref(), Some("base"));
    assert_eq!(a.common.resources.cpu.count, Range::exact(2));
    assert_eq!(a.replicas, Range::new(Some(1), Some(2)));
    assert!(a.scaling.is_some() && a.replica_groups.is_none());
    let b = config.for_replica_group(Some("b"));
    assert_eq!(b.commands(), ["serve-b"]);
    assert_eq!(b.common().python.as_deref(), Some("3.12"));
    // No group of that name, or no groups at all: the configuration as it is.
    assert_eq!(*config.for_replica_group(Some("zzz")), config);
    let plain = run("type: service\nport: 8000\ncommands: [x]\n");
    assert_eq!(*plain.for_replica_group(Some("0")), plain);
    let RunConfiguration::Service(s) = &config else {
        panic!("a service")
    };
    let scales: Vec<_> = s.scale_groups().iter().map(|g| (g.name, g.count)).collect();
    assert_eq!(
        scales,
        [("a", Range::new(Some(1), Some(2))), ("b", Range::exact(1))]
    );
}

#[test]
fn ports_volumes_and_model_short_and_long_forms() {
    let RunConfiguration::Service(service) =
        run("type: service\nimage: nginx\nport: \"8000:80\"\nmodel: llama\n")
    else {
        panic!("a service")
    };
    assert_eq!(
        service.port,
        Some(PortMapping {
            local: Some(8000),
            container: 80
        })
    );
    let model = service.model.expect("model");
    assert_eq!(
        (
            model.name.as_str(),
            model.format.as_str(),
            model.prefix.as_deref()
        ),
        ("llama", "openai", Some("/v1"))
    );
    assert!(service.auth);

    let task = run("type: task\ncommands: [x]\nports: [8080, \"9000:90\", \"*:22\"]\nvolumes:\n  - data:/data\n  - /mnt/cache:/cache\n  - {name: [a, b], path: /ab}\n  - {instance_path: /opt, path: /opt, optional: true}\n");
    let common = task.common();
    assert_eq!(common.ports.len(), 3);
    assert_eq!(
        common.ports[2],
        PortMapping {
            local: None,
            container: 22
        }
    );
    assert_eq!(
        common.volumes[1],
        VolumeMount::Instance {
            instance_path: "/mnt/cache".into(),
            path: "/cache".into(),
            optional: false
        }
    );
    assert_eq!(
        common.volumes[2],
        VolumeMount::Network {
            name: vec!["a".into(), "b".into()],
            path: "/ab".into()
        }
    );
}

#[test]
fn fleets_read_nodes_blocks_and_ssh_hosts() {
    let Configuration::Fleet(fleet) = parse(
        "type: fleet\nname: my-fleet\nplacement: cluster\nblocks: auto\nssh_config:\n  user: ubuntu\n  identity_file: ~/.ssh/id_rsa\n  proxy_jump: {hostname: bastion, user: jump}\n  hosts:\n    - 10.0.0.1\n    - {hostname: 10.0.0.2, port: 2222, blocks: 4, internal_ip: 192.168.0.2}\n",
    ) else {
        panic!("a fleet")
    };
    assert_eq!(fleet.blocks, Blocks::Auto);
    let ssh = fleet.ssh_config.expect("ssh_config");
    assert_eq!(ssh.hosts[0].hostname, "10.0.0.1");
    assert_eq!(ssh.hosts[1].port, Some(2222));
    assert_eq!(ssh.hosts[1].blocks, Some(Blocks::Count(4)));
    assert_eq!(ssh.proxy_jump.expect("proxy").hostname, "bastion");

    let nodes = |spec: &str| match parse(&format!("type: fleet\nnodes: {spec}\n")) {
        Configuration::Fleet(fleet) => fleet.nodes,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        nodes("2"),
        Some(FleetNodes {
            min: 2,
            target: 2,
            max: Some(2)
        })
    );
    assert_eq!(
        nodes("0..4"),
        Some(FleetNodes {
            min: 0,
            target: 0,
            max: Some(4)
        })
    );
    assert_eq!(
        nodes("1.."),
        Some(FleetNodes {
            min: 1,
            target: 1,
            max: None
        })
    );
    assert_eq!(
        nodes("{min: 1, target: 2, max: 3}"),
        Some(FleetNodes {
            min: 1,
            target: 2,
            max: Some(3)
        })
    );
}

#[test]
fn dev_environment_commands_are_its_init() {
    let config = run("type: dev-environment\nide: cursor\ninit: [pip install x]\ninstances: [my-fleet-3, {fleet: f, instance: 2}]\n");
    assert_eq!(config.commands(), ["pip install x"]);
    assert_eq!(
        config.common().policy.instances,
        Some(vec![
            InstanceSelector::Name {
                name: "my-fleet-3".into()
            },
            InstanceSelector::FleetInstance {
                fleet: "f".into(),
                instance: 2
            },
        ])
    );
}

#[test]
fn task_groups_sum_their_nodes() {
    let config = run("type: task\nimage: ray\ngroups:\n  - name: head\n    nodes: 1\n    commands: [ray start --head]\n  - name: workers\n    nodes: 3\n");
    assert_eq!(config.nodes(), 4);
}

#[test]
fn run_configuration_round_trips_through_its_json() {
    let texts = [
        "type: task\nname: train\npython: 3.10\nnodes: 2\ncommands: [python train.py]\nresources: {gpu: H100:8, shm_size: 16GB}\nretry: {on_events: [interruption], duration: 2h}\nenv: [A=1, B]\nvolumes: [data:/data]\nfiles: [.:/workspace]\nrepos: [..]\ntags: {team: ml}\nmax_price: 2.5\n",
        "type: service\nimage: vllm\nport: 8000\ncommands: [serve]\nreplicas: 1..3\nscaling: {metric: rps, target: 5}\nprobes: [{type: http, url: /health, interval: 15s}]\nmodel: {name: m, format: tgi, chat_template: x}\ngateway: false\nhttps: auto\nrate_limits: [{prefix: /api, rps: 2, key: {type: header, header: X-Key}}]\n",
        "type: dev-environment\nide: vscode\nversion: 1.90.0\nimage: ubuntu\nports: [\"*:8888\"]\nspot_policy: auto\nschedule: {cron: '0 8 * * mon-fri'}\n",
    ];
    for text in texts {
        let config = run(text);
        let json = config.to_normalized_json();
        let back: RunConfiguration =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}\n{json:#}"));
        assert_eq!(back, config);
    }
}

#[test]
fn every_configuration_kind_round_trips() {
    let texts = [
        "type: fleet\nname: f1\nnodes: {min: 0, max: 2}\nresources: {gpu: 24GB..:1..}\nbackends: [aws]\nidle_duration: 1h\nenv: {HTTP_PROXY: http://proxy}\n",
        "type: volume\nname: data\nbackend: aws\nregion: eu-west-1\nsize: 100GB\nauto_cleanup_duration: 1d\n",
    ];
    for text in texts {
        let config = parse(text);
        let back: Configuration =
            serde_json::from_value(config.to_normalized_json()).expect("reads back");
        assert_eq!(back, config);
        assert!(config.as_run().is_none());
    }
}

#[test]
fn yaml_to_json_types_plain_scalars() {
    let value = yaml_to_json("flotilla.yml", "socket: /run/x.sock\nport: 22\nratio: 0.5\nenabled: yes\ndebug: false\nlist: [a, \"1\"]\nempty:\n").expect("parses");
    assert_eq!(
        value,
        json!({"socket": "/run/x.sock", "port": 22, "ratio": 0.5, "enabled": "yes", "debug": false, "list": ["a", "1"], "empty": null})
    );
    assert_eq!(
        yaml_to_json("x.yml", "").expect("empty"),
        serde_json::Value::Null
    );
    let error = yaml_to_json("x.yml", "a: [1\n").expect_err("syntax");
    assert_eq!(error.0[0].line, 2);
}
