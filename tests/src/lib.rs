//! flotilla-e2e: a test harness that runs the real `flotillad` and `flotilla` binaries in temporary dirs.
//!
//! Build the binaries first (`cargo build --workspace --bins`; `scripts/test` does it).

pub mod cloud;
pub mod docker;
pub mod http;
pub mod raw;
pub mod slurm;
pub mod sshd;
pub mod users;

use flotilla_protocol::client::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A built binary of the workspace (`flotillad`, `flotilla`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the test binary");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// The repository root (for `assets/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// One daemon in its own temporary state dir, with a short socket path.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    /// Extra environment of the daemon (a `PATH` without Docker, say).
    pub daemon_env: Vec<(String, String)>,
    child: Option<Child>,
}

impl TestDaemon {
    /// A daemon home that nothing runs in yet (the CLI may start the daemon on demand).
    pub fn new() -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("fl")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let socket = dir.path().join("s");
        let data_dir = dir.path().join("data");
        TestDaemon {
            dir,
            socket,
            data_dir,
            daemon_env: Vec::new(),
            child: None,
        }
    }

    /// A daemon, started and answering.
    pub fn start() -> TestDaemon {
        let mut d = TestDaemon::new();
        d.spawn();
        d
    }

    pub fn daemon_command(&self) -> Command {
        let mut c = Command::new(bin("flotillad"));
        c.arg("--socket")
            .arg(&self.socket)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("NOTIFY_SOCKET")
            .env("FLOTILLA_LOG", "info")
            // Each test daemon serves HTTP on a port of its own (`http_addr` says which).
            .env("FLOTILLA_HTTP", "127.0.0.1:0")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Starts `flotillad` and waits until its socket answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.out"))
            .expect("daemon log");
        let child = self
            .daemon_command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn flotillad");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("flotillad did not start:\n{}", self.daemon_output());
    }

    pub fn daemon_output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.out")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the daemon dies mid-work, its socket file stays behind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill with a pid we spawned.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// `flotilla ARGS...` against this daemon (it may start the daemon on demand).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run flotilla")
    }

    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("flotilla"));
        c.args(args)
            .env("FLOTILLA_SOCKET", &self.socket)
            .env("FLOTILLA_DATA_DIR", &self.data_dir)
            // `attach` writes SSH configuration under HOME: the test's own.
            .env("HOME", self.dir.path())
            // A daemon the CLI starts serves HTTP on a port of its own.
            .env("FLOTILLA_HTTP", "127.0.0.1:0")
            .stdin(Stdio::null());
        c
    }

    /// `flotilla ARGS... --json`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "flotilla {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Writes the daemon's `config.yml` (before it starts).
    pub fn write_daemon_config(&self, yaml: &str) {
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        std::fs::write(self.data_dir.join("config.yml"), yaml).expect("config.yml");
    }

    /// Writes a configuration file into the test dir.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// Submits a configuration detached; returns the run name.
    pub fn apply_detached(&self, name: &str, text: &str) -> String {
        let p = self.write_config(&format!("{name}.dstack.yml"), text);
        let out = self.cli(&["apply", "-f", p.to_str().expect("utf-8 path"), "-y", "-d"]);
        assert!(
            out.status.success(),
            "apply failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("run name")
            .trim()
            .to_string()
    }

    /// Applies an SSH fleet `name` of one test host (logging in as root with `key`) and waits
    /// until its host is provisioned.
    pub fn apply_ssh_fleet(&self, name: &str, key: &sshd::ClientKey, host: &sshd::TestHost) {
        let fleet = format!(
            "type: fleet\nname: {name}\nssh_config:\n  user: root\n  identity_file: {}\n  hosts:\n    - hostname: {}\n      port: {}\n",
            key.path.display(),
            host.ip,
            host.port
        );
        let p = self.write_config(&format!("{name}.fleet.yml"), &fleet);
        let out = self.cli(&["apply", "-f", p.to_str().expect("utf-8 path"), "-y"]);
        assert!(
            out.status.success(),
            "fleet apply failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The run as `ps -a --json` shows it.
    pub fn run_json(&self, name: &str) -> Value {
        let runs = self.cli_json(&["ps", "-a"]);
        runs.as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name).cloned())
            .unwrap_or_else(|| panic!("run {name} not in ps: {runs}"))
    }

    /// Waits until the run reaches one of `statuses`.
    pub fn wait_status(&self, name: &str, statuses: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.run_json(name);
            if statuses.iter().any(|s| run["status"] == *s) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {name} did not reach {statuses:?}: {run}\n{}",
                self.daemon_output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole log of a run's first job, as bytes.
    pub fn logs(&self, name: &str) -> Vec<u8> {
        let out = self.cli(&["logs", name]);
        assert!(
            out.status.success(),
            "logs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Where the daemon's HTTP server listens (`daemon status`), e.g. `127.0.0.1:41234`.
    pub fn http_addr(&self) -> String {
        let s = self.cli_json(&["daemon", "status"]);
        s["http"]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("the HTTP endpoint is not up: {s}"))
            .to_string()
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.socket, "e2e").await.expect("connect")
    }
}

impl Default for TestDaemon {
    fn default() -> Self {
        TestDaemon::new()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // The CLI may have started a daemon of its own on this socket: stop it too.
        let _ = self
            .cli_command(&["daemon", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.terminate();
        // Jobs run detached; end the ones this test left behind.
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(self.data_dir.join("host").to_string_lossy().as_ref())
            .status();
    }
}

/// The `p` quantile (0..=1) of `v` (sorted in place).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `run.apply` of `configuration` named `name` over `c`, the run as the daemon answers.
pub async fn apply_raw(c: &Client, configuration: &str, name: &str) -> Value {
    use flotilla_protocol::rpc::{methods, RunApplyParams};
    c.call_raw(
        methods::RUN_APPLY,
        RunApplyParams {
            configuration: configuration.into(),
            file_name: None,
            archives: Vec::new(),
            env: Default::default(),
            name: Some(name.to_string()),
        },
    )
    .await
    .expect("run.apply")
}

/// Milliseconds from `run.apply` of `configuration` (named `name`) to its job's `running` event,
/// on a connection of its own (its `events.watch` ends with it: a stream lasts as long as its
/// connection, and a connection holds at most 16).
pub async fn apply_to_running_ms(socket: &Path, configuration: &str, name: &str) -> f64 {
    let c = Client::connect(socket, "e2e-bench").await.expect("connect");
    use flotilla_protocol::client::RawStreamItem;
    use flotilla_protocol::rpc::{methods, EventsParams};
    let mut events = c
        .subscribe_raw(methods::EVENTS_WATCH, EventsParams::default())
        .await
        .expect("events.watch");
    let t = Instant::now();
    apply_raw(&c, configuration, name).await;
    let job = format!("{name}/0/0");
    loop {
        match events.next().await {
            Some(RawStreamItem::Item(v)) => {
                let e = &v["event"];
                if e["kind"] == "job"
                    && e["resource"] == job.as_str()
                    && e["new_status"] == "running"
                {
                    return t.elapsed().as_secs_f64() * 1e3;
                }
            }
            other => panic!("events ended: {other:?}"),
        }
    }
}

/// Waits until a run is finished (polling `run.get`).
pub async fn wait_finished(c: &Client, name: &str) {
    loop {
        let r: Value = c
            .call_raw(
                flotilla_protocol::rpc::methods::RUN_GET,
                serde_json::json!({ "name": name }),
            )
            .await
            .expect("run.get");
        if matches!(r["status"].as_str(), Some("done" | "failed" | "terminated")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `GET /` on 127.0.0.1:port over HTTP/1.0; the body, or None when nothing answers.
pub fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The static busybox of the machine (its `httpd` serves test pages).
pub fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (install busybox-static)")
}
