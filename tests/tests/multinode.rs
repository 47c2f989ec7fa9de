//! Multi-node tasks as dstack's MPI and NCCL examples write them, on a cluster fleet of two
//! real sshd hosts: the MPI hostfile, `ssh` from the master to a worker without a password,
//! node `groups` with their own commands and resources, `startup_order`, `stop_criteria:
//! master-done`; and `utilization_policy` ending an idle run with dstack's reason.

use flotilla_e2e::sshd::{ssh_keygen, ClientKey, TestHost, TWO_H100};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use flotilla_protocol::Timestamp;
use serde_json::Value;
use std::time::Duration;

/// A whole host with its two H100s.
const GPU_NODE: &str = "{cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100}";
/// A whole host with an A100.
const A100_NODE: &str = "{cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: A100}";

/// `nvidia-smi` of a host with one A100 80GB.
const ONE_A100: &str = "NVIDIA A100-SXM4-80GB, 81920\n";

/// A daemon with a `placement: cluster` fleet `pair` of two sshd hosts with two H100s each on
/// 127.0.0.`octets`.
fn cluster(octets: [u8; 2]) -> (TestDaemon, ClientKey, TestHost, TestHost) {
    cluster_of(octets, [TWO_H100, TWO_H100])
}

/// [`cluster`] with each host's GPUs (`nvidia-smi`'s answer).
fn cluster_of(octets: [u8; 2], gpus: [&str; 2]) -> (TestDaemon, ClientKey, TestHost, TestHost) {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let a = TestHost::start(octets[0], &key, Some(gpus[0]));
    let b = TestHost::start(octets[1], &key, Some(gpus[1]));
    let mut fleet = format!(
        "type: fleet\nname: pair\nplacement: cluster\nssh_config:\n  user: root\n  identity_file: {}\n  hosts:\n",
        key.path.display()
    );
    for h in [&a, &b] {
        fleet.push_str(&format!(
            "    - hostname: {}\n      port: {}\n",
            h.ip, h.port
        ));
    }
    let p = d.write_config("pair.fleet.yml", &fleet);
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8 path"), "-y"]);
    assert!(out.status.success(), "fleet apply: {}", stderr(&out));
    (d, key, a, b)
}

fn job_log(d: &TestDaemon, run: &str, job: u32) -> String {
    let out = d.cli(&["logs", run, "--job", &job.to_string()]);
    assert!(out.status.success(), "logs: {}", stderr(&out));
    stdout(&out)
}

fn job(run: &Value, job_num: u64) -> &Value {
    run["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_num"] == job_num))
        .unwrap_or_else(|| panic!("no job {job_num} in {run}"))
}

/// The host a job ran on.
fn host_of<'a>(run: &Value, job_num: u64, a: &'a TestHost, b: &'a TestHost) -> &'a TestHost {
    match job(run, job_num)["instance"].as_str() {
        Some("pair-0") => a,
        Some("pair-1") => b,
        other => panic!("job {job_num} on {other:?}: {run}"),
    }
}

fn started_at(run: &Value, job_num: u64) -> Timestamp {
    let at = job(run, job_num)["started_at"].as_str().expect("started");
    Timestamp::parse_rfc3339(at).expect("a timestamp")
}

fn authorized_keys(h: &TestHost) -> String {
    std::fs::read_to_string(h.home().join(".ssh/authorized_keys")).unwrap_or_default()
}

#[test]
fn the_master_finds_the_hostfile_and_reaches_a_worker_by_ssh_without_a_password() {
    let (d, _key, a, b) = cluster([60, 61]);
    // dstack's NCCL-tests shape: the master runs `mpirun`-like work over ssh, the worker waits.
    let name = d.apply_detached(
        "mpi",
        &format!(
            "type: task\nname: mpi\nnodes: 2\nstop_criteria: master-done\nresources: {GPU_NODE}\ncommands:\n  - echo \"hostfile=$DSTACK_MPI_HOSTFILE\"\n  - cat \"$DSTACK_MPI_HOSTFILE\"\n  - |\n    if [ \"$DSTACK_NODE_RANK\" = 0 ]; then\n      worker=$(echo \"$DSTACK_NODES_IPS\" | sed -n 2p)\n      ssh \"$worker\" 'echo \"reached $HOME\"' </dev/null\n    else\n      sleep 120\n    fi\n"
        ),
    );
    let run = d.wait_status(
        &name,
        &["done", "failed", "terminated"],
        Duration::from_secs(60),
    );
    let master_log = job_log(&d, &name, 0);
    assert_eq!(run["status"], "done", "{run}\n{master_log}");
    let master = host_of(&run, 0, &a, &b);
    let worker = host_of(&run, 1, &a, &b);
    let hostfile = format!("{} slots=2\n{} slots=2\n", master.ip, worker.ip);
    for j in 0..2 {
        let log = job_log(&d, &name, j);
        assert!(log.contains(&hostfile), "job {j}: {log}");
        assert!(log.contains("/mpi/hostfile\n"), "job {j}: {log}");
    }
    // The command ran on the worker's host, as its login user (its home is its own).
    let reached = format!("reached {}", worker.home().display());
    assert!(master_log.contains(&reached), "{master_log}");
    // master-done: the worker was stopped and ends done, as dstack ends it.
    let w = job(&run, 1);
    assert_eq!(w["status"], "done", "{run}");
    assert_eq!(w["termination_reason"], "done_by_runner", "{run}");
    assert_eq!(run["termination_reason"], "all_jobs_done", "{run}");
    // Cleaned up: the run's key is no longer authorized on either host, its private key gone.
    for h in [&a, &b] {
        let keys = authorized_keys(h);
        assert!(!keys.contains("flotilla-run-mpi"), "{keys}");
    }
    let dirs = std::process::Command::new("find")
        .args([a.home(), b.home()])
        .args(["-path", "*/ssh/id"])
        .output()
        .expect("find");
    assert_eq!(stdout(&dirs), "", "a private key was left behind");
    // The private key never reaches a client.
    let json = d.cli_json(&["ps", "-a"]).to_string();
    assert!(!json.contains("private_sealed\":\"v"), "{json}");
}

