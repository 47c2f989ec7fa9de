//! SSH fleets against real OpenSSH servers on loopback: apply, list, delete, jobs on hosts,
//! blocks, unreachable hosts and their grace, changed host keys, proxy_jump, users' keys.

use flotilla_e2e::sshd::{ssh_keygen, ClientKey, TestHost, TWO_H100};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use serde_json::Value;
use std::time::{Duration, Instant};

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

fn apply_fleet(d: &TestDaemon, yaml: &str) -> std::process::Output {
    let p = d.write_config("fleet.yml", yaml);
    d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"])
}

fn fleet(d: &TestDaemon, name: &str) -> Value {
    let fleets = d.cli_json(&["fleet", "list"]);
    fleets
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn wait_instance(
    d: &TestDaemon,
    fleet_name: &str,
    idx: usize,
    what: impl Fn(&Value) -> bool,
    label: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = fleet(d, fleet_name);
        let inst = f["instances"][idx].clone();
        if what(&inst) {
            return inst;
        }
        assert!(
            Instant::now() < deadline,
            "instance {idx} of {fleet_name} never {label}: {inst}\n{}",
            d.daemon_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Any number of H100s (a whole host of a `blocks: 1` fleet).
const SMALL: &str = "resources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100}\n";
/// Exactly one H100 (one block of a `blocks: auto` host).
const ONE_GPU: &str = "resources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:1}\n";

#[test]
fn fleet_apply_inventory_job_and_delete() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let gpu_host = TestHost::start(11, &key, Some(TWO_H100));
    let cpu_host = TestHost::start(12, &key, None);
    let out = apply_fleet(
        &d,
        &fleet_yaml(
            "gpus",
            &key,
            &[&gpu_host, &cpu_host],
            "env:\n  FLEET_VAR: from-fleet\n",
        ),
    );
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        d.daemon_output()
    );

    let f = fleet(&d, "gpus");
    assert_eq!(f["status"], "active");
    let a = &f["instances"][0];
    assert_eq!(a["status"], "idle", "{a}");
    assert_eq!(a["unreachable"], false);
    assert_eq!(a["total_blocks"], 1);
    let gpus = a["resources"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0]["name"], "H100");
    assert_eq!(gpus[0]["memory_gb"], 80.0);
    let b = &f["instances"][1];
    assert_eq!(b["status"], "idle");
    assert_eq!(b["resources"]["gpus"].as_array().unwrap().len(), 0);
    assert!(b["resources"]["cpus"].as_u64().unwrap() >= 1);
    // the host key was learned and is shown by `fleet get`
    let got = d.cli(&["fleet", "get", "gpus"]);
    let host_pub = std::fs::read_to_string(gpu_host.dir.path().join("host_key.pub")).unwrap();
    let host_key_b64 = host_pub.split_whitespace().nth(1).unwrap();
    assert!(stdout(&got).contains(host_key_b64), "{}", stdout(&got));

    // a job that needs an H100 runs on the GPU host, in its home, with the fleet's env
    let name = d.apply_detached(
        "ongpu",
        &format!("type: task\nname: ongpu\n{SMALL}commands:\n  - echo \"home=$HOME gpus=$CUDA_VISIBLE_DEVICES var=$FLEET_VAR\"\n  - pwd\n"),
    );
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(30));
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["jobs"][0]["instance"], "gpus-0");
    let log = String::from_utf8(d.logs(&name)).unwrap();
    let home = gpu_host.home();
    assert!(
        log.starts_with(&format!(
            "home={} gpus=0,1 var=from-fleet\n",
            home.display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("{}/.flotilla/jobs/", home.display())),
        "{log}"
    );

    let out = d.cli(&["fleet", "delete", "gpus", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fleet(&d, "gpus").is_null());
}

#[test]
fn blocks_share_a_two_gpu_host_and_the_third_job_waits() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(13, &key, Some(TWO_H100));
    let out = apply_fleet(&d, &fleet_yaml("box", &key, &[&host], "blocks: auto\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fleet(&d, "box")["instances"][0]["total_blocks"], 2);
    let marker = d.dir.path().join("go");
    let task = |n: &str| {
        format!(
            "type: task\nname: {n}\n{ONE_GPU}commands:\n  - echo \"gpu=$CUDA_VISIBLE_DEVICES\"\n  - while [ ! -f {} ]; do sleep 0.1; done\n",
            marker.display()
        )
    };
    let a = d.apply_detached("job-a", &task("job-a"));
    let b = d.apply_detached("job-b", &task("job-b"));
    d.wait_status(&a, &["running"], Duration::from_secs(20));
    d.wait_status(&b, &["running"], Duration::from_secs(20));
    let c = d.apply_detached("job-c", &task("job-c"));
    // the third waits, and says why
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = d.run_json(&c);
        if let Some(reason) = run["jobs"][0]["waiting_reason"].as_str() {
            assert!(reason.contains("box/box-0 2/2 busy"), "{reason}");
            assert_eq!(run["status"], "submitted");
            break;
        }
        assert!(Instant::now() < deadline, "no waiting reason: {run}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // and the reason is an event too
    let events = d.cli(&["event", "--json", "--last", "200"]);
    let waiting = stdout(&events)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|e| {
            e["resource"] == format!("{c}/0/0")
                && e["reason"].as_str().is_some_and(|r| r.contains("2/2 busy"))
        });
    assert!(waiting, "no waiting event:\n{}", stdout(&events));
    let ga = d.run_json(&a)["jobs"][0]["gpus"].clone();
    let gb = d.run_json(&b)["jobs"][0]["gpus"].clone();
    assert_ne!(ga, gb, "two jobs got the same GPU");
    assert_eq!(fleet(&d, "box")["instances"][0]["busy_blocks"], 2);
    std::fs::write(&marker, "").unwrap();
    for n in [&a, &b, &c] {
        let r = d.wait_status(n, &["done"], Duration::from_secs(30));
        assert_eq!(r["jobs"][0]["exit_code"], 0);
    }
    let logs: Vec<String> = [&a, &b]
        .iter()
        .map(|n| String::from_utf8(d.logs(n)).unwrap())
        .collect();
    let mut seen: Vec<&str> = logs.iter().map(|l| l.lines().next().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, vec!["gpu=0", "gpu=1"]);
}

#[test]
fn an_unreachable_host_fails_its_job_after_the_grace() {
    let d = TestDaemon::new();
    d.write_daemon_config("health_interval_secs: 1\nunreachable_grace_secs: 3\n");
    let mut d = d;
    d.spawn();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let mut host = TestHost::start(14, &key, Some(TWO_H100));
    assert!(apply_fleet(&d, &fleet_yaml("flaky", &key, &[&host], ""))
        .status
        .success());
    let name = d.apply_detached(
        "sleeper",
        &format!("type: task\nname: sleeper\n{SMALL}commands:\n  - echo up\n  - sleep 120\n"),
    );
    d.wait_status(&name, &["running"], Duration::from_secs(20));
    let t0 = Instant::now();
    host.stop();
    wait_instance(&d, "flaky", 0, |i| i["unreachable"] == true, "unreachable");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?} to notice",
        t0.elapsed()
    );
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(30));
    assert_eq!(run["jobs"][0]["termination_reason"], "instance_unreachable");
}

