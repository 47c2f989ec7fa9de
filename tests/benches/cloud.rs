//! Figures of the cloud backends against a real `flotillad` and fake providers (build the
//! binaries first: `cargo build --release --bins`; run: `cargo bench -p flotilla-e2e --bench
//! cloud`; as root, for Lambda's machines on port 22 of loopback addresses):
//!
//! 1. provisioning overhead: from the fake Lambda's first "active" to the job's first log line
//!    (the job prints the time it started), against the baseline of the `pool` backend in the
//!    same run (from `run.apply` to the first log line: a machine that is up at once);
//! 2. `offer.list` with Vast.ai's online search, median and p99, with the fake provider's own
//!    handling time separated out, against `offer.list` without cloud backends (catalog only).

use flotilla_e2e::cloud::{lambda, vastai};
use flotilla_e2e::sshd::{ssh_keygen, TestHost, TWO_H100};
use flotilla_e2e::{percentile, repo_root, TestDaemon};
use flotilla_protocol::rpc::{methods, OfferQuery};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RUNS: usize = 5;
const QUERIES: usize = 60;

fn catalogs() -> String {
    repo_root().join("../shared/catalogs").display().to_string()
}

fn task(name: &str, fleet: &str) -> String {
    format!(
        "type: task\nname: {name}\nfleets: [{fleet}]\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:2}}\ncommands:\n  - date +%s.%N\n"
    )
}

fn wall(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The job's first log line: the wall time it started.
fn first_line_time(d: &TestDaemon, run: &str) -> f64 {
    d.wait_status(run, &["done", "failed"], Duration::from_secs(120));
    let log = String::from_utf8(d.logs(run)).unwrap_or_default();
    log.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in the log of {run}: {log:?}"))
}

fn fleet(d: &TestDaemon, name: &str, backend: &str) {
    let p = d.write_config(
        &format!("{name}.yml"),
        &format!(
            "type: fleet\nname: {name}\nnodes: 0..1\nidle_duration: 1h\nbackends: [{backend}]\n"
        ),
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap_or_default(), "-y"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stats(label: &str, v: &mut [f64]) {
    let n = v.len();
    let median = percentile(v, 0.5);
    let p99 = percentile(v, 0.99);
    let max = v.iter().cloned().fold(f64::MIN, f64::max);
    println!("{label}: n={n} median={median:.1} ms p99={p99:.1} ms max={max:.1} ms");
}

fn provisioning() {
    // cloud: Lambda, machines up 300 ms after their launch
    let cloud = lambda::start("bench_key", 220..230);
    let mut d = TestDaemon::new();
    d.write_daemon_config(&format!(
        "health_interval_secs: 1\ncatalog_dir: {}\nbackends:\n  - type: lambda\n    creds: {{type: api_key, api_key: bench_key}}\n    api_url: {}/api/v1\n",
        catalogs(),
        cloud.url()
    ));
    d.spawn();
    let mut overhead = Vec::new();
    let mut total = Vec::new();
    for i in 0..RUNS {
        let f = format!("c{i}");
        fleet(&d, &f, "lambda");
        let submitted = wall(SystemTime::now());
        let run = d.apply_detached(&format!("cb{i}"), &task(&format!("cb{i}"), &f));
        let first = first_line_time(&d, &run);
        let active = cloud
            .lock()
            .machines
            .last()
            .and_then(|m| m.active_wall)
            .map(wall)
            .unwrap_or(f64::NAN);
        overhead.push((first - active) * 1000.0);
        total.push((first - submitted) * 1000.0);
    }
    d.terminate();

    // baseline: the pool backend, a machine that is up at once
    let mut p = TestDaemon::new();
    let key = ssh_keygen(&p.dir.path().join("id"));
    let hosts: Vec<TestHost> = (0..RUNS as u8)
        .map(|i| TestHost::start(230 + i, &key, Some(TWO_H100)))
        .collect();
    let mut cfg = format!(
        "health_interval_secs: 1\nbackends:\n  - type: pool\n    name: lab\n    user: root\n    identity_file: {}\n    hosts:\n",
        key.path.display()
    );
    for h in &hosts {
        cfg.push_str(&format!(
            "      - {{hostname: {}, port: {}, instance_type: h100x2, price: 2.5, resources: {{cpus: 2, memory_gb: 8, disk_gb: 100, gpus: [{{name: H100, memory_gb: 80}}, {{name: H100, memory_gb: 80}}]}}}}\n",
            h.ip, h.port
        ));
    }
    p.write_daemon_config(&cfg);
    p.spawn();
    let mut baseline = Vec::new();
    for i in 0..RUNS {
        let f = format!("p{i}");
        fleet(&p, &f, "lab");
        let submitted = wall(SystemTime::now());
        let run = p.apply_detached(&format!("pb{i}"), &task(&format!("pb{i}"), &f));
        let first = first_line_time(&p, &run);
        baseline.push((first - submitted) * 1000.0);
    }
    p.terminate();
    println!("== provisioning (goal: overhead under 1000 ms)");
    stats(
        "lambda: provider active -> job's first log line (flotilla's overhead)",
        &mut overhead,
    );
    stats(
        "lambda: run.apply -> job's first log line (300 ms boot included)",
        &mut total,
    );
    stats(
        "baseline pool: run.apply -> job's first log line",
        &mut baseline,
    );
}

fn offers() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let query = OfferQuery {
        gpu: Some("H100:2".into()),
        ..OfferQuery::default()
    };
    let time_queries = |d: &TestDaemon| -> Vec<f64> {
        rt.block_on(async {
            let c = d.client().await;
            let mut v = Vec::new();
            for _ in 0..QUERIES {
                let t = Instant::now();
                c.call::<methods::OfferList>(&query)
                    .await
                    .expect("offer.list");
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            v
        })
    };
    println!("== offer.list (gpu H100:2), {QUERIES} calls each");
    // baseline: the catalog alone
    let mut base = TestDaemon::new();
    base.write_daemon_config(&format!("catalog_dir: {}\n", catalogs()));
    base.spawn();
    let mut v = time_queries(&base);
    stats("baseline: catalog only, no cloud backend", &mut v);
    base.terminate();
    for latency_ms in [0u64, 50] {
        let cloud = vastai::start("bench_vast", 240..241);
        cloud.lock().behaviour.latency = Duration::from_millis(latency_ms);
        let mut d = TestDaemon::new();
        d.write_daemon_config(&format!(
            "catalog_dir: {}\nbackends:\n  - type: vastai\n    creds: {{type: api_key, api_key: bench_vast}}\n    api_url: {}/api/v0\n",
            catalogs(),
            cloud.url()
        ));
        d.spawn();
        cloud.lock().handling.clear();
        let mut v = time_queries(&d);
        let mut provider: Vec<f64> = cloud
            .lock()
            .handling
            .iter()
            .filter(|(r, _)| r.contains("bundles"))
            .map(|(_, t)| t.as_secs_f64() * 1000.0)
            .collect();
        // The searches of the queries are the last ones (a refresh at start may come first).
        let skip = provider.len().saturating_sub(v.len());
        provider.drain(..skip);
        let mut own: Vec<f64> = v.iter().zip(provider.iter()).map(|(a, b)| a - b).collect();
        stats(
            &format!("vastai online search, provider latency {latency_ms} ms: offer.list"),
            &mut v,
        );
        stats("  of which the provider's own handling", &mut provider);
        stats(
            "  flotilla's share (offer.list minus the provider's handling)",
            &mut own,
        );
        d.terminate();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    provisioning();
    offers();
}
