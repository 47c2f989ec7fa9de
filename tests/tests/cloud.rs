//! Cloud backends end to end: the daemon buys machines from fake Lambda, RunPod and Vast.ai
//! APIs (local HTTP servers written from the providers' documentation) whose machines are real
//! sshd hosts on loopback. Elastic fleets grow for a job and give idle machines back; a
//! capacity error falls back to the next offer; a wrong key is reported; a machine that never
//! boots is terminated at `provisioning_timeout`; orphans are reported at start; a daemon
//! killed while a machine is launched leaves nothing untracked; keys are sealed at rest.

use flotilla_e2e::cloud::{lambda, runpod, vastai, FakeCloud};
use flotilla_e2e::{repo_root, stderr, TestDaemon};
use serde_json::Value;
use std::time::{Duration, Instant};

const KEY: &str = "secret_lambda_key_7f3a9c";
const TASK: &str = "type: task\nname: NAME\nfleets: [elastic]\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:2}\ncommands:\n  - echo \"on $HOME\"\n";

fn catalogs() -> String {
    let p = repo_root().join("../shared/catalogs");
    assert!(
        p.join("lambda.csv").exists(),
        "the shared catalogs are missing at {}",
        p.display()
    );
    p.display().to_string()
}

fn daemon_config(kind: &str, url: &str, key: &str, extra: &str) -> String {
    format!(
        "health_interval_secs: 1\ncatalog_dir: {}\nbackends:\n  - type: {kind}\n    creds: {{type: api_key, api_key: {key}}}\n    api_url: {url}\n{extra}",
        catalogs()
    )
}

/// A daemon with one Lambda backend at the fake `cloud`, started.
fn lambda_daemon(cloud: &FakeCloud, key: &str, extra: &str) -> TestDaemon {
    let mut d = TestDaemon::new();
    let url = format!("{}/api/v1", cloud.url());
    d.write_daemon_config(&daemon_config("lambda", &url, key, extra));
    d.spawn();
    d
}