#[test]
fn groups_run_their_own_commands_and_resources_workers_first() {
    // The head asks for an A100, the workers for H100s: each lands on the host that has them.
    let (d, _key, a, b) = cluster_of([62, 63], [TWO_H100, ONE_A100]);
    let name = d.apply_detached(
        "grouped",
        &format!(
            "type: task\nname: grouped\nstartup_order: workers-first\nstop_criteria: master-done\ngroups:\n  - name: head\n    nodes: 1\n    resources: {A100_NODE}\n    commands:\n      - echo \"head rank=$DSTACK_NODE_RANK gpus=$DSTACK_GPUS_PER_NODE of $DSTACK_GPUS_NUM worker=${{{{ groups[1].nodes[0].IP_ADDRESS }}}}\"\n      - cat \"$DSTACK_MPI_HOSTFILE\"\n  - name: workers\n    nodes: 1\n    resources: {GPU_NODE}\n    commands:\n      - echo \"worker rank=$DSTACK_NODE_RANK gpus=$DSTACK_GPUS_PER_NODE\"\n      - sleep 120\n"
        ),
    );
    let run = d.wait_status(
        &name,
        &["done", "failed", "terminated"],
        Duration::from_secs(60),
    );
    assert_eq!(run["status"], "done", "{run}\n{}", job_log(&d, &name, 0));
    assert_eq!(job(&run, 0)["instance"], "pair-1", "{run}");
    assert_eq!(job(&run, 1)["instance"], "pair-0", "{run}");
    let head_log = job_log(&d, &name, 0);
    assert!(
        head_log.starts_with(&format!(
            "head rank=0 gpus=1 of 3 worker={}\n{} slots=1\n{} slots=2\n",
            a.ip, b.ip, a.ip
        )),
        "{head_log}"
    );
    assert_eq!(job_log(&d, &name, 1), "worker rank=1 gpus=2\n");
    // workers-first: the master started once the worker ran.
    assert!(started_at(&run, 0) >= started_at(&run, 1), "{run}");
}

#[test]
fn master_first_starts_the_workers_after_the_master_and_all_done_waits_for_every_node() {
    let (d, _key, _a, _b) = cluster([64, 65]);
    let name = d.apply_detached(
        "ordered",
        &format!(
            "type: task\nname: ordered\nnodes: 2\nstartup_order: master-first\nresources: {GPU_NODE}\ncommands:\n  - if [ \"$DSTACK_NODE_RANK\" = 1 ]; then sleep 2; fi\n  - echo \"rank $DSTACK_NODE_RANK\"\n"
        ),
    );
    let run = d.wait_status(
        &name,
        &["done", "failed", "terminated"],
        Duration::from_secs(60),
    );
    assert_eq!(run["status"], "done", "{run}");
    assert!(started_at(&run, 1) >= started_at(&run, 0), "{run}");
    // all-done (the default): the run waited for the worker, which ended by itself.
    assert_eq!(job_log(&d, &name, 1), "rank 1\n");
    assert_eq!(job(&run, 1)["exit_code"], 0, "{run}");
}

#[test]
fn utilization_policy_ends_an_idle_run_with_dstacks_reason() {
    let mut d = TestDaemon::new();
    // 5 minutes become 15 seconds (the stand-in nvidia-smi says 37% all along); the job is
    // judged once its samples reach back to within 10 seconds of the window's start.
    d.write_daemon_config("utilization_window_scale: 0.05\n");
    d.spawn();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let h = TestHost::start(66, &key, Some(TWO_H100));
    d.apply_ssh_fleet("gpus", &key, &h);
    let name = d.apply_detached(
        "idle",
        &format!(
            "type: task\nname: idle\nresources: {GPU_NODE}\nutilization_policy:\n  min_gpu_utilization: 50\n  time_window: 5m\ncommands:\n  - sleep 300\n"
        ),
    );
    let run = d.wait_status(
        &name,
        &["done", "failed", "terminated"],
        Duration::from_secs(90),
    );
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["termination_reason"], "job_failed", "{run}");
    let j = job(&run, 0);
    assert_eq!(j["status"], "terminated", "{run}");
    assert_eq!(
        j["termination_reason"], "terminated_due_to_utilization_policy",
        "{run}"
    );
    assert_eq!(
        j["termination_message"], "The job GPU utilization below 50% for 300 seconds",
        "{run}"
    );
}

#[test]
fn a_group_reference_out_of_range_is_refused_at_its_line() {
    let d = TestDaemon::start();
    let p = d.write_config(
        "bad.dstack.yml",
        "type: task\ngroups:\n  - nodes: 1\n    commands:\n      - echo ${{ groups[1].nodes[0].IP_ADDRESS }}\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8 path"), "-y", "-d"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("bad.dstack.yml:5:")
            && err.contains("Invalid reference groups[1].nodes[0].IP_ADDRESS: out of range"),
        "{err}"
    );
}
