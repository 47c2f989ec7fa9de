//! Real Docker for the tests: images built here (no registry is reachable), and a real local
//! registry (Debian's `docker-registry`, with htpasswd) on 127.0.0.1 for private pulls.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A static busybox image made by `docker import`: `/flotilla-marker` exists only in it, a user
/// `worker` (uid 1234), a `python3.11` that says which it is, and a default command.
pub const TEST_IMAGE: &str = "flotilla-test/busybox:2";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker (install the Docker engine)")
}

/// Builds [`TEST_IMAGE`] once (idempotent across tests and runs).
pub fn test_image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("rootfs");
        for d in ["bin", "etc", "tmp", "root"] {
            std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("a static busybox (install busybox-static)");
        std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(root.join("bin/busybox"))
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                    .expect("applet link");
            }
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nworker:x:1234:1234:worker:/tmp:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(root.join("etc/group"), "root:x:0:\nworker:x:1234:\n").expect("group");
        std::fs::write(root.join("flotilla-marker"), "inside the image\n").expect("marker");
        // dstack's images run commands with bash; here bash is busybox's sh.
        let bash = root.join("bin/bash");
        std::fs::write(&bash, "#!/bin/sh\nexec /bin/sh \"$@\"\n").expect("bash");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bash, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let py = root.join("bin/python3.11");
        std::fs::write(&py, "#!/bin/sh\necho \"Python 3.11 (test image)\"\n").expect("python");
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let tar = dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success(), "tar of the test rootfs failed");
        let out = docker(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\", \"-c\", \"echo default command of the image\"]",
            tar.to_str().expect("utf-8 path"),
            TEST_IMAGE,
        ]);
        assert!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    TEST_IMAGE
}

/// Containers whose name starts with `prefix` (running or not).
pub fn containers_named(prefix: &str) -> Vec<String> {
    let out = docker(&["ps", "-a", "--format", "{{.Names}}"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// A real registry with htpasswd auth on 127.0.0.1 (Docker trusts loopback registries over
/// plain HTTP).
pub struct Registry {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (install apache2-utils)");
        assert!(htpasswd.status.success(), "htpasswd failed");
        let htpasswd_path = dir.path().join("htpasswd");
        std::fs::write(&htpasswd_path, &htpasswd.stdout).expect("htpasswd file");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n",
                dir.path().join("data").display(),
                htpasswd_path.display()
            ),
        )
        .expect("registry config");
        let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("docker-registry (install the docker-registry package)");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            addr,
            child,
            _dir: dir,
        }
    }

    /// Pushes a local image as `REGISTRY/name` with the registry's credentials (in a throw-away
    /// Docker config), then removes the local copy so that a job must pull it.
    pub fn push_private(&self, image: &str, name: &str, user: &str, password: &str) -> String {
        let target = format!("{}/{name}", self.addr);
        let config = tempfile::tempdir().expect("docker config dir");
        let cfg = config.path().to_str().expect("utf-8 path");
        let mut login = Command::new("docker")
            .args([
                "--config",
                cfg,
                "login",
                "--username",
                user,
                "--password-stdin",
                &self.addr,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker login");
        use std::io::Write;
        login
            .stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("password to docker login");
        let out = login.wait_with_output().expect("docker login");
        assert!(
            out.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for args in [
            vec!["tag", image, &target],
            vec!["--config", cfg, "push", &target],
            vec!["rmi", &target],
        ] {
            let out = docker(&args);
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        target
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("cannot stop the test registry: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("cannot reap the test registry: {e}");
        }
    }
}
