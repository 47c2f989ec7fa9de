//! `attach`: ports forwarded from this machine's loopback to a job through the daemon (a job on
//! the host and a job in a container), a local port in use, and dev environments that stay up.

use flotilla_e2e::docker::test_image;
use flotilla_e2e::{busybox, http_get, stderr, stdout, TestDaemon};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// Starts `flotilla attach ARGS` and returns it with the local port of its first forward.
fn attach(d: &TestDaemon, args: &[&str]) -> (Child, u16) {
    let mut a = vec!["attach"];
    a.extend_from_slice(args);
    let mut child = d
        .cli_command(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla attach");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    loop {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let status = child.wait();
                panic!(
                    "attach ended ({status:?}) before forwarding: {seen}\n{}",
                    d.daemon_output()
                )
            }
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("Forwarding 127.0.0.1:") {
            let port = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a local port");
            // Keep draining stderr so that attach never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return (child, port);
        }
    }
}

fn wait_body(port: u16, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if http_get(port).as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} never served {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn attach_forwards_a_host_jobs_port_and_a_containers_port() {
    let image = test_image();
    let d = TestDaemon::start();
    let busybox = busybox();
    let port = free_port();
    let www = d.dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "from the host\n").expect("index");
    let host = d.apply_detached(
        "onhost",
        &format!(
            "type: task\nports: [\"*:{port}\"]\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - {busybox} httpd -f -p 127.0.0.1:{port} -h {}\n",
            www.display()
        ),
    );
    let (mut a, local) = attach(&d, &[&host]);
    wait_body(local, "from the host\n");
    a.kill().expect("kill attach");
    a.wait().expect("reap attach");

    let boxed = d.apply_detached(
        "boxed",
        &format!("type: task\nimage: {image}\nports: [\"*:8000\"]\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - mkdir -p /tmp/www && echo from the container > /tmp/www/index.html\n  - httpd -f -p 8000 -h /tmp/www\n"),
    );
    let (mut a, local) = attach(&d, &[&boxed]);
    wait_body(local, "from the container\n");
    // A second connection goes through its own tunnel.
    wait_body(local, "from the container\n");
    a.kill().expect("kill attach");
    a.wait().expect("reap attach");
    for name in [&host, &boxed] {
        let out = d.cli(&["stop", name, "-y", "-x"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

#[test]
fn a_local_port_in_use_is_an_error_naming_it() {
    let d = TestDaemon::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let name = d.apply_detached(
        "busy",
        "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - sleep 600\n",
    );
    let out = d.cli(&["attach", &name, "-p", &format!("{port}:9000")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("local port {port}")), "{err}");
    assert!(err.contains("-p LOCAL:9000"), "{err}");
    let out = d.cli(&["stop", &name, "-y", "-x"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_dev_environment_stays_up_after_init_until_stopped() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "dev",
        "type: dev-environment\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ninit:\n  - echo init done\n",
    );
    d.wait_status(&name, &["running"], WAIT);
    let deadline = Instant::now() + WAIT;
    while d.logs(&name) != b"init done\n" {
        assert!(Instant::now() < deadline, "init never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.run_json(&name)["status"], "running", "ended after init");
    let out = d.cli(&["stop", &name, "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = d.wait_status(&name, &["terminated"], WAIT);
    assert_eq!(run["jobs"][0]["termination_reason"], "terminated_by_user");
}

#[test]
fn a_dev_environment_ends_after_inactivity_duration_without_an_attached_client() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "idle",
        "type: dev-environment\ninactivity_duration: 3s\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ninit:\n  - echo ready\n",
    );
    let mut a = d
        .cli_command(&["attach", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla attach");
    let mut lines = BufReader::new(a.stderr.take().expect("stderr")).lines();
    let up = lines.any(|l| l.is_ok_and(|l| l.starts_with("Dev environment")));
    std::thread::spawn(move || for _ in lines {});
    if !up {
        let status = a.wait();
        panic!("attach ended ({status:?}) before the dev environment was up");
    }
    // Attached: it stays up past its inactivity_duration.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(d.run_json(&name)["status"], "running");
    a.kill().expect("kill attach");
    a.wait().expect("reap attach");
    let run = d.wait_status(&name, &["terminated"], WAIT);
    assert_eq!(
        run["jobs"][0]["termination_reason"], "inactivity_duration_exceeded",
        "{run}"
    );
}

#[test]
fn attach_forwards_a_port_of_a_job_on_an_ssh_host_behind_a_proxy_jump() {
    use flotilla_e2e::sshd::{ssh_keygen, TestHost};
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let jump = TestHost::start(62, &key, None);
    let host = TestHost::start(61, &key, None);
    let fleet = d.write_config(
        "remote.fleet.yml",
        &format!(
            "type: fleet\nname: remote\nssh_config:\n  user: root\n  identity_file: {}\n  proxy_jump:\n    hostname: {}\n    port: {}\n  hosts:\n    - hostname: {}\n      port: {}\n",
            key.path.display(),
            jump.ip,
            jump.port,
            host.ip,
            host.port
        ),
    );
    let out = d.cli(&["apply", "-f", fleet.to_str().expect("utf-8"), "-y"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let busybox = busybox();
    let port = free_port();
    let www = d.dir.path().join("remote-www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "from the ssh host\n").expect("index");
    let name = d.apply_detached(
        "onssh",
        &format!(
            "type: task\nfleets: [remote]\nports: [\"*:{port}\"]\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - {busybox} httpd -f -p 127.0.0.1:{port} -h {}\n",
            www.display()
        ),
    );
    let (mut a, local) = attach(&d, &[&name]);
    assert_eq!(d.run_json(&name)["jobs"][0]["fleet"], "remote");
    wait_body(local, "from the ssh host\n");
    a.kill().expect("kill attach");
    a.wait().expect("reap attach");
    // `ssh RUN` reaches the job on the SSH host through the gateway and the daemon's connection.
    let out = ssh(&d, &name, "echo $DSTACK_RUN_NAME; pwd");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with(&format!("{name}\n")), "{text}");
    assert!(text.trim_end().ends_with("/work"), "{text}");
    // A terminal on the host (its sshd's), and scp into the job's directory.
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(d.dir.path().join(".flotilla/ssh/config"))
        .args(["-o", "BatchMode=yes", "-tt", name.as_str(), "tty"])
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("ssh -tt");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("/dev/pts/"),
        "no terminal: {}",
        stdout(&out)
    );
    let file = d.dir.path().join("to-remote.txt");
    std::fs::write(&file, "over the jump\n").expect("file");
    let out = std::process::Command::new("scp")
        .arg("-F")
        .arg(d.dir.path().join(".flotilla/ssh/config"))
        .args(["-o", "BatchMode=yes"])
        .arg(&file)
        .arg(format!("{name}:to-remote.txt"))
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("scp");
    assert!(out.status.success(), "scp: {}", stderr(&out));
    let out = ssh(&d, &name, "cat to-remote.txt");
    assert_eq!(stdout(&out), "over the jump\n", "{}", stderr(&out));
    let out = d.cli(&["stop", &name, "-y", "-x"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `ssh -F ~/.flotilla/ssh/config HOST -- COMMAND` with the test's HOME.
fn ssh(d: &TestDaemon, host: &str, command: &str) -> std::process::Output {
    let config = d.dir.path().join(".flotilla/ssh/config");
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-o", "BatchMode=yes", host, command])
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("ssh (install openssh-client)")
}

#[test]
fn ssh_run_goes_through_the_daemons_gateway_into_the_job() {
    let image = test_image();
    let d = TestDaemon::start();
    let busybox = busybox();
    let web = free_port();
    let www = d.dir.path().join("gw-www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), "through ssh -L\n").expect("index");
    let host_job = d.apply_detached(
        "gwhost",
        &format!(
            "type: task\nenv:\n  - WHERE=host-job\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - {busybox} httpd -f -p 127.0.0.1:{web} -h {}\n",
            www.display()
        ),
    );
    let boxed = d.apply_detached(
        "gwbox",
        &format!("type: task\nimage: {image}\nenv:\n  - WHERE=container-job\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - sleep 600\n"),
    );
    for name in [&host_job, &boxed] {
        let mut a = d
            .cli_command(&["attach", name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flotilla attach");
        let mut lines = BufReader::new(a.stderr.take().expect("stderr")).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.starts_with("To open a session in the job")));
        a.kill().expect("kill attach");
        a.wait().expect("reap attach");
        assert!(ready, "attach did not set up ssh {name}");
    }
    // `ssh -L` (direct-tcpip through the gateway) reaches the job's port.
    let local = free_port();
    let mut tunnel = std::process::Command::new("ssh")
        .arg("-F")
        .arg(d.dir.path().join(".flotilla/ssh/config"))
        .args(["-o", "BatchMode=yes", "-N", "-L"])
        .arg(format!("127.0.0.1:{local}:localhost:{web}"))
        .arg(&host_job)
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("ssh -L");
    wait_body(local, "through ssh -L\n");
    tunnel.kill().expect("kill ssh -L");
    tunnel.wait().expect("reap ssh -L");
    // scp (SFTP) into the host job's working directory.
    let file = d.dir.path().join("upload.txt");
    std::fs::write(&file, "uploaded\n").expect("file");
    let out = std::process::Command::new("scp")
        .arg("-F")
        .arg(d.dir.path().join(".flotilla/ssh/config"))
        .args(["-o", "BatchMode=yes"])
        .arg(&file)
        .arg(format!("{host_job}:upload.txt"))
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("scp");
    assert!(out.status.success(), "scp: {}", stderr(&out));
    let job_dir = d.run_json(&host_job)["jobs"][0]["job_dir"]
        .as_str()
        .expect("job dir")
        .to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{job_dir}/work/upload.txt")).expect("uploaded file"),
        "uploaded\n"
    );
    let include = std::fs::read_to_string(d.dir.path().join(".ssh/config")).expect("~/.ssh/config");
    assert!(include.starts_with("Include "), "{include}");
    // A host job: its working directory and environment.
    let out = ssh(&d, &host_job, "echo $WHERE; pwd");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("host-job\n"), "{text}");
    assert!(text.trim_end().ends_with("/work"), "{text}");
    // A container job: inside the container; the exit status comes back.
    let out = ssh(&d, &boxed, "cat /flotilla-marker; echo $WHERE; exit 3");
    assert_eq!(
        stdout(&out),
        "inside the image\ncontainer-job\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(3));
    // Another key is refused: the same entry with a key the daemon did not give.
    let other = flotilla_e2e::sshd::ssh_keygen(&d.dir.path().join("other"));
    let config =
        std::fs::read_to_string(d.dir.path().join(".flotilla/ssh/config")).expect("config");
    let swapped: String = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("IdentityFile ") {
                format!("    IdentityFile {}\n", other.path.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let other_config = d.dir.path().join("other-config");
    std::fs::write(&other_config, swapped).expect("other config");
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&other_config)
        .args(["-o", "BatchMode=yes", host_job.as_str(), "true"])
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert!(!out.status.success(), "another key got in");
    // Without BatchMode the refusal says why, and whose runs the caller may reach.
    let out = std::process::Command::new("ssh")
        .arg("-F")
        .arg(&other_config)
        .args([
            "-o",
            "PreferredAuthentications=publickey,keyboard-interactive",
            host_job.as_str(),
            "true",
        ])
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert!(!out.status.success(), "another key got in");
    let refusal = stderr(&out);
    assert!(
        refusal.contains("The key offered is not the one the daemon made for")
            && refusal.contains("which reaches"),
        "{refusal}"
    );
    // A terminal when asked for: on the daemon's machine and inside a container.
    for name in [&host_job, &boxed] {
        let out = std::process::Command::new("ssh")
            .arg("-F")
            .arg(d.dir.path().join(".flotilla/ssh/config"))
            .args([
                "-o",
                "BatchMode=yes",
                "-tt",
                name.as_str(),
                "tty; echo TERM=$TERM",
            ])
            .env("HOME", d.dir.path())
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .expect("ssh -tt");
        let text = stdout(&out);
        assert!(out.status.success(), "{name}: {text}{}", stderr(&out));
        assert!(text.contains("/dev/pts/"), "{name}: no terminal: {text}");
        assert!(text.contains("TERM=xterm-256color"), "{name}: {text}");
    }
    for name in [&host_job, &boxed] {
        let out = d.cli(&["stop", name, "-y", "-x"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}