fn wait(what: &str, secs: u64, d: &TestDaemon, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            d.daemon_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn instances(d: &TestDaemon) -> Vec<Value> {
    d.cli_json(&["fleet", "list"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == "elastic")
        .flat_map(|f| f["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn events(d: &TestDaemon) -> String {
    let out = d.cli(&["event", "--json", "--last", "1000"]);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn elastic_fleet(d: &TestDaemon, backend: &str) {
    let p = d.write_config(
        "elastic.yml",
        &format!(
            "type: fleet\nname: elastic\nnodes: 0..2\nidle_duration: 2s\nbackends: [{backend}]\n"
        ),
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every file of the store and the data dir holds no clear copy of `secret`.
fn assert_sealed(d: &TestDaemon, secret: &str) {
    let mut stack = vec![d.data_dir.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "the API key is in clear in {}", p.display());
        }
    }
    let cfg = std::fs::read_to_string(d.data_dir.join("config.yml")).unwrap();
    assert!(cfg.contains("api_key: sealed:v1:"), "{cfg}");
}

fn backend_list(d: &TestDaemon, check: bool) -> Vec<Value> {
    let mut args = vec!["backend", "list", "--json"];
    if check {
        args.push("--check");
    }
    let out = d.cli(&args);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            )
        })
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One backend's whole round: an elastic fleet grows for a job, the job runs and logs on the
/// bought machine, the machine is terminated after idle_duration; the key stays sealed.
fn round_trip(kind: &str, cloud: &FakeCloud, url: &str, user_home_hint: &str) {
    let mut d = TestDaemon::new();
    d.write_daemon_config(&daemon_config(kind, url, &cloud.api_key, ""));
    d.spawn();
    wait("the credentials to be checked", 20, &d, || {
        backend_list(&d, false)
            .first()
            .is_some_and(|b| b["credentials"] == "valid")
    });
    elastic_fleet(&d, kind);
    assert!(instances(&d).is_empty());
    let name = d.apply_detached("grows", &TASK.replace("NAME", "grows"));
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(90));
    assert_eq!(run["status"], "done", "{run}\n{}", d.daemon_output());
    assert!(run["jobs"][0]["instance"]
        .as_str()
        .unwrap()
        .starts_with("elastic-"));
    assert!(run["jobs"][0]["price"].as_f64().unwrap() > 0.0, "{run}");
    // ps --json: what the run cost (price of its share times the time it ran)
    assert!(run["cost"].as_f64().is_some_and(|c| c >= 0.0), "{run}");
    let ps = String::from_utf8_lossy(&d.cli(&["ps", "-a"]).stdout).to_string();
    assert!(ps.contains("COST"), "{ps}");
    let log = String::from_utf8(d.logs(&name)).unwrap();
    assert!(
        log.starts_with("on ") && log.contains(user_home_hint),
        "{log}"
    );
    let machines = cloud.live_machines();
    assert_eq!(machines.len(), 1, "{machines:?}");
    assert!(
        machines[0].1.starts_with("flotilla-elastic-0-"),
        "{machines:?}"
    );
    let ev = events(&d);
    assert!(ev.contains("provisioning_attempt"), "{ev}");
    // idle past idle_duration, above nodes.min = 0: terminated at the provider
    wait("the idle machine to be terminated", 30, &d, || {
        instances(&d).is_empty() && cloud.live_machines().is_empty()
    });
    let list = backend_list(&d, true);
    assert_eq!(list[0]["credentials"], "valid");
    assert_eq!(list[0]["instances"], 0);
    assert_eq!(list[0]["type"], kind);
    assert_sealed(&d, &cloud.api_key);
    d.terminate();
}

#[test]
fn lambda_elastic_fleet_buys_a_vm_runs_the_job_and_gives_it_back() {
    let cloud = lambda::start(KEY, 150..160);
    let url = format!("{}/api/v1", cloud.url());
    round_trip("lambda", &cloud, &url, "/home");
    let reqs = cloud.lock().requests.join("\n");
    assert!(reqs.contains("POST /api/v1/ssh-keys"), "{reqs}");
    assert!(
        reqs.contains("POST /api/v1/instance-operations/terminate"),
        "{reqs}"
    );
}

#[test]
fn runpod_elastic_fleet_rents_a_pod_runs_the_job_and_gives_it_back() {
    let cloud = runpod::start("rp_key_5521", 160..170);
    let url = format!("{}/graphql", cloud.url());
    round_trip("runpod", &cloud, &url, "/home");
}

#[test]
fn vastai_elastic_fleet_rents_from_the_online_search_and_gives_it_back() {
    let cloud = vastai::start("vast_key_9d1e", 170..180);
    let url = format!("{}/api/v0", cloud.url());
    round_trip("vastai", &cloud, &url, "/home");
    // the cheapest matching offer of the search was rented
    let m = &cloud.lock().machines[0];
    assert_eq!(m.instance_type, "501");
}

#[test]
fn vastai_offers_come_from_the_online_search_not_the_snapshot_catalog() {
    let cloud = vastai::start("vast_key_1", 180..182);
    let mut d = TestDaemon::new();
    d.write_daemon_config(&daemon_config(
        "vastai",
        &format!("{}/api/v0", cloud.url()),
        "vast_key_1",
        "",
    ));
    d.spawn();
    let offers = d.cli_json(&["offer", "--gpu", "H100:2"]);
    let list = offers["offers"].as_array().cloned().unwrap_or_default();
    let vast: Vec<&Value> = list.iter().filter(|o| o["backend"] == "vastai").collect();
    assert_eq!(vast.len(), 2, "{offers}");
    assert_eq!(vast[0]["price"], 4.1);
    assert_eq!(vast[0]["instance_type"], "501");
    assert_eq!(vast[0]["availability"], "available");
    // the snapshot catalog's rows of Vast.ai stay out: the live search replaces them
    assert!(list.iter().all(|o| o["backend"] != "vast"), "{offers}");
    let n = cloud
        .lock()
        .requests
        .iter()
        .filter(|r| r.contains("bundles"))
        .count();
    assert!(n >= 1);
}

#[test]
fn lambda_capacity_error_on_the_cheapest_offer_falls_back_to_the_next() {
    let cloud = lambda::start(KEY, 190..195);
    cloud.lock().behaviour.fail_launches = 1;
    let d = lambda_daemon(&cloud, KEY, "");
    elastic_fleet(&d, "lambda");
    let name = d.apply_detached("fallback", &TASK.replace("NAME", "fallback"));
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(90));
    assert_eq!(run["status"], "done", "{run}");
    let machines = cloud
        .lock()
        .machines
        .iter()
        .map(|m| m.region.clone())
        .collect::<Vec<_>>();
    // europe-central-1 comes first at the same price; it had no capacity
    assert_eq!(machines, vec!["us-east-1".to_string()]);
    let ev = events(&d);
    assert!(
        ev.contains("Not enough capacity to fulfill launch request."),
        "{ev}"
    );
    assert!(ev.contains("trying the next offer"), "{ev}");
    assert!(ev.contains("offer 2/"), "{ev}");
}

#[test]
fn a_wrong_api_key_is_reported_by_backend_list_and_on_the_job() {
    let cloud = lambda::start(KEY, 196..198);
    let d = lambda_daemon(&cloud, "not_the_key", "");
    wait("the failed check", 20, &d, || {
        backend_list(&d, false)
            .first()
            .is_some_and(|b| b["credentials"] == "invalid")
    });
    let out = d.cli(&["backend", "list", "--check"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("API key was invalid, expired, or deleted."),
        "{text}"
    );
    assert!(!text.contains("not_the_key"), "{text}");
    elastic_fleet(&d, "lambda");
    let name = d.apply_detached("badkey", &TASK.replace("NAME", "badkey"));
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(60));
    let msg = run["jobs"][0].to_string();
    assert!(msg.contains("API key was invalid"), "{run}");
    assert!(cloud.live_machines().is_empty());
    assert_sealed(&d, "not_the_key");
}

#[test]
fn a_machine_that_never_boots_is_terminated_at_provisioning_timeout() {
    let cloud = lambda::start(KEY, 200..204);
    cloud.lock().behaviour.never_boots = true;
    let d = lambda_daemon(&cloud, KEY, "    provisioning_timeout: 3s\n");
    let p = d.write_config(
        "one.yml",
        "type: fleet\nname: elastic\nnodes: 0..1\nbackends: [lambda]\n",
    );
    assert!(d
        .cli(&["apply", "-f", p.to_str().unwrap(), "-y"])
        .status
        .success());
    let name = d.apply_detached("stuck", &TASK.replace("NAME", "stuck"));
    wait("a machine to be launched", 30, &d, || {
        !cloud.lock().machines.is_empty()
    });
    wait("the machine to be terminated", 30, &d, || {
        cloud
            .lock()
            .machines
            .first()
            .is_some_and(|m| m.status == "terminated")
    });
    let ev = events(&d);
    assert!(ev.contains("provisioning_timeout"), "{ev}");
    // the job that waited for it fails for want of capacity (its retry policy decides more)
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(30));
    let job = &run["jobs"][0];
    assert_eq!(
        job["termination_reason"], "failed_to_start_due_to_no_capacity",
        "{run}"
    );
    let msg = job["termination_message"].as_str().unwrap_or_default();
    assert!(msg.contains("went before it came up"), "{run}");
    assert!(cloud.live_machines().is_empty());
    assert_eq!(
        cloud.lock().machines.len(),
        1,
        "no second machine for a failed job"
    );
}

