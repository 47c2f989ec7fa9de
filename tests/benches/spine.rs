//! Figures of the spine against a real `flotillad` process (build first:
//! `cargo build --release --bins`; run: `cargo bench -p flotilla-e2e --bench spine`):
//! idle RSS and `run.list` round trips with 1,000 runs stored, apply -> running, log throughput.

use flotilla_daemon::store::Store;
use flotilla_e2e::{apply_to_running_ms, percentile, wait_finished, TestDaemon};
use flotilla_protocol::client::RawStreamItem;
use flotilla_protocol::config::parse_configuration;
use flotilla_protocol::model::{Job, JobStatus, Run, RunStatus, RunTerminationReason};
use flotilla_protocol::rpc::{methods, LogTarget, LogsFollowParams, RunListParams};
use flotilla_protocol::Timestamp;
use std::path::Path;
use std::time::{Duration, Instant};

const TASK: &str =
    "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - sleep 0.2\n";

/// Stores `n` finished runs, as if the daemon had run them.
fn seed_runs(data: &Path, n: u64) {
    std::fs::create_dir_all(data).expect("data dir");
    let store = Store::open(&data.join("state")).expect("store");
    let cfg = parse_configuration("bench.yml", TASK)
        .expect("config")
        .as_run()
        .expect("run");
    for i in 0..n {
        let now = Timestamp::now();
        let mut sub =
            flotilla_daemon::lifecycle::new_submission(store.next_id().expect("id"), 0, now);
        sub.status = JobStatus::Done;
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
            service: None,
            next_triggered_at: None,
            archives: Vec::new(),
            cluster_key: None,
            deployment_num: 0,
            desired_replicas: Default::default(),
            last_scaled_at: None,
            jobs: vec![Job {
                replica_num: 0,
                job_num: 0,
                job_name: format!("seeded-{i}-0-0"),
                replica_group: None,
                deployment_num: 0,
                current: sub,
                previous_submissions: Vec::new(),
            }],
        };
        store.insert_run(&run).expect("insert");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(store.flush()).expect("flush");
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut d = TestDaemon::new();
    seed_runs(&d.data_dir, 1000);
    d.spawn();
    let pid = d.pid().expect("daemon pid");
    rt.block_on(async {
        let c = d.client().await;
        let _: serde_json::Value = c.call_raw(methods::RUN_LIST, RunListParams { all: false }).await.expect("list");
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("daemon RSS idle with 1,000 runs stored: {:.1} MB", rss_mb(pid));

        for (label, all, calls) in [("run.list (active runs)", false, 2000), ("run.list --all (1,000 runs)", true, 50)] {
            let mut lat = Vec::new();
            for i in 0..calls + 20 {
                let t = Instant::now();
                let _: serde_json::Value = c.call_raw(methods::RUN_LIST, RunListParams { all }).await.expect("list");
                if i >= 20 {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            println!(
                "{label} round trip with 1,000 runs stored: median {:.3} ms, p99 {:.3} ms ({calls} calls)",
                percentile(&mut lat, 0.5),
                percentile(&mut lat, 0.99),
            );
        }

        let mut lat = Vec::new();
        for i in 0..40 {
            let name = format!("lat-{i}");
            lat.push(apply_to_running_ms(&d.socket, TASK, &name).await);
            wait_finished(&c, &name).await;
        }
        println!(
            "apply -> running on the idle local instance: median {:.1} ms, p90 {:.1} ms (40 runs)",
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.9)
        );

        // A job writes 512 MiB; a client follows it from the start.
        let big = "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - head -c 536870912 /dev/zero | tr '\\0' 'x'\n";
        apply_to_running_ms(&d.socket, big, "throughput").await;
        let t = Instant::now();
        let mut sub = c
            .subscribe_raw(
                methods::LOGS_FOLLOW,
                LogsFollowParams {
                    target: LogTarget { run: "throughput".into(), replica: 0, job: 0, submission: None },
                    offset: 0,
                    attach: false,
                },
            )
            .await
            .expect("follow");
        let mut bytes = 0usize;
        while let Some(item) = sub.next().await {
            match item {
                RawStreamItem::Item(v) => bytes += v["text"].as_str().map(str::len).unwrap_or(0),
                RawStreamItem::End(_) => break,
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
