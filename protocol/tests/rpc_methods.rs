//! Every socket method's params and result survive a trip through JSON, the method names are
//! unique, and the named result types write exactly the JSON the daemon sent before they existed.

use flotilla_protocol::config::{parse_configuration, Range};
use flotilla_protocol::model::{Event, EventKind, EventSubject, Fleet, Instance, Run, User};
use flotilla_protocol::rpc::{self, methods, Method, Stream};
use flotilla_protocol::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt::Debug;

fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture matches the model")
}

/// Params through `decode_params` (the daemon's side), result through `encode_result` and back.
fn round_trip<M: Method>(params: M::Params, result: M::Result)
where
    M::Params: PartialEq + Debug,
    M::Result: PartialEq + Debug,
{
    let text = serde_json::to_string(&params).expect("params serialise");
    let back = rpc::decode_params::<M>(Some(serde_json::from_str(&text).expect("JSON")))
        .expect("params decode");
    assert_eq!(back, params, "{} params", M::NAME);
    let value = rpc::encode_result::<M>(&result).expect("result encodes");
    let text = serde_json::to_string(&value).expect("result serialises");
    let back: M::Result = serde_json::from_str(&text).expect("result decodes");
    assert_eq!(back, result, "{} result", M::NAME);
}

fn item_round_trip<S: Stream>(item: S::Item)
where
    S::Item: PartialEq + Debug,
{
    let n = rpc::methods::encode_item::<S>(&json!(7), &item).expect("item encodes");
    assert_eq!(n.method, S::ITEM);
    assert_eq!(
        n.params["id"],
        json!(7),
        "notifications carry the request id"
    );
    let back = rpc::decode_item::<S>(n.params).expect("item decodes");
    assert_eq!(back, item, "{} item", S::ITEM);
}

fn t(ms: u64) -> Timestamp {
    Timestamp(1_795_000_000_000 + ms)
}

fn run() -> Run {
    let config = parse_configuration(
        "task.yml",
        "type: task\nname: train\ncommands:\n  - echo hi\n",
    )
    .expect("valid")
    .as_run()
    .expect("a run");
    from_json(json!({
        "id": 3, "name": "r", "user": "ana", "uid": 1000, "status": "running",
        "termination_reason": null, "status_message": null,
        "submitted_at": t(0), "finished_at": null,
        "configuration_type": "task", "configuration_path": "task.yml",
        "configuration": config,
        "jobs": [{
            "replica_num": 0, "job_num": 0, "job_name": "r-0-0",
            "id": 4, "submission_num": 0, "status": "running", "termination_reason": null,
            "termination_message": null, "exit_code": null, "instance": "local-0",
            "instance_id": 2, "fleet": "local", "gpus": [0], "blocks": 1, "price": 0.5,
            "submitted_at": t(1), "started_at": t(2), "finished_at": null
        }]
    }))
}

fn instance() -> Instance {
    from_json(json!({
        "id": 2, "name": "local-0", "fleet": "local", "instance_num": 0, "status": "idle",
        "unreachable": false, "termination_reason": null, "backend": "local", "region": "local",
        "hostname": "localhost", "price": 0.0,
        "resources": {"cpus": 8, "cpu_arch": "x86", "memory_gb": 32.0, "disk_gb": 100.0, "gpus": []},
        "total_blocks": 1, "busy_blocks": 0, "created_at": t(0), "error": null
    }))
}

fn fleet() -> Fleet {
    from_json(json!({
        "id": 1, "name": "local", "status": "active", "user": "root", "created_at": t(0),
        "configuration": null, "instances": [instance()]
    }))
}

fn user() -> User {
    User {
        uid: 1000,
        name: "ana".into(),
        admin: false,
        ssh_public_key: "ssh-ed25519 AAAA ana".into(),
        ssh_private_key: Some("-----BEGIN-----".into()),
        created_at: t(0),
        retired_ssh_keys: vec!["ssh-ed25519 BBBB ana".into()],
        token: Some("flt_00".into()),
        token_hash: None,
    }
}

fn event() -> Event {
    Event {
        seq: 9,
        time: t(5),
        kind: EventKind::Job,
        resource: "r/0/0".into(),
        old_status: Some("provisioning".into()),
        new_status: Some("running".into()),
        reason: None,
        message: Some("started".into()),
    }
}

