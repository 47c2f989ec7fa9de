//! A Slurm cluster as a backend, end to end against a real single-node Slurm (tests/src/slurm.rs)
//! reached through a real sshd test host as its login node: offers from `sinfo`, tasks as Slurm
//! batch jobs (byte-exact logs, exit codes, GRES), queueing with Slurm's reason, stop and abort
//! through `scancel`, and a daemon killed with -9 and restarted mid-job.

use flotilla_e2e::slurm::SlurmCluster;
use flotilla_e2e::sshd::{ssh_keygen, TestHost};
use flotilla_e2e::{stderr, TestDaemon};
use serde_json::Value;
use std::time::{Duration, Instant};

struct Setup {
    d: TestDaemon,
    // Dropped last: the daemon goes first, then the login node, then the cluster.
    _login: TestHost,
    cluster: SlurmCluster,
}

fn daemon_config(key: &std::path::Path, login: &TestHost) -> String {
    format!(
        "health_interval_secs: 1\nbackends:\n  - type: slurm\n    clusters:\n      - name: hpc\n        hostname: {}\n        port: {}\n        user: root\n        private_key: {{path: {}}}\n        gpu_partitions: [{{gpu: H100, partitions: [gpu]}}]\n      - {{name: typo, hostname: {ip}, port: {port}, user: root, private_key: {{path: {key}}}, gpu_partitions: [{{gpu: H100, partitions: [gpux]}}], cpu_partitions: [cpux]}}\n",
        login.ip,
        login.port,
        key.display(),
        ip = login.ip,
        port = login.port,
        key = key.display()
    )
}

/// A Slurm cluster, its login node, a daemon with the `slurm` backend and a fleet `hpc` of up to
/// three slots; `None` (loudly) without Slurm installed.
fn setup(octet: u8) -> Option<Setup> {
    let cluster = SlurmCluster::start()?;
    let mut d = TestDaemon::new();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let login = TestHost::start(octet, &key, None);
    cluster.install_clients(&login.dir.path().join("bin"), None);
    d.write_daemon_config(&daemon_config(&key.path, &login));
    d.spawn();
    let p = d.write_config(
        "hpc.yml",
        "type: fleet\nname: hpc\nnodes: 0..3\nbackends: [slurm]\nresources: {cpu: 1.., memory: 1GB.., disk: 0GB..}\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8"), "-y"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        d.daemon_output()
    );
    // The first read of the cluster runs in the background from the daemon's start.
    wait("the cluster's offers", 30, || {
        let v = d.cli_json(&["offer", "-b", "slurm", "--cpu", "1..", "--memory", "1GB.."]);
        v["offers"].as_array().is_some_and(|o| o.len() == 2)
    });
    Some(Setup {
        d,
        _login: login,
        cluster,
    })
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_log(d: &TestDaemon, name: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&d.logs(name)).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {name}'s log: {}\n{}",
            d.run_json(name),
            d.daemon_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn job(d: &TestDaemon, name: &str) -> Value {
    d.run_json(name)["jobs"][0].clone()
}

fn task(name: &str, resources: &str, commands: &[&str]) -> String {
    let mut s =
        format!("type: task\nname: {name}\nfleets: [hpc]\nresources: {resources}\ncommands:\n");
    for c in commands {
        s.push_str(&format!(
            "  - {}\n",
            serde_json::to_string(c).expect("json")
        ));
    }
    s
}

