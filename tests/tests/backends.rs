//! Fleets whose instances come from a backend: the `pool` backend hands out pre-started sshd test
//! hosts; nodes.min/target are created, jobs run there, idle instances go back after idle_duration.

use flotilla_e2e::sshd::{ssh_keygen, TestHost, TWO_H100};
use flotilla_e2e::{stderr, TestDaemon};
use serde_json::Value;
use std::time::{Duration, Instant};

fn pool_config(key: &std::path::Path, hosts: &[&TestHost]) -> String {
    let mut s = format!(
        "health_interval_secs: 1\nbackends:\n  - type: pool\n    name: lab\n    user: root\n    identity_file: {}\n    hosts:\n",
        key.display()
    );
    for (i, h) in hosts.iter().enumerate() {
        s.push_str(&format!(
            "      - hostname: {}\n        port: {}\n        instance_type: h100x2\n        price: {}\n        resources: {{cpus: 2, memory_gb: 8, disk_gb: 100, gpus: [{{name: H100, memory_gb: 80}}, {{name: H100, memory_gb: 80}}]}}\n",
            h.ip,
            h.port,
            2.5 + i as f64
        ));
    }
    s
}

fn instances(d: &TestDaemon, fleet: &str) -> Vec<Value> {
    d.cli_json(&["fleet", "list"])
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == fleet).cloned())
        .and_then(|f| f["instances"].as_array().cloned())
        .unwrap_or_default()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_backend_fleet_gets_its_instances_from_the_pool_and_gives_idle_ones_back() {
    let d = TestDaemon::new();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let a = TestHost::start(40, &key, Some(TWO_H100));
    let b = TestHost::start(41, &key, Some(TWO_H100));
    d.write_daemon_config(&pool_config(&key.path, &[&a, &b]));
    let mut d = d;
    d.spawn();

    // nodes.min = 1 is kept; the cheapest pool machine is taken
    let p = d.write_config(
        "cloud.yml",
        "type: fleet\nname: cloud\nnodes: {min: 1, target: 2, max: 2}\nidle_duration: 2s\nbackends: [lab]\nresources: {gpu: H100:2}\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        d.daemon_output()
    );
    wait("two idle instances", || {
        let i = instances(&d, "cloud");
        i.len() == 2 && i.iter().all(|x| x["status"] == "idle")
    });
    let i = instances(&d, "cloud");
    assert_eq!(i[0]["backend"], "lab");
    assert_eq!(i[0]["price"], 2.5);
    assert_eq!(i[0]["resources"]["gpus"].as_array().unwrap().len(), 2);

    // a job runs on one of them
    let name = d.apply_detached(
        "oncloud",
        "type: task\nname: oncloud\nfleets: [cloud]\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:2}\ncommands:\n  - echo \"on $HOME\"\n",
    );
    let run = d.wait_status(&name, &["done"], Duration::from_secs(30));
    assert!(run["jobs"][0]["instance"]
        .as_str()
        .unwrap()
        .starts_with("cloud-"));

    // idle past idle_duration: back to nodes.min = 1
    wait("one instance left", || instances(&d, "cloud").len() == 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(instances(&d, "cloud").len(), 1, "nodes.min is kept");

    // deleting the fleet gives the machine back: a new fleet can take both again
    assert!(d.cli(&["fleet", "delete", "cloud", "-y"]).status.success());
    let p = d.write_config(
        "again.yml",
        "type: fleet\nname: again\nnodes: 2\nbackends: [lab]\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait("both pool machines in the new fleet", || {
        instances(&d, "again").len() == 2
    });
    // the pool is empty now: a third machine cannot be had
    let p = d.write_config(
        "more.yml",
        "type: fleet\nname: more\nnodes: 1\nbackends: [lab]\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no offers"), "{}", stderr(&out));
}

#[test]
fn a_job_that_no_instance_can_take_gets_a_new_one_from_the_backend() {
    let d = TestDaemon::new();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let a = TestHost::start(42, &key, Some(TWO_H100));
    d.write_daemon_config(&pool_config(&key.path, &[&a]));
    let mut d = d;
    d.spawn();
    // an empty fleet that may grow to one instance, given back after 2 s idle
    let p = d.write_config(
        "elastic.yml",
        "type: fleet\nname: elastic\nnodes: 0..1\nidle_duration: 2s\nbackends: [lab]\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(instances(&d, "elastic").is_empty());
    let name = d.apply_detached(
        "grows",
        "type: task\nname: grows\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:2}\ncommands:\n  - echo \"on $HOME\"\n",
    );
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(40));
    assert_eq!(run["status"], "done", "{run}\n{}", d.daemon_output());
    assert_eq!(run["jobs"][0]["instance"], "elastic-0");
    assert_eq!(run["jobs"][0]["price"], 2.5);
    assert_eq!(
        String::from_utf8(d.logs(&name)).unwrap(),
        format!("on {}\n", a.home().display())
    );
    // idle past idle_duration, above nodes.min = 0: given back
    wait("the idle instance to go", || {
        instances(&d, "elastic").is_empty()
    });
    // the backend has it again: a second job gets it anew
    let again = d.apply_detached(
        "grows-again",
        "type: task\nname: grows-again\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:2}\ncommands:\n  - echo again\n",
    );
    let run = d.wait_status(&again, &["done", "failed"], Duration::from_secs(40));
    assert_eq!(run["status"], "done", "{run}");
}
