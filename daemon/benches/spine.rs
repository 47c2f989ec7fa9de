//! Figures of the spine against a real `flotillad` process (build it first:
//! `cargo build --release --bins && cargo bench -p flotilla-daemon --bench spine`):
//! apply -> running latency, `run.list` round trip with 1,000 runs stored, idle RSS, log throughput.

use flotilla_daemon::store::Store;
use flotilla_protocol::client::{Client, StreamItem};
use flotilla_protocol::config::parse_configuration;
use flotilla_protocol::model::{Job, Run, RunStatus, RunTerminationReason};
use flotilla_protocol::rpc::{
    methods, EventsParams, LogTarget, LogsFollowParams, RunApplyParams, RunListParams,
};
use flotilla_protocol::Timestamp;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn flotillad() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("flotillad");
    assert!(
        p.exists(),
        "{} missing: cargo build --release --bins first",
        p.display()
    );
    p
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

fn start(dir: &Path) -> Daemon {
    let socket = dir.join("s");
    let child = Command::new(flotillad())
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flotillad");
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "flotillad did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon { child, socket }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const TASK: &str =
    "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - sleep 0.2\n";

fn seed_runs(data: &Path, n: u64) {
    std::fs::create_dir_all(data).expect("data dir");
    let store = Store::open(&data.join("state")).expect("store");
    let cfg = parse_configuration("bench.yml", TASK)
        .expect("config")
        .as_run()
        .expect("run");
    for i in 0..n {
        let now = Timestamp::now();
        let mut sub = flotilla_daemon::runs::new_submission(store.next_id().expect("id"), 0, now);
        sub.status = flotilla_protocol::model::JobStatus::Done;
        sub.exit_code = Some(0);
        let run = Run {
            id: store.next_id().expect("id"),
            name: format!("seeded-{i}"),
            user: "bench".into(),
            uid: 0,
            status: RunStatus::Done,
            termination_reason: Some(RunTerminationReason::AllJobsDone),
            status_message: None,
            submitted_at: now,
            finished_at: Some(now),
            configuration_type: "task".into(),
            configuration_path: None,
            configuration: cfg.clone(),
            caller_env: Default::default(),
            retry_window_started_at: None,
            jobs: vec![Job {
                replica_num: 0,
                job_num: 0,
                job_name: format!("seeded-{i}-0-0"),
                current: sub,
                previous_submissions: Vec::new(),
            }],
        };
        store.insert_run(&run).expect("insert");
    }
    futures_flush(&store);
}

fn futures_flush(store: &Store) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(store.flush()).expect("flush");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::Builder::new()
        .prefix("flb")
        .tempdir_in("/tmp")
        .expect("tmp");
    seed_runs(&tmp.path().join("data"), 1000);
    let d = start(tmp.path());
    rt.block_on(async {
        let c = Client::connect(&d.socket, "bench").await.expect("connect");

        // Idle RSS with 1,000 runs stored.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("daemon RSS idle with 1,000 runs stored: {:.1} MB", rss_kib(d.child.id()) as f64 / 1024.0);

        // run.list with 1,000 runs stored: the default listing and the full one.
        for (label, all) in [("run.list (active)", false), ("run.list --all (1,000 runs)", true)] {
            let mut lat = Vec::new();
            for i in 0..520 {
                let t = Instant::now();
                let _: serde_json::Value = c.call(methods::RUN_LIST, RunListParams { all }).await.expect("list");
                if i >= 20 {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            println!(
                "{label}: median {:.3} ms, p99 {:.3} ms ({} calls)",
                percentile(&mut lat, 0.5),
                percentile(&mut lat, 0.99),
                lat.len()
            );
        }

        // apply -d -> running, on the idle local instance.
        let mut lat = Vec::new();
        for i in 0..40 {
            let mut events = c.subscribe(methods::EVENTS_WATCH, EventsParams::default()).await.expect("watch");
            let name = format!("lat-{i}");
            let t = Instant::now();
            let _: serde_json::Value = c
                .call(
                    methods::RUN_APPLY,
                    RunApplyParams { configuration: TASK.into(), file_name: None, env: Default::default(), name: Some(name.clone()) },
                )
                .await
                .expect("apply");
            loop {
                match events.next().await {
                    Some(StreamItem::Item(v)) => {
                        let e = &v["event"];
                        if e["kind"] == "job" && e["resource"] == format!("{name}/0/0") && e["new_status"] == "running" {
                            break;
                        }
                    }
                    other => panic!("events ended: {other:?}"),
                }
            }
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(300)).await; // let it finish and free its blocks
        }
        println!(
            "apply -> running on the idle local instance: median {:.1} ms, p90 {:.1} ms ({} runs)",
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.9),
            lat.len()
        );

        // Log throughput: a job writes 512 MiB; a client follows from the start.
        let big = "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - head -c 536870912 /dev/zero | tr '\\0' 'x'\n";
        let _: serde_json::Value = c
            .call(
                methods::RUN_APPLY,
                RunApplyParams { configuration: big.into(), file_name: None, env: Default::default(), name: Some("throughput".into()) },
            )
            .await
            .expect("apply");
        let t = Instant::now();
        let mut sub = c
            .subscribe(
                methods::LOGS_FOLLOW,
                LogsFollowParams { target: LogTarget { run: "throughput".into(), replica: 0, job: 0, submission: None }, offset: 0 },
            )
            .await
            .expect("follow");
        let mut bytes = 0usize;
        while let Some(item) = sub.next().await {
            match item {
                StreamItem::Item(v) => bytes += v["text"].as_str().map(str::len).unwrap_or(0),
                StreamItem::End(_) => break,
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "log throughput job -> following client: {:.0} MB/s ({} MiB in {:.2} s)",
            bytes as f64 / 1e6 / secs,
            bytes >> 20,
            secs
        );
    });
}