#[test]
fn offers_come_from_sinfo_and_tasks_run_as_slurm_jobs() {
    let Some(s) = setup(70) else { return };
    let d = &s.d;
    // offers: the node's CPUs, memory and GPUs per partition, price 0, from one sinfo call
    let mut offers = Vec::new();
    wait("the cluster's offers", 30, || {
        let v = d.cli_json(&["offer", "-b", "slurm", "--cpu", "1..", "--memory", "1GB.."]);
        offers = v["offers"].as_array().cloned().unwrap_or_default();
        offers.len() == 2
    });
    let by_type = |t: &str| {
        offers
            .iter()
            .find(|o| o["instance_type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no offer {t} in {offers:?}"))
    };
    let cpu = by_type("cpu/4cpu-6.8GB");
    let gpu = by_type("gpu/4cpu-6.8GB-2xH100");
    for o in [&cpu, &gpu] {
        assert_eq!(o["backend"], "slurm");
        assert_eq!(o["region"], "hpc");
        assert_eq!(o["price"], 0.0);
        assert_eq!(o["availability"], "idle");
        assert_eq!(o["resources"]["cpu"]["count"]["min"], 4);
    }
    assert_eq!(cpu["resources"]["gpu"]["count"]["min"], 0);
    assert_eq!(gpu["resources"]["gpu"]["count"]["min"], 2);
    assert_eq!(gpu["resources"]["gpu"]["name"][0], "H100");
    // a cluster configured with partitions it lacks offers nothing, and `offer` says why
    wait("the typo cluster's warning", 30, || {
        d.cli_json(&["offer", "-b", "slurm"])["warnings"]
            .to_string()
            .contains("slurm cluster typo: no partition gpux, cpux (its partitions: cpu, gpu)")
    });

    // a task: one Slurm job (squeue shows it while it runs), its log byte-exact, its exit code
    let name = d.apply_detached(
        "plain",
        &task(
            "plain",
            "{cpu: 1.., memory: 1GB..}",
            &[
                "printf 'one\\n\\ttwo \\\\ three\\n'",
                "echo \"rank=$DSTACK_NODE_RANK nodes=$DSTACK_NODES_NUM master=$DSTACK_MASTER_NODE_IP\"",
                "cat \"$DSTACK_MPI_HOSTFILE\"",
                "echo ready",
                "sleep 3",
                "exit 3",
            ],
        ),
    );
    wait_log(d, &name, "ready");
    let queue = s.cluster.squeue();
    assert!(
        queue
            .lines()
            .any(|l| l.contains("flotilla-") && l.contains("RUNNING")),
        "squeue: {queue}"
    );
    let run = d.wait_status(&name, &["failed", "done"], Duration::from_secs(60));
    assert_eq!(run["jobs"][0]["exit_code"], 3, "{run}");
    assert_eq!(
        run["jobs"][0]["termination_reason"],
        "container_exited_with_error"
    );
    assert_eq!(
        String::from_utf8_lossy(&d.logs(&name)),
        "one\n\ttwo \\ three\nrank=0 nodes=1 master=127.0.0.1\n127.0.0.1\nready\n"
    );

    // a GPU task gets its GRES, in the GPU partition
    let name = d.apply_detached(
        "gpus",
        &task(
            "gpus",
            "{cpu: 1.., memory: 1GB.., gpu: H100:2}",
            &["echo \"gpus=$DSTACK_GPUS_PER_NODE slurm=$SLURM_GPUS_ON_NODE partition=$SLURM_JOB_PARTITION\""],
        ),
    );
    let run = d.wait_status(&name, &["failed", "done"], Duration::from_secs(60));
    assert_eq!(run["status"], "done", "{run}\n{}", d.daemon_output());
    assert_eq!(
        String::from_utf8_lossy(&d.logs(&name)),
        "gpus=2 slurm=2 partition=gpu\n"
    );

    // task `groups` do not run on Slurm yet: the job fails saying so (nothing runs)
    let name = d.apply_detached(
        "grouped",
        "type: task\nname: grouped\nfleets: [hpc]\ngroups:\n  - nodes: 1\n    resources: {cpu: 1.., memory: 1GB..}\n    commands: [\"echo never\"]\n",
    );
    let run = d.wait_status(&name, &["failed", "done"], Duration::from_secs(60));
    assert_eq!(run["status"], "failed", "{run}");
    let why = run["jobs"][0]["termination_message"].as_str().unwrap_or("");
    assert!(
        why.contains("task `groups` are not run on Slurm yet"),
        "{run}"
    );

    // three GPUs: no node has them; with `retry` on no-capacity the job waits, saying why
    let name = d.apply_detached(
        "three",
        &format!(
            "{}retry: {{on_events: [no-capacity], duration: 1h}}\n",
            task(
                "three",
                "{cpu: 1.., memory: 1GB.., gpu: 3}",
                &["echo never"]
            )
        ),
    );
    wait("the three-GPU run to wait for a retry", 30, || {
        d.run_json(&name)["jobs"][0]["previous_submissions"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    let run = d.run_json(&name);
    assert!(
        ["pending", "submitted"].contains(&run["status"].as_str().unwrap_or_default()),
        "{run}"
    );
    let first = &run["jobs"][0]["previous_submissions"][0];
    assert_eq!(
        first["termination_reason"],
        "failed_to_start_due_to_no_capacity"
    );
    let why = first["termination_message"].as_str().unwrap_or_default();
    assert!(why.contains("no offers") && why.contains("gpu=3"), "{why}");
    assert!(d.cli(&["stop", &name, "-y"]).status.success());

    // an image job: no Pyxis on this cluster, refused with that reason
    let name = d.apply_detached(
        "image",
        "type: task\nname: image\nfleets: [hpc]\nimage: ubuntu:22.04\nresources: {cpu: 1.., memory: 1GB..}\ncommands: [\"true\"]\n",
    );
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(60));
    let message = run["jobs"][0]["termination_message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("no Pyxis"), "{run}");
}

#[test]
fn a_job_queues_behind_one_that_holds_the_node_and_stop_and_abort_cancel() {
    let Some(s) = setup(71) else { return };
    let d = &s.d;
    let holder = d.apply_detached(
        "holder",
        &task(
            "holder",
            "{cpu: 4, memory: 1GB..}",
            &[
                "trap 'echo got TERM; exit 5' TERM",
                "echo ready",
                "while true; do sleep 0.1; done",
            ],
        ),
    );
    wait_log(d, &holder, "ready");
    let queued = d.apply_detached(
        "queued",
        &task("queued", "{cpu: 4, memory: 1GB..}", &["echo queued ran"]),
    );
    // provisioning, with Slurm's own reason, while Slurm holds it back
    wait("Slurm's reason on the queued job", 60, || {
        let j = job(d, &queued);
        j["status"] == "provisioning"
            && j["waiting_reason"].as_str().is_some_and(|r| {
                r.contains("PENDING") && (r.contains("Resources") || r.contains("Priority"))
            })
    });
    assert!(
        s.cluster.squeue().contains("PENDING"),
        "{}",
        s.cluster.squeue()
    );

    // a job stopped while Slurm queues it: its Slurm job is cancelled, nothing ran
    let never = d.apply_detached(
        "never",
        &task("never", "{cpu: 4, memory: 1GB..}", &["echo never ran"]),
    );
    wait("the third job queued in Slurm", 60, || {
        job(d, &never)["waiting_reason"]
            .as_str()
            .is_some_and(|r| r.contains("PENDING"))
    });
    assert_eq!(
        s.cluster.squeue().matches("PENDING").count(),
        2,
        "{}",
        s.cluster.squeue()
    );
    assert!(d.cli(&["stop", &never, "-y"]).status.success());
    let run = d.wait_status(&never, &["terminated"], Duration::from_secs(30));
    assert_eq!(run["jobs"][0]["status"], "terminated", "{run}");
    wait("the stopped job's Slurm job to go", 30, || {
        s.cluster.squeue().matches("PENDING").count() == 1
    });
    assert!(d.logs(&never).is_empty());

    // stop: SIGTERM through scancel --signal; the job ends by itself
    let out = d.cli(&["stop", &holder, "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = d.wait_status(&holder, &["terminated", "failed"], Duration::from_secs(60));
    assert_eq!(run["jobs"][0]["status"], "terminated", "{run}");
    assert!(String::from_utf8_lossy(&d.logs(&holder)).contains("got TERM"));

    // the queued job starts once the node is free
    let run = d.wait_status(&queued, &["done", "failed"], Duration::from_secs(60));
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(String::from_utf8_lossy(&d.logs(&queued)), "queued ran\n");

    // abort: cancelled at once, whatever stop_duration says
    let stubborn = d.apply_detached(
        "stubborn",
        &format!(
            "{}stop_duration: 5m\n",
            task(
                "stubborn",
                "{cpu: 1.., memory: 1GB..}",
                &[
                    "trap '' TERM",
                    "echo ready",
                    "while true; do sleep 0.1; done"
                ],
            )
        ),
    );
    wait_log(d, &stubborn, "ready");
    assert!(d.cli(&["stop", &stubborn, "-x", "-y"]).status.success());
    let run = d.wait_status(&stubborn, &["terminated"], Duration::from_secs(30));
    assert_eq!(run["jobs"][0]["status"], "aborted", "{run}");
    wait("the cluster's queue to empty", 30, || {
        s.cluster.squeue().trim().is_empty()
    });

    // Slurm itself cancels a job: Slurm's state on the job, and `retry` on interruption resubmits
    let victim = d.apply_detached(
        "victim",
        &format!(
            "{}retry: {{on_events: [interruption], duration: 1h}}\n",
            task(
                "victim",
                "{cpu: 1.., memory: 1GB..}",
                &["echo ready", "while true; do sleep 0.1; done"],
            )
        ),
    );
    wait_log(d, &victim, "ready");
    let slurm_id = s
        .cluster
        .squeue()
        .split_whitespace()
        .next()
        .expect("the victim's Slurm job")
        .to_string();
    let out = s
        .cluster
        .client("scancel")
        .arg(&slurm_id)
        .output()
        .expect("scancel");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait("the victim's resubmission", 60, || {
        d.run_json(&victim)["jobs"][0]["previous_submissions"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    let first = d.run_json(&victim)["jobs"][0]["previous_submissions"][0].clone();
    assert_eq!(
        first["termination_reason"], "interrupted_by_no_capacity",
        "{first}"
    );
    let message = first["termination_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Slurm ended the job: CANCELLED"),
        "{message}"
    );
    assert!(d.cli(&["stop", &victim, "-x", "-y"]).status.success());
    d.wait_status(&victim, &["terminated"], Duration::from_secs(60));
    wait("the cluster's queue to empty", 30, || {
        s.cluster.squeue().trim().is_empty()
    });
}

#[test]
fn a_daemon_killed_mid_job_finds_its_slurm_jobs_again() {
    let Some(s) = setup(72) else { return };
    let mut d = s.d;
    let counter = d.apply_detached(
        "counter",
        &task(
            "counter",
            "{cpu: 4, memory: 1GB..}",
            &["for i in $(seq 1 60); do echo \"line $i\"; sleep 0.1; done"],
        ),
    );
    wait_log(&d, &counter, "line 5");
    let queued = d.apply_detached(
        "later",
        &task("later", "{cpu: 4, memory: 1GB..}", &["echo later ran"]),
    );
    wait("the second job queued in Slurm", 60, || {
        job(&d, &queued)["waiting_reason"]
            .as_str()
            .is_some_and(|r| r.contains("PENDING"))
    });
    d.kill9();
    std::thread::sleep(Duration::from_secs(1));
    d.spawn();
    let run = d.wait_status(&counter, &["done", "failed"], Duration::from_secs(90));
    assert_eq!(run["status"], "done", "{run}\n{}", d.daemon_output());
    let want: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&d.logs(&counter)), want);
    let run = d.wait_status(&queued, &["done", "failed"], Duration::from_secs(90));
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(String::from_utf8_lossy(&d.logs(&queued)), "later ran\n");
    drop(d);
    drop(s._login);
    drop(s.cluster);
}

#[test]
fn an_unreachable_login_node_is_a_clear_reason_not_a_hang() {
    let mut d = TestDaemon::new();
    let key = ssh_keygen(&d.dir.path().join("id"));
    // a port nothing listens on
    let port = std::net::TcpListener::bind(("127.0.0.73", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    d.write_daemon_config(&format!(
        "backends:\n  - type: slurm\n    clusters:\n      - {{name: gone, hostname: 127.0.0.73, port: {port}, user: root, private_key: {{path: {}}}}}\n",
        key.path.display()
    ));
    d.spawn();
    let p = d.write_config(
        "f.yml",
        "type: fleet\nname: far-away\nnodes: 1\nbackends: [slurm]\n",
    );
    let t0 = Instant::now();
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8"), "-y"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("slurm cluster gone") && err.contains("cannot reach"),
        "{err}\n{}",
        d.daemon_output()
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    // `offer` says why the cluster offers nothing
    let v = d.cli_json(&["offer", "-b", "slurm"]);
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("slurm cluster gone") && warnings.contains("cannot reach"),
        "{v}"
    );
}
