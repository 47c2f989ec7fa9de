//! The spine end to end: the example through the CLI, logs byte-exact, stop/abort, failures,
//! kill -9 and restart, socket permissions, a second daemon, and the daemon's own shutdown.

use flotilla_e2e::{repo_root, stderr, stdout, TestDaemon};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

#[test]
fn example_runs_end_to_end_and_starts_the_daemon_on_demand() {
    let d = TestDaemon::new();
    let example = repo_root().join("assets/examples/hello.dstack.yml");
    let out = d.cli(&["apply", "-f", example.to_str().unwrap(), "-y"]);
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "apply failed:\n{so}\n{se}\n{}",
        d.daemon_output()
    );
    // the plan shows the local instance as the offer
    assert!(so.contains("local-0"), "{so}");
    assert!(so.contains("Shown 1 of 1 offers"), "{so}");
    // then the job's output, live
    let logs_at = so
        .find("Hello from flotilla")
        .expect("greeting in the output");
    assert!(
        so[logs_at..].contains("run hello, node 0 of 1\nstep 1\nstep 2\nstep 3\ndone\n"),
        "{so}"
    );
    assert!(se.contains("Run hello done"), "{se}");

    let run = d.run_json("hello");
    assert_eq!(run["status"], "done");
    assert_eq!(run["termination_reason"], "all_jobs_done");
    assert_eq!(run["configuration_type"], "task");
    let user = flotilla_daemon_user();
    assert_eq!(run["user"], user.as_str());
    let job = &run["jobs"][0];
    assert_eq!(job["status"], "done");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["instance"], "local-0");
    assert_eq!(job["fleet"], "local");
    assert!(job["gpus"].is_array());
    for k in ["submitted_at", "started_at", "finished_at"] {
        assert!(job[k].is_string(), "{k} missing in {job}");
    }

    let fleets = d.cli_json(&["fleet", "list"]);
    let local = &fleets[0];
    assert_eq!(local["name"], "local");
    assert_eq!(local["status"], "active");
    let inst = &local["instances"][0];
    assert_eq!(inst["status"], "idle");
    assert_eq!(inst["unreachable"], false);
    assert_eq!(inst["busy_blocks"], 0);
    assert!(inst["resources"]["cpus"].as_u64().unwrap() >= 1);
    assert!(inst["resources"]["memory_gb"].as_f64().unwrap() > 0.5);
    assert!(inst["resources"]["gpus"].is_array());

    let status = d.cli(&["daemon", "status"]);
    let s = stdout(&status);
    assert!(status.status.success());
    assert!(
        s.contains(d.socket.to_str().unwrap()) && s.contains("runs       1 (0 active)"),
        "{s}"
    );
}

fn flotilla_daemon_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn logs_are_byte_exact_for_50_mb_and_a_last_line_without_newline() {
    let d = TestDaemon::start();
    let expected = d.dir.path().join("expected.bin");
    let cfg = format!(
        "type: task\nname: big\nresources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\ncommands:\n  - head -c 52428800 /dev/urandom > {p}\n  - printf 'last line without newline' >> {p}\n  - cat {p}\n",
        p = expected.display()
    );
    let name = d.apply_detached("big", &cfg);
    // a follower from the start sees the same bytes as a reader at the end
    let follow = d
        .cli_command(&["logs", &name, "-f"])
        .output()
        .expect("follow");
    d.wait_status(&name, &["done"], Duration::from_secs(120));
    let want = std::fs::read(&expected).expect("expected bytes");
    assert_eq!(want.len(), 52_428_800 + 25);
    let got = d.logs(&name);
    assert!(
        got == want,
        "logs differ: got {} bytes, want {}",
        got.len(),
        want.len()
    );
    assert!(
        follow.stdout == want,
        "followed logs differ: {} bytes",
        follow.stdout.len()
    );
}

#[test]
fn a_non_zero_exit_fails_the_run_with_the_exit_code() {
    let d = TestDaemon::start();
    let p = d.write_config(
        "fail.yml",
        "type: task\nname: fails\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo before\n  - exit 3\n  - echo never\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(!out.status.success());
    let se = stderr(&out);
    assert!(
        se.contains("failed") && se.contains("job_failed") && se.contains("exit code 3"),
        "{se}"
    );
    assert!(stdout(&out).contains("before\n") && !stdout(&out).contains("never"));
    let run = d.run_json("fails");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["termination_reason"], "job_failed");
    assert_eq!(run["jobs"][0]["status"], "failed");
    assert_eq!(
        run["jobs"][0]["termination_reason"],
        "container_exited_with_error"
    );
    assert_eq!(run["jobs"][0]["exit_code"], 3);
}

const TRAPPER: &str = "type: task\nname: NAME\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\nstop_duration: STOP\ncommands:\n  - trap 'echo got TERM; exit 0' TERM\n  - echo ready\n  - while true; do sleep 0.1; done\n";
const IGNORER: &str = "type: task\nname: NAME\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\nstop_duration: STOP\ncommands:\n  - trap '' TERM\n  - echo ready\n  - while true; do sleep 0.1; done\n";

