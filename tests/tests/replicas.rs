//! A service's replicas, end to end: the real daemon runs each replica in a container of the
//! test image (busybox `httpd`) on this machine, and the tests reach each replica on the port
//! its container published (`jobs[].ports`), read `ps --json` (`jobs[].ready`, the history of
//! submissions, `desired_replicas`), and call the service through the daemon's HTTP endpoint
//! the whole time a replica dies or an update rolls (no call may fail), or while it is scaled to
//! zero (the first call is held until a replica serves it).

use flotilla_e2e::docker::test_image;
use flotilla_e2e::http::{get_with_token, service_url};
use flotilla_e2e::{http_get, stderr, stdout, TestDaemon};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);

/// Lets several replicas share this machine.
const SMALL: &str = "resources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\n";

fn service(body: &str) -> String {
    format!(
        "type: service\nimage: {}\nport: 8000\n{SMALL}{body}",
        test_image()
    )
}

/// The commands of a replica that serves `text` on port 8000 (and `/ready` once `ready` exists).
fn serving(text: &str) -> String {
    format!(
        "  - mkdir -p /tmp/www && echo {text} > /tmp/www/index.html\n  - httpd -f -p 8000 -h /tmp/www\n"
    )
}

fn jobs(run: &Value) -> Vec<Value> {
    run["jobs"].as_array().cloned().unwrap_or_default()
}

/// The jobs whose current submission runs and is ready.
fn ready_jobs(run: &Value) -> Vec<Value> {
    jobs(run)
        .into_iter()
        .filter(|j| j["status"] == "running" && j["ready"] == true)
        .collect()
}

/// What a job's published port 8000 answers.
fn answer(job: &Value) -> Option<String> {
    let port = job["ports"]
        .as_array()?
        .iter()
        .find(|p| p["container"] == 8000)?["host"]
        .as_u64()?;
    http_get(port as u16)
}

/// Polls the run until `done` says so; `each` checks every look on the way.
fn wait_until(
    d: &TestDaemon,
    name: &str,
    what: &str,
    mut each: impl FnMut(&Value),
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let run = d.run_json(name);
        each(&run);
        if done(&run) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {what} did not happen: {run}\n{}",
            d.daemon_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn container_of(job: &Value) -> String {
    let dir = job["job_dir"].as_str().expect("a job dir");
    std::fs::read_to_string(format!("{dir}/container"))
        .expect("the container's name")
        .trim()
        .to_string()
}

/// The service's address and path on the daemon's HTTP endpoint, and the caller's token.
fn endpoint(d: &TestDaemon, name: &str) -> (String, String, String) {
    let (addr, path) = service_url(d, name);
    let out = d.cli(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (addr, path, stdout(&out).trim().to_string())
}

/// Calls the service through the daemon, one call after another, until stopped.
struct Caller {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<String>, Vec<String>)>,
}

impl Caller {
    fn start(d: &TestDaemon, name: &str) -> Caller {
        let (addr, path, token) = endpoint(d, name);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut answers, mut failures) = (Vec::new(), Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let a = get_with_token(&addr, &path, &token);
                if a.status == 200 {
                    answers.push(a.body);
                } else {
                    failures.push(format!("{} {}", a.status, a.body));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (answers, failures)
        });
        Caller { stop, thread }
    }

    /// Every answer, after asserting that no call failed.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let (answers, failures) = self.thread.join().expect("the caller");
        assert!(
            failures.is_empty(),
            "{} of {} calls failed: {:?}",
            failures.len(),
            failures.len() + answers.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(!answers.is_empty(), "no call answered");
        answers
    }
}