#[test]
fn a_host_back_within_the_grace_keeps_its_job_and_loses_no_log() {
    let d = TestDaemon::new();
    d.write_daemon_config("health_interval_secs: 1\nunreachable_grace_secs: 60\n");
    let mut d = d;
    d.spawn();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let mut host = TestHost::start(15, &key, Some(TWO_H100));
    assert!(apply_fleet(&d, &fleet_yaml("back", &key, &[&host], ""))
        .status
        .success());
    let name = d.apply_detached(
        "steady",
        &format!("type: task\nname: steady\n{SMALL}commands:\n  - for i in $(seq 1 40); do echo \"tick $i\"; sleep 0.1; done\n"),
    );
    d.wait_status(&name, &["running"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    host.stop();
    wait_instance(&d, "back", 0, |i| i["unreachable"] == true, "unreachable");
    host.restart();
    wait_instance(
        &d,
        "back",
        0,
        |i| i["unreachable"] == false,
        "reachable again",
    );
    let run = d.wait_status(&name, &["done"], Duration::from_secs(30));
    assert_eq!(run["jobs"][0]["exit_code"], 0);
    let want: String = (1..=40).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(String::from_utf8(d.logs(&name)).unwrap(), want);
}

#[test]
fn a_changed_host_key_is_refused() {
    let d = TestDaemon::new();
    d.write_daemon_config("health_interval_secs: 1\n");
    let mut d = d;
    d.spawn();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let mut host = TestHost::start(16, &key, None);
    assert!(apply_fleet(&d, &fleet_yaml("keyed", &key, &[&host], ""))
        .status
        .success());
    host.stop();
    host.new_host_key();
    host.restart();
    let inst = wait_instance(&d, "keyed", 0, |i| i["status"] == "failed", "failed");
    let err = inst["error"].as_str().unwrap_or_default();
    assert!(err.contains("host key") && err.contains("changed"), "{err}");
}

#[test]
fn proxy_jump_reaches_a_host_through_another() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let mut jump = TestHost::start(17, &key, None);
    let target = TestHost::start(18, &key, Some(TWO_H100));
    let yaml = format!(
        "type: fleet\nname: behind\nssh_config:\n  user: root\n  identity_file: {k}\n  proxy_jump:\n    hostname: {ji}\n    port: {jp}\n  hosts:\n    - hostname: {ti}\n      port: {tp}\n",
        k = key.path.display(),
        ji = jump.ip,
        jp = jump.port,
        ti = target.ip,
        tp = target.port
    );
    let out = apply_fleet(&d, &yaml);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        d.daemon_output()
    );
    assert_eq!(
        fleet(&d, "behind")["instances"][0]["resources"]["gpus"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let log = jump.log();
    assert!(
        log.contains(&format!("port {}", target.port))
            || log.contains(&format!("{}:{}", target.ip, target.port))
            || log.contains(&format!("{} port {}", target.ip, target.port)),
        "the jump host never forwarded to the target:\n{log}"
    );
    // The jump host's key is pinned and stored with the instance, like the host's own.
    let jump_pub = std::fs::read_to_string(jump.dir.path().join("host_key.pub")).unwrap();
    let jump_key_b64 = jump_pub.split_whitespace().nth(1).unwrap();
    let stored = fleet(&d, "behind")["instances"][0]["jump_host_key"].clone();
    assert!(
        stored.as_str().is_some_and(|k| k.contains(jump_key_b64)),
        "{stored}"
    );
    // A daemon that restarts checks it: a changed jump host key is refused, loudly.
    let mut d = d;
    d.terminate();
    jump.new_host_key();
    jump.restart();
    d.spawn();
    let inst = wait_instance(
        &d,
        "behind",
        0,
        |i| i["status"] == "failed",
        "the changed jump host key to be refused",
    );
    let error = inst["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("key") && error.contains(&jump.ip),
        "the error names the jump host's changed key: {inst}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keys_open_the_gateway_and_no_host() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(19, &key, None);
    let client = d.client().await;
    let me: Value = client
        .call_raw("user.me", serde_json::json!({}))
        .await
        .expect("user.me");
    let public = me["ssh_public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("ssh-ed25519 "));
    let private = me["ssh_private_key"].as_str().unwrap().to_string();
    assert!(private.contains("OPENSSH PRIVATE KEY"));
    let blob = public.split_whitespace().nth(1).unwrap().to_string();
    // An earlier daemon installed users' keys on hosts: provisioning removes them.
    let ak_path = host.home().join(".ssh/authorized_keys");
    let before = std::fs::read_to_string(&ak_path).unwrap_or_default();
    std::fs::write(
        &ak_path,
        format!("{before}restrict,pty,port-forwarding {public}\n"),
    )
    .unwrap();
    let out = apply_fleet(&d, &fleet_yaml("mine", &key, &[&host], ""));
    assert!(out.status.success());
    let ak = std::fs::read_to_string(&ak_path).unwrap_or_default();
    assert!(!ak.contains(&blob), "the user's key left the host: {ak}");
    // so the user's own ssh does not reach the host with it
    let kp = d.dir.path().join("user_key");
    std::fs::write(&kp, &private).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ssh = std::process::Command::new("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&kp)
        .args([
            "-p",
            &host.port.to_string(),
            &format!("root@{}", host.ip),
            "echo reached",
        ])
        .output()
        .unwrap();
    assert!(
        !ssh.status.success() && !String::from_utf8_lossy(&ssh.stdout).contains("reached"),
        "the user's key reached the host"
    );
    // a refresh gives a new key
    let again: Value = client
        .call_raw("user.refresh_ssh_key", serde_json::json!({}))
        .await
        .expect("refresh");
    assert_ne!(again["ssh_public_key"].as_str().unwrap(), public);
}

#[test]
fn retry_resubmits_a_job_of_an_unreachable_host_to_the_other_host() {
    let d = TestDaemon::new();
    d.write_daemon_config(
        "health_interval_secs: 1\nunreachable_grace_secs: 2\nretry_delay_scale: 0.1\n",
    );
    let mut d = d;
    d.spawn();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let mut hosts = [
        TestHost::start(20, &key, Some(TWO_H100)),
        TestHost::start(21, &key, Some(TWO_H100)),
    ];
    assert!(
        apply_fleet(&d, &fleet_yaml("pair", &key, &[&hosts[0], &hosts[1]], ""))
            .status
            .success()
    );
    let name = d.apply_detached(
        "mover",
        &format!("type: task\nname: mover\nretry:\n  on_events: [interruption]\n  duration: 1h\n{SMALL}commands:\n  - echo \"on $HOME\"\n  - sleep 4\n"),
    );
    let run = d.wait_status(&name, &["running"], Duration::from_secs(20));
    let first = run["jobs"][0]["instance"].as_str().unwrap().to_string();
    let idx = if first == "pair-0" { 0 } else { 1 };
    hosts[idx].stop();
    let run = d.wait_status(&name, &["done"], Duration::from_secs(60));
    let job = &run["jobs"][0];
    assert_ne!(job["instance"].as_str().unwrap(), first, "{run}");
    assert_eq!(job["submission_num"], 1);
    assert_eq!(
        job["previous_submissions"][0]["termination_reason"],
        "instance_unreachable"
    );
    let log = String::from_utf8(d.logs(&name)).unwrap();
    assert_eq!(log, format!("on {}\n", hosts[1 - idx].home().display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_metrics_are_sampled_while_jobs_run() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(22, &key, Some(TWO_H100));
    assert!(apply_fleet(&d, &fleet_yaml("watched", &key, &[&host], ""))
        .status
        .success());
    let name = d.apply_detached(
        "busy",
        &format!("type: task\nname: busy\n{SMALL}commands:\n  - sleep 30\n"),
    );
    d.wait_status(&name, &["running"], Duration::from_secs(20));
    let client = d.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let series = loop {
        let m: Value = client
            .call_raw("metrics.get", serde_json::json!({"run": name}))
            .await
            .expect("metrics.get");
        let s = m["series"].as_array().cloned().unwrap_or_default();
        if s.len() == 2
            && s.iter()
                .all(|x| !x["samples"].as_array().unwrap().is_empty())
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no samples: {m}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(series[0]["instance"], "watched/watched-0");
    let sample = &series[0]["samples"][0];
    assert_eq!(sample["util_percent"], 37.0);
    assert_eq!(sample["memory_used_gb"], 20.0);
    // and the command line shows them
    let out = d.cli(&["metrics", &name]);
    let s = stdout(&out);
    assert!(
        s.contains("watched/watched-0  0    37%") && s.contains("20.0/79.6GB"),
        "{s}"
    );
    let _ = d.cli(&["stop", &name, "-x", "-y"]);
}

#[test]
fn flotilla_ssh_reaches_the_job_through_the_daemons_gateway() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(23, &key, Some(TWO_H100));
    assert!(apply_fleet(&d, &fleet_yaml("shelly", &key, &[&host], ""))
        .status
        .success());
    let name = d.apply_detached(
        "remote",
        &format!("type: task\nname: remote\n{SMALL}commands:\n  - echo from-the-job > marker\n  - sleep 60\n"),
    );
    d.wait_status(&name, &["running"], Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = d.cli(&["ssh", &name, "--", "pwd;", "cat", "marker"]);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let s = stdout(&out);
    let workdir = format!("{}/.flotilla/jobs/", host.home().display());
    assert!(
        s.starts_with(&workdir) && s.contains("/work\nfrom-the-job\n"),
        "{s}"
    );
    // the session went through the daemon's gateway: no user's key is on the host
    let ak = std::fs::read_to_string(host.home().join(".ssh/authorized_keys")).unwrap_or_default();
    assert!(!ak.contains("flotilla:"), "{ak}");
    let _ = d.cli(&["stop", &name, "-x", "-y"]);
}

#[test]
fn flotilla_ssh_opens_a_local_shell_for_a_local_job() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "here",
        "type: task\nname: here\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo local > marker\n  - sleep 60\n",
    );
    d.wait_status(&name, &["running"], Duration::from_secs(20));
    let out = d.cli(&["ssh", &name, "--", "cat marker; echo $DSTACK_RUN_NAME"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "local\nhere\n");
    let _ = d.cli(&["stop", &name, "-x", "-y"]);
}

#[test]
fn a_two_node_task_runs_on_both_hosts_of_a_cluster_fleet() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let a = TestHost::start(24, &key, Some(TWO_H100));
    let b = TestHost::start(25, &key, Some(TWO_H100));
    let out = apply_fleet(
        &d,
        &fleet_yaml("cluster", &key, &[&a, &b], "placement: cluster\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let name = d.apply_detached(
        "twonodes",
        &format!(
            "type: task\nname: twonodes\nnodes: 2\n{SMALL}commands:\n  - echo \"rank=$DSTACK_NODE_RANK of $DSTACK_NODES_NUM master=$DSTACK_MASTER_NODE_IP gpus=$DSTACK_GPUS_NUM\"\n  - echo \"$DSTACK_NODES_IPS\" | tr '\\n' ' '\n"
        ),
    );
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(30));
    assert_eq!(run["status"], "done", "{run}");
    let jobs = run["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let hosts: Vec<&str> = jobs
        .iter()
        .map(|j| j["instance"].as_str().unwrap())
        .collect();
    assert_ne!(hosts[0], hosts[1], "both nodes on one host: {run}");
    let master_ip = if hosts[0] == "cluster-0" {
        &a.ip
    } else {
        &b.ip
    };
    for job in 0..2 {
        let out = d.cli(&["logs", &name, "--job", &job.to_string()]);
        let log = stdout(&out);
        assert!(
            log.starts_with(&format!("rank={job} of 2 master={master_ip} gpus=4\n")),
            "{log}"
        );
        assert!(log.contains(&a.ip) && log.contains(&b.ip), "{log}");
    }
}