fn apply_params() -> rpc::RunApplyParams {
    rpc::RunApplyParams {
        configuration: "type: task\ncommands: [echo]\n".into(),
        file_name: Some("task.yml".into()),
        archives: Vec::new(),
        env: [("HF_TOKEN".to_string(), "x".to_string())].into(),
        name: Some("r".into()),
    }
}

fn target() -> rpc::LogTarget {
    rpc::LogTarget {
        run: "r".into(),
        replica: 1,
        job: 2,
        submission: Some(3),
    }
}

#[test]
fn method_names_are_unique() {
    let mut seen = HashSet::new();
    for name in methods::ALL.iter().chain([
        &methods::LOGS_CHUNK,
        &methods::EVENT,
        &methods::FILE_UPLOAD_READY,
    ]) {
        assert!(seen.insert(*name), "{name} is declared twice");
    }
    assert_eq!(methods::ALL.len(), 31);
    assert_eq!(methods::SecretSet::NAME, "secret.set");
    assert_eq!(methods::BackendList::NAME, "backend.list");
    assert_eq!(methods::RunPlan::NAME, "run.plan");
    assert_eq!(methods::UserRefreshSshKey::NAME, "user.refresh_ssh_key");
    assert_eq!(methods::UserRefreshToken::NAME, "user.refresh_token");
}

#[test]
fn hello() {
    round_trip::<methods::Hello>(
        rpc::HelloParams {
            protocol: "1.0".into(),
            client: Some("flotilla-cli".into()),
        },
        rpc::HelloResult {
            protocol: "1.0".into(),
            daemon_version: "0.1.0".into(),
            user: "ana".into(),
            uid: 1000,
            admin: true,
        },
    );
}

#[test]
fn run_plan() {
    let offer = from_json(json!({
        "backend": "local", "region": "local", "instance_type": "local",
        "resources": flotilla_protocol::config::ResourcesSpec::default(),
        "price": 0.0, "spot": false, "availability": "available"
    }));
    round_trip::<methods::RunPlan>(
        apply_params(),
        rpc::RunPlan {
            run_name: "r".into(),
            configuration_type: "task".into(),
            user: "ana".into(),
            current_run_status: Some("done".into()),
            jobs: vec![rpc::JobPlan {
                replica_num: 0,
                job_num: 0,
                job_name: "r-0-0".into(),
                offers: vec![offer],
                total_offers: 1,
                max_price: Some(0.0),
            }],
            update: None,
        },
    );
}

#[test]
fn run_apply_get_stop_list() {
    round_trip::<methods::RunApply>(apply_params(), run());
    round_trip::<methods::RunGet>(rpc::RunNameParams { name: "r".into() }, run());
    round_trip::<methods::RunStop>(
        rpc::RunStopParams {
            name: "r".into(),
            abort: true,
        },
        run(),
    );
    round_trip::<methods::RunList>(rpc::RunListParams { all: true }, vec![run(), run()]);
}

#[test]
fn run_delete_writes_the_json_of_before() {
    round_trip::<methods::RunDelete>(
        rpc::RunNameParams { name: "r".into() },
        rpc::Deleted {
            deleted: "r".into(),
        },
    );
    let v = rpc::encode_result::<methods::RunDelete>(&rpc::Deleted {
        deleted: "r".into(),
    });
    assert_eq!(v, Ok(json!({"deleted": "r"})));
}

#[test]
fn logs_read() {
    round_trip::<methods::LogsRead>(
        rpc::LogsReadParams {
            target: target(),
            offset: 10,
            limit: Some(100),
        },
        rpc::LogsReadResult {
            chunk: rpc::LogChunk::from_bytes(10, b"hi\n"),
            next_offset: 13,
            size: 13,
            complete: true,
        },
    );
}

#[test]
fn logs_follow_and_its_chunks() {
    round_trip::<methods::LogsFollow>(
        rpc::LogsFollowParams {
            target: target(),
            offset: 5,
            attach: true,
        },
        rpc::LogsFollowEnd {
            next_offset: 99,
            job_status: "done".into(),
            exit_code: Some(0),
            termination_reason: Some("done_by_runner".into()),
        },
    );
    item_round_trip::<methods::LogsFollow>(rpc::LogChunk::from_bytes(0, b"text"));
    item_round_trip::<methods::LogsFollow>(rpc::LogChunk::from_bytes(4, &[0xff, 0xfe, 0]));
}

#[test]
fn events_watch_and_its_notices() {
    round_trip::<methods::EventsWatch>(
        rpc::EventsParams {
            since: Some(4),
            limit: None,
        },
        (),
    );
    item_round_trip::<methods::EventsWatch>(rpc::EventNotice { event: event() });
}