#[test]
fn orphans_are_reported_at_start_and_terminated_when_asked() {
    let cloud = lambda::start(KEY, 205..207);
    let ghost = cloud.add_machine("flotilla-ghost-0-999999");
    cloud.add_machine("someone-elses-box");
    let mut d = TestDaemon::new();
    let url = format!("{}/api/v1", cloud.url());
    d.write_daemon_config(&daemon_config("lambda", &url, KEY, ""));
    d.spawn();
    wait("the orphan to be reported", 20, &d, || {
        backend_list(&d, false)
            .first()
            .is_some_and(|b| b["orphans"].to_string().contains("flotilla-ghost-0-999999"))
    });
    let list = backend_list(&d, false);
    assert!(!list[0]["orphans"].to_string().contains("someone-elses-box"));
    assert!(events(&d).contains("unknown to this daemon"));
    assert_eq!(cloud.live_machines().len(), 2, "reported, not touched");
    d.terminate();
    // with terminate_orphans the next start ends it (and only it)
    let cfg = std::fs::read_to_string(d.data_dir.join("config.yml")).unwrap();
    std::fs::write(
        d.data_dir.join("config.yml"),
        format!("{cfg}    terminate_orphans: true\n"),
    )
    .unwrap();
    d.spawn();
    wait("the orphan to be terminated", 20, &d, || {
        cloud.live_machines().iter().all(|m| m.0 != ghost)
    });
    assert_eq!(cloud.live_machines().len(), 1);
}