fn wait_log(d: &TestDaemon, name: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&d.logs(name)).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {name}'s log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stop_is_graceful_and_abort_kills_at_once() {
    let d = TestDaemon::start();
    // graceful: the job gets SIGTERM and exits by itself
    let name = d.apply_detached(
        "graceful",
        &TRAPPER.replace("NAME", "graceful").replace("STOP", "5m"),
    );
    wait_log(&d, &name, "ready");
    let out = d.cli(&["stop", &name, "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = d.wait_status(&name, &["terminated"], Duration::from_secs(20));
    assert_eq!(run["termination_reason"], "stopped_by_user");
    assert_eq!(run["jobs"][0]["status"], "terminated");
    assert_eq!(run["jobs"][0]["termination_reason"], "terminated_by_user");
    assert!(String::from_utf8_lossy(&d.logs(&name)).contains("got TERM"));

    // a job that ignores SIGTERM is killed when stop_duration runs out
    let name = d.apply_detached(
        "stubborn",
        &IGNORER.replace("NAME", "stubborn").replace("STOP", "1s"),
    );
    wait_log(&d, &name, "ready");
    let t0 = Instant::now();
    assert!(d.cli(&["stop", &name, "-y"]).status.success());
    let run = d.wait_status(&name, &["terminated"], Duration::from_secs(20));
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "killed before the grace ran out"
    );
    assert_eq!(run["jobs"][0]["exit_code"], 137);

    // abort: SIGKILL at once, whatever stop_duration says
    let name = d.apply_detached(
        "aborted",
        &IGNORER.replace("NAME", "aborted").replace("STOP", "5m"),
    );
    wait_log(&d, &name, "ready");
    assert!(d.cli(&["stop", &name, "-x", "-y"]).status.success());
    let run = d.wait_status(&name, &["terminated"], Duration::from_secs(10));
    assert_eq!(run["termination_reason"], "aborted_by_user");
    assert_eq!(run["jobs"][0]["status"], "aborted");
    assert_eq!(run["jobs"][0]["termination_reason"], "aborted_by_user");
}

#[test]
fn max_duration_ends_the_run() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "long",
        "type: task\nname: long\nmax_duration: 2s\nstop_duration: 1s\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - sleep 60\n",
    );
    let run = d.wait_status(
        &name,
        &["terminated", "failed", "done"],
        Duration::from_secs(20),
    );
    assert_eq!(run["status"], "terminated");
    assert_eq!(run["termination_reason"], "max_duration_exceeded");
    assert_eq!(
        run["jobs"][0]["termination_reason"],
        "max_duration_exceeded"
    );
}

#[test]
fn kill_9_of_the_daemon_mid_output_loses_and_repeats_nothing() {
    let mut d = TestDaemon::start();
    let counter = "type: task\nname: counter\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - i=0; while [ $i -lt 4000 ]; do i=$((i+1)); echo \"line $i\"; case $i in *00) sleep 0.1;; esac; done\n";
    let name = d.apply_detached("counter", counter);
    // one that ends while the daemon is down
    let quick = d.apply_detached(
        "quick",
        "type: task\nname: quick\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - sleep 1\n  - exit 5\n",
    );
    wait_log(&d, &name, "line 500\n");
    d.kill9();
    assert!(
        d.socket.exists(),
        "a killed daemon leaves its socket behind"
    );
    std::thread::sleep(Duration::from_millis(2500));
    d.spawn(); // replaces the stale socket
    let run = d.wait_status(&name, &["done"], Duration::from_secs(60));
    assert_eq!(run["jobs"][0]["exit_code"], 0);
    let want: String = (1..=4000).map(|i| format!("line {i}\n")).collect();
    let got = String::from_utf8(d.logs(&name)).expect("utf-8 log");
    assert!(
        got == want,
        "log differs after restart: {} bytes vs {}",
        got.len(),
        want.len()
    );

    let q = d.wait_status(&quick, &["failed"], Duration::from_secs(20));
    assert_eq!(q["jobs"][0]["exit_code"], 5);
    assert_eq!(
        q["jobs"][0]["termination_reason"],
        "container_exited_with_error"
    );
}

#[test]
fn socket_is_private_and_a_second_daemon_is_refused() {
    // A socket directory the daemon creates itself is private (one that exists is left as it
    // is: hardening_inputs::a_socket_in_a_directory_the_daemon_did_not_create_leaves_its_mode_alone).
    let mut d = TestDaemon::new();
    d.socket = d.dir.path().join("run").join("s");
    d.spawn();
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let dir_mode = std::fs::metadata(d.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "socket dir mode {dir_mode:o}");
    let second = d.daemon_command().output().expect("second daemon");
    assert!(!second.status.success());
    let msg = stderr(&second);
    assert!(
        msg.contains("another flotillad is already serving"),
        "{msg}"
    );
    // the first one is unharmed
    assert!(d.cli(&["daemon", "status"]).status.success());
}