#[test]
fn event_list() {
    round_trip::<methods::EventList>(
        rpc::EventsParams {
            since: None,
            limit: Some(50),
        },
        rpc::EventList {
            events: vec![event()],
        },
    );
}

#[test]
fn fleets_and_instances() {
    round_trip::<methods::FleetList>(rpc::NoParams {}, vec![fleet()]);
    round_trip::<methods::InstanceList>(rpc::NoParams {}, vec![instance()]);
    round_trip::<methods::FleetGet>(
        rpc::FleetNameParams {
            name: "local".into(),
        },
        fleet(),
    );
    round_trip::<methods::FleetApply>(
        rpc::FleetApplyParams {
            configuration: "type: fleet\n".into(),
            file_name: None,
            identity_keys: [("~/.ssh/id".to_string(), "KEY".to_string())].into(),
        },
        fleet(),
    );
    round_trip::<methods::FleetDelete>(
        rpc::FleetNameParams { name: "gpu".into() },
        rpc::Deleted {
            deleted: "gpu".into(),
        },
    );
    assert_eq!(serde_json::to_value(rpc::NoParams {}).ok(), Some(json!({})));
}

#[test]
fn offer_list() {
    round_trip::<methods::OfferList>(
        rpc::OfferQuery {
            gpu: Some("A100:2".into()),
            max_price: Some(3.5),
            backends: vec!["aws".into()],
            group_by: vec!["gpu".into()],
            ..Default::default()
        },
        rpc::OfferList {
            offers: vec![],
            total: 0,
            groups: Some(vec![rpc::OfferGroup {
                gpu: "A100:80GB:2".into(),
                spot: vec!["spot".into()],
                price_per_gpu: Range::new(Some(1.5), Some(2.0)),
                backends: vec!["aws".into()],
                regions: vec!["us-east-1".into()],
                count: Range::new(Some(2), Some(2)),
                offers: 3,
            }]),
            warnings: vec!["stale cache".into()],
        },
    );
}

#[test]
fn daemon_status_and_stop() {
    round_trip::<methods::DaemonStatus>(
        rpc::NoParams {},
        rpc::DaemonStatus {
            version: "0.1.0".into(),
            protocol: "1.0".into(),
            pid: 42,
            socket: "/run/flotilla.sock".into(),
            data_dir: "/var/lib/flotilla".into(),
            started_at: t(0),
            uptime_secs: 5,
            runs: 3,
            active_runs: 1,
            fleets: 1,
            instances: 1,
            http: rpc::HttpStatus {
                listen: "127.0.0.1:3000".into(),
                address: Some("127.0.0.1:3000".into()),
                error: None,
            },
        },
    );
    round_trip::<methods::DaemonStop>(rpc::NoParams {}, rpc::Stopping { stopping: true });
    assert_eq!(
        rpc::encode_result::<methods::DaemonStop>(&rpc::Stopping { stopping: true }),
        Ok(json!({"stopping": true}))
    );
}

#[test]
fn metrics_get() {
    round_trip::<methods::MetricsGet>(
        rpc::MetricsParams {
            instance: None,
            run: Some("r".into()),
            window_secs: Some(60),
        },
        rpc::MetricsResult {
            series: vec![rpc::GpuSeries {
                instance: "local/local-0".into(),
                gpu: 0,
                samples: vec![rpc::GpuSample {
                    time: t(9),
                    util_percent: 87.5,
                    memory_used_gb: 10.25,
                    memory_total_gb: 80.0,
                }],
            }],
        },
    );
}

#[test]
fn users_and_tunnels() {
    round_trip::<methods::UserMe>(rpc::NoParams {}, user());
    round_trip::<methods::UserRefreshSshKey>(rpc::RefreshKeyParams { uid: Some(1001) }, user());
    round_trip::<methods::TunnelOpen>(
        rpc::TunnelParams {
            run: "r".into(),
            replica: 0,
            job: 1,
            port: Some(8000),
        },
        rpc::TunnelInfo {
            instance: "gpu/gpu-0".into(),
            hostname: "10.0.0.5".into(),
            port: 22,
            user: "ubuntu".into(),
            host_key: Some("ssh-ed25519 AAAA".into()),
            workdir: None,
        },
    );
}