fn stop(d: &TestDaemon, name: &str) {
    let out = d.cli(&["stop", name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_killed_replica_is_replaced_while_the_other_keeps_serving() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "two",
        &service(&format!("replicas: 2\ncommands:\n{}", serving("hello"))),
    );
    let run = wait_until(
        &d,
        &name,
        "two ready replicas",
        |_| {},
        |r| ready_jobs(r).len() == 2,
    );
    let victim = jobs(&run)[1].clone();
    let survivor = jobs(&run)[0].clone();
    assert_eq!(answer(&survivor).as_deref(), Some("hello\n"));
    let calls = Caller::start(&d, &name);
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("docker")
        .args(["kill", &container_of(&victim)])
        .output()
        .expect("docker kill");
    assert!(killed.status.success(), "{}", stderr(&killed));
    let run = wait_until(
        &d,
        &name,
        "a replacement of replica 1",
        |r| {
            assert!(
                !matches!(
                    r["status"].as_str(),
                    Some("failed" | "terminated" | "terminating")
                ),
                "one failed replica ended the service: {r}"
            );
            assert_eq!(
                answer(&survivor).as_deref(),
                Some("hello\n"),
                "the other replica stopped answering: {r}"
            );
        },
        |r| {
            let j = &jobs(r)[1];
            j["submission_num"] == 1 && j["status"] == "running" && j["ready"] == true
        },
    );
    let replaced = &jobs(&run)[1];
    assert_eq!(
        replaced["previous_submissions"][0]["status"], "failed",
        "{run}"
    );
    assert_eq!(answer(replaced).as_deref(), Some("hello\n"));
    assert_eq!(run["status"], "running");
    // Through the daemon's endpoint, no call failed while the replica died and came back.
    let answers = calls.finish();
    assert!(answers.iter().all(|a| a == "hello\n"), "{answers:?}");
    stop(&d, &name);
}

#[test]
fn a_range_with_scaling_starts_its_minimum() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "range",
        &service(&format!(
            "replicas: 1..3\nscaling:\n  metric: rps\n  target: 10\ncommands:\n{}",
            serving("one")
        )),
    );
    let run = wait_until(
        &d,
        &name,
        "a ready replica",
        |_| {},
        |r| ready_jobs(r).len() == 1,
    );
    assert_eq!(jobs(&run).len(), 1, "{run}");
    // With no request at all, the scaler keeps the minimum.
    let run = wait_until(
        &d,
        &name,
        "the desired count recorded",
        |r| assert_eq!(jobs(r).len(), 1, "{r}"),
        |r| r["desired_replicas"]["0"] == 1,
    );
    assert_eq!(answer(&jobs(&run)[0]).as_deref(), Some("one\n"));
    stop(&d, &name);
}

#[test]
fn probes_decide_readiness() {
    let d = TestDaemon::start();
    // `/ready` appears a moment after the server starts: not ready until it answers twice.
    let late = d.apply_detached(
        "late",
        &service(
            "probes:\n  - type: http\n    url: /ready\n    interval: 1s\n    ready_after: 2\ncommands:\n  - mkdir -p /tmp/www && echo up > /tmp/www/index.html\n  - (sleep 3 && echo ok > /tmp/www/ready) &\n  - httpd -f -p 8000 -h /tmp/www\n",
        ),
    );
    // A probe that never passes keeps its replica out, although its port accepts.
    let never = d.apply_detached(
        "never",
        &service(&format!(
            "probes:\n  - type: http\n    url: /missing\n    interval: 1s\ncommands:\n{}",
            serving("never")
        )),
    );
    let mut seen_not_ready = false;
    wait_until(
        &d,
        &late,
        "the probe passing",
        |r| {
            let j = &jobs(r)[0];
            if j["status"] == "running" && j["ready"] == false && answer(j).is_some() {
                seen_not_ready = true;
            }
        },
        |r| ready_jobs(r).len() == 1,
    );
    assert!(
        seen_not_ready,
        "the replica was ready before /ready answered"
    );
    let run = d.run_json(&never);
    let j = &jobs(&run)[0];
    assert_eq!(j["status"], "running", "{run}");
    assert_eq!(answer(j).as_deref(), Some("never\n"), "its port answers");
    assert_eq!(
        j["ready"], false,
        "a failing probe keeps it not ready: {run}"
    );
    // Through the daemon: the ready replica answers; the one kept out is never called, and
    // the call ends 503 saying why once its hold is over.
    let (addr, path, token) = endpoint(&d, &late);
    let a = get_with_token(&addr, &path, &token);
    assert_eq!((a.status, a.body.as_str()), (200, "up\n"), "{a:?}");
    let (addr, path, token) = endpoint(&d, &never);
    let a = get_with_token(&addr, &path, &token);
    assert_eq!(a.status, 503, "{a:?}");
    assert!(
        !a.body.contains("never"),
        "a replica out of rotation answered: {a:?}"
    );
    let out = d.cli(&["ps", "-v"]);
    assert!(
        stdout(&out).contains("running (not ready)"),
        "{}",
        stdout(&out)
    );
    stop(&d, &late);
    stop(&d, &never);
}

