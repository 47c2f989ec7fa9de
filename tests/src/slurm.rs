//! A real single-node Slurm for tests: munged, slurmctld and slurmd (Debian's `slurm-wlm` and
//! `munge`) in a temporary directory, with their own ports, key and `slurm.conf`: one node
//! `n1` with 4 CPUs, 7000 MB and `Gres=gpu:h100:2` (its `gres.conf` points at stand-in device
//! files: Slurm 22.05 drops GPUs without a `File=`), partitions `cpu` (default) and `gpu`.
//! Clients find it through `SLURM_CONF`; [`SlurmCluster::install_clients`] puts wrappers that
//! set it on a test host's PATH, so that host is the login node.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BINARIES: [&str; 5] = [
    "/usr/sbin/munged",
    "/usr/sbin/slurmctld",
    "/usr/sbin/slurmd",
    "/usr/bin/sbatch",
    "/usr/bin/sinfo",
];

/// The client commands a login node needs.
pub const CLIENTS: [&str; 7] = [
    "sbatch", "squeue", "sinfo", "scontrol", "scancel", "sacct", "srun",
];

pub struct SlurmCluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    children: Vec<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl SlurmCluster {
    /// Whether Slurm and munge are installed (`.ci/run` installs them).
    pub fn available() -> bool {
        BINARIES.iter().all(|b| Path::new(b).exists())
    }