#[test]
fn sigterm_drains_and_leaves_jobs_running() {
    let mut d = TestDaemon::start();
    let name = d.apply_detached(
        "survivor",
        "type: task\nname: survivor\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo start\n  - sleep 3\n  - echo end\n",
    );
    wait_log(&d, &name, "start");
    let status = d.terminate().expect("daemon exit status");
    assert!(
        status.success(),
        "daemon exit {status:?}:\n{}",
        d.daemon_output()
    );
    assert!(!d.socket.exists(), "socket removed on shutdown");
    d.spawn();
    let run = d.wait_status(&name, &["done"], Duration::from_secs(20));
    assert_eq!(run["jobs"][0]["exit_code"], 0);
    assert_eq!(String::from_utf8_lossy(&d.logs(&name)), "start\nend\n");
}

#[test]
fn invalid_configurations_are_refused_before_submission() {
    let d = TestDaemon::new();
    let p = d.write_config(
        "bad.yml",
        "type: task\ncomands:\n  - echo hi\nresources:\n  gpu: A100:0GB\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().unwrap(), "-y"]);
    assert!(!out.status.success());
    let se = stderr(&out);
    assert!(se.contains("bad.yml:2:1"), "{se}");
    assert!(se.contains("commands"), "{se}");
    assert!(se.contains("bad.yml:5:"), "every error is reported: {se}");
    // nothing was started for a file that does not validate
    assert!(!d.socket.exists());
}

#[test]
fn apply_follows_a_retried_run_to_its_end() {
    let d = TestDaemon::new();
    d.write_daemon_config("retry_delay_scale: 0.1\n");
    let mut d = d;
    d.spawn();
    let marker = d.dir.path().join("attempted");
    let p = d.write_config(
        "twice.dstack.yml",
        &format!(
            "type: task\nname: twice\nretry:\n  on_events: [error]\n  duration: 1m\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - if [ -e {m} ]; then echo second attempt; else touch {m}; echo first attempt; exit 1; fi\n",
            m = marker.display()
        ),
    );
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8 path"), "-y"]);
    let (so, se) = (stdout(&out), stderr(&out));
    // The first attempt's end is not the run's: apply waits for the retry and its log.
    assert!(
        out.status.success(),
        "apply exits with the run's status: {so}{se}"
    );
    assert!(
        so.contains("first attempt") && so.contains("second attempt"),
        "{so}"
    );
    assert!(se.contains("Run twice done"), "{se}");
}

#[test]
fn retry_resubmits_a_failed_job_until_the_retry_duration_runs_out() {
    let d = TestDaemon::new();
    d.write_daemon_config("retry_delay_scale: 0.1\n");
    let mut d = d;
    d.spawn();
    let name = d.apply_detached(
        "flaky",
        "type: task\nname: flaky\nretry:\n  on_events: [error]\n  duration: 2s\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo attempt\n  - exit 1\n",
    );
    // while it waits for the backoff, the run is pending
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = d.run_json(&name);
        if run["status"] == "pending" {
            assert_eq!(run["jobs"][0]["status"], "submitted");
            assert!(run["jobs"][0]["retry_at"].is_string(), "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "never pending: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(30));
    assert_eq!(run["termination_reason"], "retry_limit_exceeded", "{run}");
    let job = &run["jobs"][0];
    let previous = job["previous_submissions"].as_array().unwrap();
    assert!(!previous.is_empty(), "{run}");
    assert_eq!(
        previous[0]["termination_reason"],
        "container_exited_with_error"
    );
    assert_eq!(previous[0]["exit_code"], 1);
    assert_eq!(
        job["submission_num"].as_u64().unwrap() as usize,
        previous.len()
    );
}

#[test]
fn a_job_that_fits_no_instance_fails_with_no_capacity() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "huge",
        "type: task\nname: huge\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100:8}\ncommands:\n  - echo never\n",
    );
    let run = d.wait_status(&name, &["failed"], Duration::from_secs(10));
    assert_eq!(
        run["jobs"][0]["termination_reason"],
        "failed_to_start_due_to_no_capacity"
    );
    let msg = run["jobs"][0]["termination_message"].as_str().unwrap();
    assert!(msg.starts_with("no offers"), "{msg}");
}

#[test]
fn the_daemon_speaks_systemds_notify_protocol() {
    let mut d = TestDaemon::new();
    let notify = d.dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log = std::fs::File::create(d.dir.path().join("daemon.out")).unwrap();
    let mut child = d
        .daemon_command()
        .env("NOTIFY_SOCKET", &notify)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("flotillad");
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    // ready means listening
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_ok());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    d.socket = d.dir.path().join("gone"); // nothing left to stop in Drop
}