#[test]
fn absent_params_read_as_an_empty_object_and_bad_ones_are_invalid_params() {
    assert_eq!(
        rpc::decode_params::<methods::RunList>(None),
        Ok(rpc::RunListParams { all: false })
    );
    let err = rpc::decode_params::<methods::RunStop>(Some(json!({"nme": "x"})))
        .expect_err("name is required");
    assert_eq!(err.code, rpc::codes::INVALID_PARAMS);
    assert!(
        err.message.starts_with("run.stop: invalid params: "),
        "{}",
        err.message
    );
}

/// Today's JSON of an event, as `events.watch` sent it before `kind` had a type.
#[test]
fn events_serialise_to_the_json_of_before() {
    let wire = json!({
        "event": {
            "seq": 9, "time": "2026-11-18T11:06:40.005Z", "kind": "job", "resource": "r/0/0",
            "old_status": "provisioning", "new_status": "running", "reason": null,
            "message": "started"
        }
    });
    let notice = rpc::EventNotice { event: event() };
    assert_eq!(serde_json::to_value(&notice).ok(), Some(wire.clone()));
    assert_eq!(from_json::<rpc::EventNotice>(wire), notice);
    for (kind, text) in [
        (EventKind::Run, "run"),
        (EventKind::Job, "job"),
        (EventKind::Instance, "instance"),
        (EventKind::Fleet, "fleet"),
        (EventKind::Other("volume".into()), "volume"),
    ] {
        assert_eq!(serde_json::to_value(&kind).ok(), Some(json!(text)));
        assert_eq!(from_json::<EventKind>(json!(text)), kind);
        assert_eq!(
            format!("{kind:<9}|"),
            format!("{text:<9}|"),
            "padding is kept"
        );
    }
}

#[test]
fn event_subjects_are_read_from_kind_and_resource() {
    let mut e = event();
    e.resource = "a/b-run/1/2".into();
    assert_eq!(
        e.subject(),
        Some(EventSubject::Job {
            run: "a/b-run".into(),
            replica: 1,
            job: 2
        })
    );
    e.kind = EventKind::Instance;
    e.resource = "gpu/gpu-0".into();
    assert_eq!(
        e.subject(),
        Some(EventSubject::Instance {
            fleet: "gpu".into(),
            instance: "gpu-0".into()
        })
    );
    e.kind = EventKind::Run;
    e.resource = "r".into();
    assert_eq!(e.subject(), Some(EventSubject::Run { run: "r".into() }));
    e.kind = EventKind::Fleet;
    assert_eq!(e.subject(), Some(EventSubject::Fleet { fleet: "r".into() }));
    e.kind = EventKind::Job;
    assert_eq!(
        e.subject(),
        None,
        "a job resource needs replica and job numbers"
    );
}

#[test]
fn run_job_finds_a_job_by_replica_and_job_number() {
    let mut r = run();
    let mut second = r.jobs[0].clone();
    second.replica_num = 1;
    second.job_num = 1;
    second.job_name = "r-1-1".into();
    r.jobs.push(second);
    assert_eq!(r.job(1, 1).map(|j| j.job_name.as_str()), Some("r-1-1"));
    assert_eq!(r.job(0, 0).map(|j| j.job_name.as_str()), Some("r-0-0"));
    assert!(r.job(0, 1).is_none() && r.job(1, 0).is_none());
    if let Some(j) = r.job_mut(1, 1) {
        j.current.exit_code = Some(3);
    }
    assert_eq!(r.jobs[1].current.exit_code, Some(3));
}

#[test]
fn secret_methods() {
    let info = |value: Option<&str>| rpc::SecretInfo {
        name: "hf_token".into(),
        set_by: "root".into(),
        set_by_uid: 0,
        created_at: flotilla_protocol::Timestamp(1_000),
        updated_at: flotilla_protocol::Timestamp(2_000),
        value: value.map(str::to_string),
    };
    round_trip::<methods::SecretSet>(
        rpc::SecretSetParams {
            name: "hf_token".into(),
            value: "v".into(),
        },
        info(None),
    );
    round_trip::<methods::SecretList>(rpc::NoParams {}, vec![info(None)]);
    round_trip::<methods::SecretGet>(
        rpc::SecretNameParams {
            name: "hf_token".into(),
        },
        info(Some("v")),
    );
    round_trip::<methods::SecretDelete>(
        rpc::SecretNameParams {
            name: "hf_token".into(),
        },
        rpc::Deleted {
            deleted: "hf_token".into(),
        },
    );
    // A listing never carries a value field.
    let listed = serde_json::to_string(&info(None)).expect("JSON");
    assert!(!listed.contains("value"), "{listed}");
}