#[test]
fn replica_groups_run_their_own_commands() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "groups",
        &service(&format!(
            "replicas:\n  - name: small\n    count: 1\n    {SMALL}    commands:\n{}  - name: large\n    count: 1\n    {SMALL}    commands:\n{}",
            serving("small").replace("  - ", "      - "),
            serving("large").replace("  - ", "      - "),
        )),
    );
    let run = wait_until(
        &d,
        &name,
        "both groups ready",
        |_| {},
        |r| ready_jobs(r).len() == 2,
    );
    let mut seen: Vec<(String, String)> = jobs(&run)
        .iter()
        .map(|j| {
            (
                j["replica_group"].as_str().unwrap_or_default().to_string(),
                answer(j).unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("large".to_string(), "large\n".to_string()),
            ("small".to_string(), "small\n".to_string())
        ]
    );
    let out = d.cli(&["ps", "-v"]);
    assert!(stdout(&out).contains("group=large"), "{}", stdout(&out));
    stop(&d, &name);
}

#[test]
fn a_rolling_update_starts_the_new_replica_before_stopping_the_old() {
    let d = TestDaemon::start();
    let config = |version: &str, extra: &str| {
        service(&format!(
            "name: web\nenv:\n  - VERSION={version}\n{extra}commands:\n  - mkdir -p /tmp/www && echo $VERSION > /tmp/www/index.html\n  - httpd -f -p 8000 -h /tmp/www\n"
        ))
    };
    let name = d.apply_detached("v1", &config("v1", ""));
    let run = wait_until(&d, &name, "v1 ready", |_| {}, |r| ready_jobs(r).len() == 1);
    assert_eq!(answer(&jobs(&run)[0]).as_deref(), Some("v1\n"));
    // A field dstack does not update in place is refused, naming it.
    let p = d.write_config("v1-max.dstack.yml", &config("v1", "max_duration: 1h\n"));
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("max_duration cannot be updated in a running service"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // A changed env: the plan shows it, and the update rolls, with calls the whole time.
    let calls = Caller::start(&d, &name);
    std::thread::sleep(Duration::from_millis(300));
    let p = d.write_config("v2.dstack.yml", &config("v2", ""));
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Detected changes that can be updated in-place:\n  - env"),
        "{}",
        stdout(&out)
    );
    let run = wait_until(
        &d,
        &name,
        "v2 alone serving",
        |r| {
            assert_eq!(r["status"], "running", "{r}");
            assert!(
                !ready_jobs(r).is_empty(),
                "no ready replica during the update: {r}"
            );
        },
        |r| {
            let ready = ready_jobs(r);
            ready.len() == 1
                && answer(&ready[0]).as_deref() == Some("v2\n")
                && jobs(r)[0]["status"] == "terminated"
        },
    );
    let old = &jobs(&run)[0];
    assert_eq!(old["termination_reason"], "scaled_down", "{run}");
    assert_eq!(run["deployment_num"], 1);
    assert_eq!(jobs(&run)[1]["deployment_num"], 1);
    // No call failed during the update; the answers went from v1 to v2.
    std::thread::sleep(Duration::from_millis(300));
    let answers = calls.finish();
    assert_eq!(answers.first().map(String::as_str), Some("v1\n"));
    assert_eq!(answers.last().map(String::as_str), Some("v2\n"));
    stop(&d, &name);
}

#[test]
fn a_zero_to_n_service_waits_pending_then_a_call_starts_a_replica_and_idle_returns_to_zero() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "zero",
        &service(&format!(
            "replicas: 0..2\nscaling:\n  metric: rps\n  target: 1\n  window: 30s\n  scale_down_delay: 1s\ncommands:\n{}",
            serving("zero")
        )),
    );
    let run = d.run_json(&name);
    assert_eq!(run["status"], "pending", "{run}");
    assert!(jobs(&run).is_empty(), "{run}");
    assert_eq!(run["desired_replicas"]["0"], 0, "{run}");
    // No request comes: it stays so (the scaler is asked each second).
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let run = d.run_json(&name);
        assert!(run["status"] == "pending" && jobs(&run).is_empty(), "{run}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A call is held while a replica starts, and its answer is the replica's own.
    let (addr, path, token) = endpoint(&d, &name);
    let t = Instant::now();
    let first = get_with_token(&addr, &path, &token);
    assert_eq!(first.status, 200, "{first:?}\n{}", d.daemon_output());
    assert_eq!(first.body, "zero\n");
    println!(
        "scale from zero: the first call answered after {:?}",
        t.elapsed()
    );
    let run = d.run_json(&name);
    assert_eq!(jobs(&run).len(), 1, "{run}");
    // Idle for the window and the delay: back to zero replicas.
    let run = wait_until(
        &d,
        &name,
        "the return to zero",
        |_| {},
        |r| {
            r["desired_replicas"]["0"] == 0
                && jobs(r)
                    .iter()
                    .all(|j| j["termination_reason"] == "scaled_down")
        },
    );
    assert_eq!(run["status"], "pending", "{run}");
    stop(&d, &name);
}