#[test]
fn kill_9_while_a_machine_is_launched_leaves_nothing_untracked() {
    let cloud = lambda::start(KEY, 208..214);
    cloud.lock().behaviour.launch_delay = Duration::from_secs(3);
    let mut d = lambda_daemon(&cloud, KEY, "");
    elastic_fleet(&d, "lambda");
    let name = d.apply_detached("crash", &TASK.replace("NAME", "crash"));
    // the provider made the machine but has not answered the launch yet
    wait("the launch", 30, &d, || !cloud.lock().machines.is_empty());
    d.kill9();
    cloud.lock().behaviour.launch_delay = Duration::ZERO;
    d.spawn();
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(90));
    assert_eq!(run["status"], "done", "{run}");
    // every machine the provider has is one the daemon knows, until it gives them back
    let known: Vec<String> = instances(&d)
        .iter()
        .filter_map(|i| i["backend_id"].as_str().map(str::to_string))
        .collect();
    for (id, name, _) in cloud.live_machines() {
        assert!(
            known.contains(&id),
            "machine {id} ({name}) is untracked: {known:?}"
        );
    }
    wait("everything given back", 40, &d, || {
        cloud.live_machines().is_empty()
    });
    let ev = events(&d);
    assert!(!ev.contains("unknown to this daemon"), "{ev}");
}

#[test]
fn a_termination_the_provider_does_not_confirm_is_shown_and_retried() {
    let cloud = lambda::start(KEY, 215..218);
    let d = lambda_daemon(&cloud, KEY, "");
    elastic_fleet(&d, "lambda");
    let name = d.apply_detached("retried", &TASK.replace("NAME", "retried"));
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(90));
    assert_eq!(run["status"], "done", "{run}");
    // the first call's three tries fail, the second call's third try is confirmed
    cloud.lock().behaviour.fail_terminations = 5;
    wait(
        "the instance to show its unconfirmed termination",
        30,
        &d,
        || {
            instances(&d).iter().any(|i| {
                i["status"] == "terminating"
                    && i["error"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("termination not confirmed")
            })
        },
    );
    assert_eq!(
        cloud.live_machines().len(),
        1,
        "still running at the provider"
    );
    wait("the termination to be confirmed", 30, &d, || {
        instances(&d).is_empty() && cloud.live_machines().is_empty()
    });
    let ev = events(&d);
    assert!(ev.contains("Service temporarily unavailable."), "{ev}");
}