    /// Starts the cluster and waits until its node is idle; `None`, with a loud message, when
    /// the binaries are missing.
    pub fn start() -> Option<SlurmCluster> {
        if !Self::available() {
            // Straight to stderr, past the test harness's capture of `eprintln!`: loud even
            // when the test passes.
            use std::io::Write;
            writeln!(
                std::io::stderr(),
                "\n\n*** SKIPPED: Slurm is not installed (need {}); `apt-get install slurm-wlm munge` (.ci/run does) ***\n",
                BINARIES.join(", ")
            )
            .expect("stderr");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("slurm")
            .tempdir_in("/tmp")
            .expect("slurm dir");
        let d = dir.path();
        for sub in ["state", "spool", "log", "dev"] {
            std::fs::create_dir_all(d.join(sub)).expect("slurm dirs");
        }
        for dev in ["nvidia0", "nvidia1"] {
            std::fs::write(d.join("dev").join(dev), b"").expect("stand-in device");
        }
        let key: Vec<u8> = (0..1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ std::process::id() as u8)
            .collect();
        let key_path = d.join("munge.key");
        std::fs::write(&key_path, key).expect("munge key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o400))
            .expect("chmod munge key");
        let host = String::from_utf8(
            Command::new("hostname")
                .arg("-s")
                .output()
                .expect("hostname")
                .stdout,
        )
        .expect("utf-8 hostname")
        .trim()
        .to_string();
        let (ctld_port, slurmd_port) = (free_port(), free_port());
        let p = d.display();
        let conf = format!(
            "ClusterName=flt\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n\
             SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nAuthInfo=socket={p}/munge.sock\nCredType=cred/munge\n\
             StateSaveLocation={p}/state\nSlurmdSpoolDir={p}/spool\nSlurmctldPidFile={p}/slurmctld.pid\n\
             SlurmdPidFile={p}/slurmd.pid\nSlurmctldLogFile={p}/log/slurmctld.log\nSlurmdLogFile={p}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_CPU_Memory\nSlurmdParameters=config_overrides\nGresTypes=gpu\nReturnToService=2\n\
             MpiDefault=none\nSchedulerParameters=sched_interval=1\nMinJobAge=300\nKillWait=2\n\
             NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=7000 Gres=gpu:h100:2 State=UNKNOWN\n\
             PartitionName=cpu Nodes=n1 Default=YES MaxTime=INFINITE State=UP\n\
             PartitionName=gpu Nodes=n1 MaxTime=INFINITE State=UP\n"
        );
        let conf_path = d.join("slurm.conf");
        std::fs::write(&conf_path, conf).expect("slurm.conf");
        std::fs::write(
            d.join("gres.conf"),
            format!("NodeName=n1 Name=gpu Type=h100 File={p}/dev/nvidia[0-1]\n"),
        )
        .expect("gres.conf");
        let mut cluster = SlurmCluster {
            conf: conf_path,
            dir,
            children: Vec::new(),
        };
        let d = cluster.dir.path().to_path_buf();
        let log = |name: &str| std::fs::File::create(d.join("log").join(name)).expect("a log file");
        let munged = Command::new("/usr/sbin/munged")
            .arg("-F")
            .arg("-f")
            .arg(format!("--key-file={}", key_path.display()))
            .arg(format!("--socket={}/munge.sock", d.display()))
            .arg(format!("--pid-file={}/munged.pid", d.display()))
            .arg(format!("--log-file={}/log/munged.log", d.display()))
            .arg(format!("--seed-file={}/munge.seed", d.display()))
            .stdin(Stdio::null())
            .stdout(log("munged.out"))
            .stderr(log("munged.err"))
            .spawn()
            .expect("munged");
        cluster.children.push(munged);
        cluster.wait_for("munged's socket", || d.join("munge.sock").exists());
        let ctld = cluster
            .daemon("/usr/sbin/slurmctld", &["-D", "-i"])
            .stdout(log("slurmctld.out"))
            .stderr(log("slurmctld.err"))
            .spawn()
            .expect("slurmctld");
        cluster.children.push(ctld);
        let slurmd = cluster
            .daemon("/usr/sbin/slurmd", &["-D", "-N", "n1"])
            .stdout(log("slurmd.out"))
            .stderr(log("slurmd.err"))
            .spawn()
            .expect("slurmd");
        cluster.children.push(slurmd);
        cluster.wait_for("node n1 idle in both partitions", || {
            let out = cluster
                .client("sinfo")
                .args(["-h", "-N", "-o", "%P %T"])
                .output();
            out.is_ok_and(|o| {
                let s = String::from_utf8_lossy(&o.stdout).to_string();
                s.lines().count() == 2 && s.lines().all(|l| l.ends_with(" idle"))
            })
        });
        Some(cluster)
    }

    fn daemon(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null());
        c
    }

    fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "Slurm: timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A Slurm client command (`squeue`, `scontrol`, ...) against this cluster.
    pub fn client(&self, name: &str) -> Command {
        let mut c = Command::new(format!("/usr/bin/{name}"));
        c.env("SLURM_CONF", &self.conf).stdin(Stdio::null());
        c
    }

    /// `squeue -h -o '%i %j %T %r'`: this cluster's jobs.
    pub fn squeue(&self) -> String {
        let out: Output = self
            .client("squeue")
            .args(["-h", "-o", "%i %j %T %r"])
            .output()
            .expect("squeue");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `scontrol show job -o ID`.
    pub fn show_job(&self, id: &str) -> String {
        let out = self
            .client("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .expect("scontrol");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts wrappers of the Slurm clients (setting `SLURM_CONF`) into `bin`, a test host's
    /// first PATH entry: that host becomes the cluster's login node. `calls`, when given, gets a
    /// line per client call (`NAME ARGS`), to count them.
    pub fn install_clients(&self, bin: &Path, calls: Option<&Path>) {
        use std::os::unix::fs::PermissionsExt;
        for name in CLIENTS {
            let record = calls
                .map(|c| format!("echo \"{name} $*\" >> '{}'\n", c.display()))
                .unwrap_or_default();
            let script = format!(
                "#!/bin/sh\n{record}SLURM_CONF='{}' exec /usr/bin/{name} \"$@\"\n",
                self.conf.display()
            );
            let p = bin.join(name);
            std::fs::write(&p, script).expect("client wrapper");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .expect("chmod wrapper");
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in [
            "slurmctld.log",
            "slurmd.log",
            "slurmctld.err",
            "slurmd.err",
            "munged.err",
        ] {
            let text =
                std::fs::read_to_string(self.dir.path().join("log").join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!("--- {f}\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // This cluster's jobs go first (their slurmstepd outlive slurmd otherwise).
        let _ = self.client("scancel").args(["--user=root"]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.squeue().trim().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
