//! `attach`: ports forwarded from this machine's loopback to a job through the daemon (a job on
//! the host and a job in a container), a local port in use, and dev environments that stay up.

use flotilla_e2e::docker::test_image;
use flotilla_e2e::{stderr, TestDaemon};
use std::io::{BufRead, BufReader, Read, Write};
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

/// GET / on 127.0.0.1:port; the body.
fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
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
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox (install busybox-static)");
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
        "type: dev-environment\nide: vscode\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ninit:\n  - echo init done\n",
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
        "type: dev-environment\nide: vscode\ninactivity_duration: 3s\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ninit:\n  - echo ready\n",
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
fn attach_forwards_a_port_of_a_job_on_an_ssh_host() {
    use flotilla_e2e::sshd::{ssh_keygen, TestHost};
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(61, &key, None);
    d.apply_ssh_fleet("remote", &key, &host);
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox (install busybox-static)");
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
    let out = d.cli(&["stop", &name, "-y", "-x"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
