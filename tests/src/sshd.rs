//! Real OpenSSH servers as test hosts: each on its own loopback address and port, with its own
//! host key, home (sshd's `SetEnv HOME`), authorized_keys, and a fake `nvidia-smi` on its PATH.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `nvidia-smi` answers of a host with two H100 80GB (real CSV output of nvidia-smi).
pub const TWO_H100: &str = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\n";

/// A key pair made with ssh-keygen, for the daemon to log in with.
pub struct ClientKey {
    pub path: PathBuf,
    pub public: String,
}

pub fn ssh_keygen(path: &Path) -> ClientKey {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .expect("public key")
        .trim()
        .to_string();
    ClientKey {
        path: path.to_path_buf(),
        public,
    }
}

/// Creates `user` when missing and lets it log in to the host in `dir` and own its home.
fn give_home_to(dir: &Path, user: &str) {
    let exists = Command::new("id")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let _ = Command::new("useradd")
            // `*`: no password, yet not locked (sshd refuses keys of a locked account).
            .args(["-M", "-s", "/bin/sh", "-p", "*", user])
            .status();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod host dir");
    let status = Command::new("chown")
        .args(["-R", user])
        .arg(dir.join("home"))
        .status()
        .expect("chown");
    assert!(status.success(), "cannot give the host's home to {user}");
}

fn sshd_binary() -> PathBuf {
    for p in ["/usr/sbin/sshd", "/usr/bin/sshd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("sshd not found: install openssh-server (.ci/run does)");
}

pub struct TestHost {
    pub dir: tempfile::TempDir,
    pub ip: String,
    pub port: u16,
    child: Option<Child>,
}

impl TestHost {
    /// Starts sshd on 127.0.0.`octet`, accepting `client` keys; `gpus` is what its nvidia-smi prints
    /// (`None`: no nvidia-smi at all).
    pub fn start(octet: u8, client: &ClientKey, gpus: Option<&str>) -> TestHost {
        TestHost::start_on(octet, None, client, gpus, None)
    }

    /// Like [`TestHost::start`], on `port` (None: a free one), for logins as `user` too (None:
    /// root only; the user is created when missing and given the host's home), as a cloud
    /// machine is reached.
    pub fn start_on(
        octet: u8,
        port: Option<u16>,
        client: &ClientKey,
        gpus: Option<&str>,
        user: Option<&str>,
    ) -> TestHost {
        let dir = tempfile::Builder::new()
            .prefix("host")
            .tempdir_in("/tmp")
            .expect("host dir");
        let ip = format!("127.0.0.{octet}");
        let port = port.unwrap_or_else(|| {
            TcpListener::bind((ip.as_str(), 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        });
        let d = dir.path();
        std::fs::create_dir_all(d.join("home/.ssh")).expect("home");
        std::fs::create_dir_all(d.join("bin")).expect("bin");
        std::fs::write(d.join("authorized_keys"), format!("{}\n", client.public)).expect("keys");
        if let Some(csv) = gpus {
            let script = format!(
                "#!/bin/sh\ncase \"$*\" in\n  *index*) i=0; printf '%s' '{csv}' | while IFS= read -r l; do echo \"$i, 37, 20480, 81559\"; i=$((i+1)); done ;;\n  *) printf '%s' '{csv}' ;;\nesac\n"
            );
            let p = d.join("bin/nvidia-smi");
            std::fs::write(&p, script).expect("nvidia-smi");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        if let Some(user) = user {
            give_home_to(d, user);
        }
        let mut host = TestHost {
            dir,
            ip,
            port,
            child: None,
        };
        host.new_host_key();
        host.spawn();
        host
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Replaces the host key (as a reinstall would).
    pub fn new_host_key(&mut self) {
        let k = self.dir.path().join("host_key");
        let _ = std::fs::remove_file(&k);
        let _ = std::fs::remove_file(k.with_extension("pub"));
        ssh_keygen(&k);
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        std::fs::create_dir_all("/run/sshd").ok();
        let config = format!(
            "Port {port}\nListenAddress {ip}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys {d}/home/.ssh/authorized_keys\nStrictModes no\nUsePAM no\n\
             PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             SetEnv HOME={d}/home PATH={d}/bin:/usr/local/bin:/usr/bin:/bin\nAllowTcpForwarding yes\n\
             LogLevel DEBUG1\nMaxSessions 100\nMaxStartups 100\n",
            port = self.port,
            ip = self.ip,
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let child = Command::new(sshd_binary())
            .arg("-D")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.ip.as_str(), self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The host goes away: its sshd and every SSH session of it die (its jobs, detached, live on).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            for pid in descendants(c.id()) {
                // SAFETY: kill with pids read from /proc.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(self.home().join(".flotilla").to_string_lossy().as_ref())
            .status();
    }
}

/// Every process below `root` in the process tree.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                continue;
            };
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
            {
                parent.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (child, pp) in &parent {
            if *pp == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}
