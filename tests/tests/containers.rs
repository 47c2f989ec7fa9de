//! Jobs in Docker containers, end to end through the CLI with the real Docker engine: output
//! from inside the image, env and `DSTACK_*`, `user`, instance volumes, exit codes, stop and
//! abort, kill -9 of the daemon, unknown images, hosts without Docker, `python` with the
//! daemon's `base_image`, and `registry_auth` against a real private registry.

use flotilla_e2e::docker::{containers_named, test_image, Registry};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn job(run: &serde_json::Value) -> &serde_json::Value {
    &run["jobs"][0]
}

/// The name of the container of a run's first job (the launcher writes it in the job's dir).
fn container_of(run: &serde_json::Value) -> String {
    let dir = job(run)["job_dir"].as_str().expect("a job dir");
    std::fs::read_to_string(format!("{dir}/container"))
        .expect("the container's name")
        .trim()
        .to_string()
}

/// Waits until the container is gone.
fn wait_removed(name: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while containers_named(name).iter().any(|n| n == name) {
        assert!(
            std::time::Instant::now() < deadline,
            "container {name} left behind"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_runs_inside_its_image_with_its_environment_and_exit_code() {
    let image = test_image();
    let d = TestDaemon::start();
    let config = format!(
        "type: task\nimage: {image}\nenv:\n  - GREETING=it's me\ncommands:\n  - cat /flotilla-marker\n  - echo \"$GREETING rank=$DSTACK_NODE_RANK of $DSTACK_NODES_NUM run=$DSTACK_RUN_NAME\"\n  - id -u\n"
    );
    let path = d.write_config("img.dstack.yml", &config);
    let out = d.cli(&[
        "apply",
        "-f",
        path.to_str().expect("path"),
        "-y",
        "--name",
        "inside",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let run = d.wait_status("inside", &["done"], WAIT);
    assert_eq!(job(&run)["exit_code"], 0);
    let logs = String::from_utf8_lossy(&d.logs("inside")).to_string();
    assert_eq!(
        logs,
        "inside the image\nit's me rank=0 of 1 run=inside\n0\n",
        "{}",
        d.daemon_output()
    );
    // Exit code 3 from inside the container.
    let failing = d.apply_detached(
        "fail",
        &format!("type: task\nimage: {image}\ncommands:\n  - echo before\n  - exit 3\n"),
    );
    let run = d.wait_status(&failing, &["failed"], WAIT);
    assert_eq!(job(&run)["exit_code"], 3, "{run}");
    assert_eq!(
        job(&run)["termination_reason"],
        "container_exited_with_error"
    );
    // Without commands the image's own command runs (dstack's rule).
    let default = d.apply_detached("default", &format!("type: task\nimage: {image}\n"));
    d.wait_status(&default, &["done"], WAIT);
    assert_eq!(d.logs(&default), b"default command of the image\n");
    wait_removed(&container_of(&run));
}

#[test]
fn user_and_instance_volumes_are_honoured_and_a_missing_volume_fails_at_once() {
    let image = test_image();
    let d = TestDaemon::start();
    let host_dir = d.dir.path().join("shared");
    std::fs::create_dir_all(&host_dir).expect("volume dir");
    std::fs::write(host_dir.join("from-host"), "host data\n").expect("file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let config = format!(
        "type: task\nimage: {image}\nuser: worker\nvolumes:\n  - {}:/data\n  - path: /opt/none\n    instance_path: /no/such/optional\n    optional: true\ncommands:\n  - id -u\n  - cat /data/from-host\n  - echo written > /data/from-job\n",
        host_dir.display()
    );
    let name = d.apply_detached("vol", &config);
    let run = d.wait_status(&name, &["done", "failed"], WAIT);
    assert_eq!(
        run["status"],
        "done",
        "{run}\n{}",
        String::from_utf8_lossy(&d.logs(&name))
    );
    assert_eq!(d.logs(&name), b"1234\nhost data\n");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("from-job")).expect("written by the job"),
        "written\n"
    );
    let missing = d.apply_detached(
        "missing",
        &format!(
            "type: task\nimage: {image}\nvolumes:\n  - /no/such/dir:/data\ncommands:\n  - id\n"
        ),
    );
    let run = d.wait_status(&missing, &["failed"], WAIT);
    assert_eq!(
        job(&run)["termination_reason"],
        "creating_container_error",
        "{run}"
    );
    let message = job(&run)["termination_message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("/no/such/dir"), "{message}");
    let bad_user = d.apply_detached(
        "baduser",
        &format!("type: task\nimage: {image}\nuser: nobody-here\ncommands:\n  - id\n"),
    );
    let run = d.wait_status(&bad_user, &["failed"], WAIT);
    assert_eq!(
        job(&run)["termination_reason"],
        "creating_container_error",
        "{run}"
    );
    assert!(run.to_string().contains("nobody-here"), "{run}");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_at_once_naming_it() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "nosuch",
        "type: task\nimage: flotilla-test/no-such-image:404\ncommands:\n  - echo never\n",
    );
    let run = d.wait_status(&name, &["failed"], WAIT);
    assert_eq!(
        job(&run)["termination_reason"],
        "creating_container_error",
        "{run}"
    );
    let message = job(&run)["termination_message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("flotilla-test/no-such-image:404"),
        "{message}"
    );
    assert!(job(&run)["exit_code"].is_null(), "{run}");
}

#[test]
fn stop_and_abort_end_the_container_and_remove_it() {
    let image = test_image();
    let d = TestDaemon::start();
    for (verb, abort) in [("stop", false), ("abort", true)] {
        let name = d.apply_detached(
            verb,
            &format!("type: task\nimage: {image}\nstop_duration: 30s\ncommands:\n  - echo up\n  - sleep 600\n"),
        );
        d.wait_status(&name, &["running"], WAIT);
        let deadline = std::time::Instant::now() + WAIT;
        while d.logs(&name) != b"up\n" {
            assert!(std::time::Instant::now() < deadline, "no output");
            std::thread::sleep(Duration::from_millis(50));
        }
        let container = container_of(&d.run_json(&name));
        assert!(containers_named(&container).contains(&container));
        let mut args = vec!["stop", name.as_str(), "-y"];
        if abort {
            args.push("--abort");
        }
        let out = d.cli(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let run = d.wait_status(&name, &["terminated"], WAIT);
        let want = if abort { "aborted" } else { "terminated" };
        assert_eq!(job(&run)["status"], want, "{run}");
        wait_removed(&container);
    }
}

#[test]
fn kill_9_of_the_daemon_mid_output_loses_no_byte_and_keeps_exit_codes() {
    let image = test_image();
    let mut d = TestDaemon::start();
    let config = format!(
        "type: task\nimage: {image}\ncommands:\n  - i=0; while [ $i -lt 60 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done\n  - exit 7\n"
    );
    let name = d.apply_detached("restart", &config);
    // A second container ends while the daemon is down.
    let short = d.apply_detached(
        "short",
        &format!(
            "type: task\nimage: {image}\ncommands:\n  - sleep 1\n  - echo ended\n  - exit 4\n"
        ),
    );
    let deadline = std::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&d.logs(&name)).contains("line 5\n") {
        assert!(std::time::Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill9();
    std::thread::sleep(Duration::from_secs(3));
    d.spawn();
    let run = d.wait_status(&name, &["failed"], WAIT);
    assert_eq!(job(&run)["exit_code"], 7, "{run}");
    let want: String = (0..60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&d.logs(&name)), want);
    let run = d.wait_status(&short, &["failed"], WAIT);
    assert_eq!(job(&run)["exit_code"], 4, "{run}");
    assert_eq!(d.logs(&short), b"ended\n");
}

#[test]
fn an_image_job_waits_for_a_host_with_docker_and_says_so() {
    let d0 = TestDaemon::new();
    // A `docker` first on the daemon's PATH that cannot reach an engine.
    let bin = d0.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let fake = bin.join("docker");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n",
    )
    .expect("fake docker");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut d = d0;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    d.daemon_env.push(("PATH".into(), path));
    d.spawn();
    let name = d.apply_detached(
        "needs-docker",
        "type: task\nimage: flotilla-test/busybox:2\ncommands:\n  - echo x\n",
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let run = d.run_json(&name);
        let reason = job(&run)["waiting_reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if reason.contains("Docker") {
            assert_eq!(run["status"], "submitted", "{run}");
            assert!(reason.contains("local/local-0"), "{reason}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reason naming Docker: {run}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A host job still runs there.
    let host = d.apply_detached("host", "type: task\ncommands:\n  - echo on the host\n");
    d.wait_status(&host, &["done"], WAIT);
}

#[test]
fn python_runs_in_the_daemons_base_image() {
    let image = test_image();
    let d = TestDaemon::new();
    d.write_daemon_config(&format!("base_image: {image}\n"));
    let mut d = d;
    d.spawn();
    let name = d.apply_detached(
        "py",
        "type: task\npython: \"3.11\"\ncommands:\n  - cat /flotilla-marker\n  - python3.11\n",
    );
    let run = d.wait_status(&name, &["done", "failed"], WAIT);
    let logs = String::from_utf8_lossy(&d.logs(&name)).to_string();
    assert_eq!(run["status"], "done", "{run}\n{logs}");
    assert_eq!(logs, "inside the image\nPython 3.11 (test image)\n");
}

#[test]
fn registry_auth_pulls_a_private_image_and_the_password_shows_nowhere() {
    let image = test_image();
    let password = "pw-Zq81-very-secret";
    let registry = Registry::start("alice", password);
    let private = registry.push_private(image, "team/private:1", "alice", password);
    let d = TestDaemon::start();
    // Wrong password: the pull fails, naming the image.
    let wrong = d.apply_detached(
        "wrongpw",
        &format!("type: task\nimage: {private}\nregistry_auth:\n  username: alice\n  password: not-it\ncommands:\n  - echo never\n"),
    );
    let run = d.wait_status(&wrong, &["failed"], WAIT);
    assert_eq!(
        job(&run)["termination_reason"],
        "creating_container_error",
        "{run}"
    );
    assert!(run.to_string().contains(&private), "{run}");
    let name = d.apply_detached(
        "private",
        &format!("type: task\nimage: {private}\nregistry_auth:\n  username: alice\n  password: {password}\ncommands:\n  - cat /flotilla-marker\n"),
    );
    let run = d.wait_status(&name, &["done", "failed"], WAIT);
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(d.logs(&name), b"inside the image\n");
    // Nowhere in clear: ps --json, events, the daemon's log, the store's files, job dirs.
    let ps = stdout(&d.cli(&["ps", "-a", "--json"]));
    assert!(!ps.contains(password), "password in ps --json");
    let events = stdout(&d.cli(&["events", "--json"]));
    assert!(!events.contains(password), "password in events");
    assert!(
        !d.daemon_output().contains(password),
        "password in the daemon's log"
    );
    let mut stack = vec![d.data_dir.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir").flatten() {
                stack.push(e.path());
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            let found = bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes());
            assert!(!found, "password in clear in {}", p.display());
        }
    }
    let out = docker_rmi(&private);
    assert!(out, "cannot remove the pulled image");
}

fn docker_rmi(image: &str) -> bool {
    std::process::Command::new("docker")
        .args(["rmi", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
