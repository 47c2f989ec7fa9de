//! Jobs in Docker containers, end to end through the CLI with the real Docker engine: output
//! from inside the image, env and `DSTACK_*`, `user`, instance volumes, exit codes, stop and
//! abort, kill -9 of the daemon, unknown images, hosts without Docker, `python` with the
//! daemon's `base_image`, and `registry_auth` against a real private registry.

use flotilla_e2e::docker::{containers_named, test_image, Registry};
use flotilla_e2e::{http_get, stderr, stdout, TestDaemon};
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

/// Waits until the run fails with `creating_container_error`; its message.
fn wait_creating_container_error(d: &TestDaemon, name: &str) -> String {
    let run = d.wait_status(name, &["failed"], WAIT);
    assert_eq!(
        job(&run)["termination_reason"],
        "creating_container_error",
        "{run}"
    );
    job(&run)["termination_message"]
        .as_str()
        .unwrap_or_default()
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
    let message = wait_creating_container_error(&d, &missing);
    assert!(message.contains("/no/such/dir"), "{message}");
    let bad_user = d.apply_detached(
        "baduser",
        &format!("type: task\nimage: {image}\nuser: nobody-here\ncommands:\n  - id\n"),
    );
    let message = wait_creating_container_error(&d, &bad_user);
    assert!(message.contains("nobody-here"), "{message}");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_at_once_naming_it() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "nosuch",
        "type: task\nimage: flotilla-test/no-such-image:404\ncommands:\n  - echo never\n",
    );
    let message = wait_creating_container_error(&d, &name);
    assert!(
        message.contains("flotilla-test/no-such-image:404"),
        "{message}"
    );
    let run = d.run_json(&name);
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
fn an_image_job_waits_for_a_host_with_docker_and_runs_once_docker_answers() {
    let image = test_image();
    let mut d = TestDaemon::new();
    // A `docker` first on the daemon's PATH that reaches no engine until `flag` exists.
    let bin = d.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let flag = d.dir.path().join("docker-up");
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(!real.is_empty(), "docker not on PATH");
    let fake = bin.join("docker");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ -f '{}' ]; then exec '{real}' \"$@\"; fi\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n",
            flag.display()
        ),
    )
    .expect("fake docker");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    d.daemon_env.push(("PATH".into(), path));
    d.write_daemon_config("health_interval_secs: 1\n");
    d.spawn();
    let name = d.apply_detached(
        "needs-docker",
        &format!("type: task\nimage: {image}\ncommands:\n  - cat /flotilla-marker\n"),
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
    // Docker answers again: the daemon notices at its next look and the job runs.
    std::fs::write(&flag, "").expect("flag");
    let run = d.wait_status(&name, &["done", "failed"], WAIT);
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(d.logs(&name), b"inside the image\n");
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
    let message = wait_creating_container_error(&d, &wrong);
    assert!(message.contains(&private), "{message}");
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

#[test]
fn two_jobs_on_one_host_both_serve_on_the_same_container_port() {
    let image = test_image();
    let d = TestDaemon::start();
    let mut names = Vec::new();
    for who in ["first", "second"] {
        names.push(d.apply_detached(
            who,
            &format!("type: task\nimage: {image}\nports: [8000]\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - mkdir -p /tmp/www && echo {who} > /tmp/www/index.html\n  - httpd -f -p 8000 -h /tmp/www\n"),
        ));
    }
    for (name, who) in names.iter().zip(["first", "second"]) {
        d.wait_status(name, &["running"], WAIT);
        let deadline = std::time::Instant::now() + WAIT;
        let body = loop {
            let run = d.run_json(name);
            assert_eq!(run["status"], "running", "{run}");
            let port = job(&run)["ports"][0]["host"].as_u64();
            if let Some(body) = port.and_then(|p| http_get(p as u16)) {
                assert_eq!(job(&run)["ports"][0]["container"], 8000);
                break body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} does not serve: {run}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(body, format!("{who}\n"));
    }
    for name in &names {
        let out = d.cli(&["stop", name, "-y", "--abort"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

#[test]
fn an_image_job_runs_in_a_container_on_an_ssh_host() {
    use flotilla_e2e::sshd::{ssh_keygen, TestHost};
    let image = test_image();
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(60, &key, None);
    d.apply_ssh_fleet("boxes", &key, &host);
    let name = d.apply_detached(
        "remote",
        &format!("type: task\nimage: {image}\nfleets: [boxes]\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - cat /flotilla-marker\n  - echo \"rank $DSTACK_NODE_RANK\"\n"),
    );
    let run = d.wait_status(&name, &["done", "failed"], WAIT);
    assert_eq!(run["status"], "done", "{run}\n{}", d.daemon_output());
    assert_eq!(job(&run)["fleet"], "boxes");
    assert_eq!(d.logs(&name), b"inside the image\nrank 0\n");
    // `flotilla ssh` into a running container job on the SSH host lands inside the container.
    let long = d.apply_detached(
        "remote-long",
        &format!("type: task\nimage: {image}\nfleets: [boxes]\nenv:\n  - WHERE=in-the-job\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - sleep 600\n"),
    );
    d.wait_status(&long, &["running"], WAIT);
    let out = d.cli(&["ssh", &long, "--", "cat /flotilla-marker; echo $WHERE"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "inside the image\nin-the-job\n");
    let out = d.cli(&["stop", &long, "-y", "-x"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn flotilla_ssh_into_a_local_container_job_lands_inside_it() {
    let image = test_image();
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "shell",
        &format!("type: task\nimage: {image}\nenv:\n  - WHERE=in-the-job\nworking_dir: /tmp\ncommands:\n  - sleep 600\n"),
    );
    d.wait_status(&name, &["running"], WAIT);
    let out = d.cli(&["ssh", &name, "--", "cat /flotilla-marker; echo $WHERE; pwd"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "inside the image\nin-the-job\n/tmp\n");
    let out = d.cli(&["stop", &name, "-y", "-x"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
