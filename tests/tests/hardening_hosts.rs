//! No failure left silent on SSH hosts: a job given up as unreachable is stopped when its host
//! returns, a host belongs to one fleet, and `apply` follows a multi-node run to its end.

use flotilla_e2e::sshd::{ssh_keygen, ClientKey, TestHost, TWO_H100};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use serde_json::Value;
use std::time::{Duration, Instant};

const SMALL: &str = "resources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100}\n";

fn fleet_yaml(name: &str, key: &ClientKey, hosts: &[&TestHost], extra: &str) -> String {
    let mut s = format!(
        "type: fleet\nname: {name}\n{extra}ssh_config:\n  user: root\n  identity_file: {}\n  hosts:\n",
        key.path.display()
    );
    for h in hosts {
        s.push_str(&format!(
            "    - hostname: {}\n      port: {}\n",
            h.ip, h.port
        ));
    }
    s
}

fn apply_file(d: &TestDaemon, file: &str, yaml: &str, detach: bool) -> std::process::Output {
    let p = d.write_config(file, yaml);
    let mut args = vec!["apply", "-f", p.to_str().expect("utf-8 path"), "-y"];
    if detach {
        args.push("-d");
    }
    d.cli(&args)
}

fn instance(d: &TestDaemon, fleet: &str) -> Value {
    let fleets = d.cli_json(&["fleet", "list"]);
    fleets
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == fleet))
        .map(|f| f["instances"][0].clone())
        .unwrap_or(Value::Null)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_given_up_as_unreachable_is_stopped_when_its_host_returns() {
    let d = TestDaemon::new();
    d.write_daemon_config("health_interval_secs: 1\nunreachable_grace_secs: 2\n");
    let mut d = d;
    d.spawn();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let mut host = TestHost::start(31, &key, Some(TWO_H100));
    let out = apply_file(
        &d,
        "fleet.yml",
        &fleet_yaml("comeback", &key, &[&host], ""),
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let name = d.apply_detached(
        "orphan",
        &format!("type: task\nname: orphan\n{SMALL}commands:\n  - sh -c 'echo $$ > \"$HOME/orphan.pid\"; exec sleep 300'\n"),
    );
    d.wait_status(&name, &["running"], Duration::from_secs(20));
    let pid_file = host.home().join("orphan.pid");
    wait_until("the job's pid file", Duration::from_secs(10), || {
        pid_file.exists()
    });
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    host.stop();
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(30));
    assert_eq!(run["jobs"][0]["termination_reason"], "instance_unreachable");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the job lives on while its host is away"
    );
    host.restart();
    wait_until("the host to be reachable", Duration::from_secs(30), || {
        instance(&d, "comeback")["unreachable"] == false
    });
    wait_until(
        "the orphaned job to be stopped",
        Duration::from_secs(30),
        || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
    );
}

#[test]
fn a_host_belongs_to_one_fleet_only() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(32, &key, Some(TWO_H100));
    let out = apply_file(
        &d,
        "first.yml",
        &fleet_yaml("first", &key, &[&host], ""),
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = apply_file(
        &d,
        "second.yml",
        &fleet_yaml("second", &key, &[&host], ""),
        false,
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("first") && err.contains(&host.ip),
        "names the fleet that has it: {err}"
    );
    assert_eq!(instance(&d, "second"), Value::Null);
}

#[test]
fn apply_follows_a_multi_node_run_until_the_run_itself_ends() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let a = TestHost::start(33, &key, Some(TWO_H100));
    let b = TestHost::start(34, &key, Some(TWO_H100));
    let out = apply_file(
        &d,
        "fleet.yml",
        &fleet_yaml("pair", &key, &[&a, &b], "placement: cluster\n"),
        false,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Node 0 ends at once; node 1 a few seconds later.
    let task = format!(
        "type: task\nname: uneven\nnodes: 2\n{SMALL}commands:\n  - if [ \"$DSTACK_NODE_RANK\" = 1 ]; then sleep 3; echo node1-finished; fi\n"
    );
    let out = apply_file(&d, "uneven.yml", &task, false);
    assert!(
        out.status.success(),
        "apply exits 0 for a run that ends done: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let run = d.run_json("uneven");
    assert_eq!(run["status"], "done", "{run}");
}
