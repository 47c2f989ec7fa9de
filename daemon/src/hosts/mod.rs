//! Bottom layer. Reaching machines: the local machine through child processes, SSH hosts through one russh
//! connection each; every host action is a supervisor verb run through [`Host::exec`].

pub mod container;
pub mod inventory;
pub mod local;
pub mod pty;
pub mod ssh;
pub mod supervisor;

pub use local::LocalHost;

use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;

/// A two-way byte stream to a port a host reaches (what `tunnel.open` pipes a socket into).
pub trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream for T {}

/// The supervisor script, embedded at build time.
pub const SUPERVISOR_SCRIPT: &str = include_str!("../../../assets/supervisor.sh");

/// The verbs of a Slurm login node (`slurm.sh`), embedded at build time.
pub const SLURM_SCRIPT: &str = include_str!("../../../assets/slurm.sh");

/// FNV-1a of the supervisor script: versions the copy installed on hosts.
pub fn supervisor_hash() -> String {
    script_hash(SUPERVISOR_SCRIPT)
}

/// FNV-1a of the Slurm verbs' script: versions the copy installed on login nodes.
pub fn slurm_script_hash() -> String {
    script_hash(SLURM_SCRIPT)
}

fn script_hash(script: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in script.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot run the supervisor on {host}: {source}")]
    Spawn {
        host: String,
        source: std::io::Error,
    },
    #[error("supervisor `{verb}` failed on {host}: {message}")]
    Verb {
        host: String,
        verb: String,
        message: String,
    },
    #[error("cannot install the supervisor in {path}: {source}")]
    Install {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot reach {host}: {message}")]
    Unreachable { host: String, message: String },
    #[error("cannot log in to {host}: {message}")]
    Auth { host: String, message: String },
    #[error("host key of {host} changed: expected {expected}, got {got}; if the host was reinstalled, delete and re-apply the fleet")]
    HostKeyChanged {
        host: String,
        expected: String,
        got: String,
    },
}

impl HostError {
    /// The connection itself failed (as opposed to a verb failing on a reachable host).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            HostError::Unreachable { .. } | HostError::Spawn { .. }
        )
    }
}

/// A machine the daemon can run supervisor verbs on.
#[derive(Clone)]
pub enum Host {
    Local(LocalHost),
    Ssh(Arc<ssh::SshHost>),
}

type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// A running supervisor verb: its output streams and, at the end, its exit code.
/// Dropping it kills the process (or closes the channel).
pub struct Exec {
    pub stdout: Reader,
    pub stderr: Reader,
    exit: oneshot::Receiver<Option<i32>>,
    _kill: oneshot::Sender<()>,
}

impl Exec {
    pub fn new(
        stdout: Reader,
        stderr: Reader,
        exit: oneshot::Receiver<Option<i32>>,
        kill: oneshot::Sender<()>,
    ) -> Exec {
        Exec {
            stdout,
            stderr,
            exit,
            _kill: kill,
        }
    }

    /// Waits for the end: the exit code (`None` when killed or the connection broke).
    pub async fn wait(self) -> Option<i32> {
        let Exec { exit, _kill, .. } = self;
        let code = exit.await.ok().flatten();
        drop(_kill);
        code
    }

    /// Reads everything and waits: (stdout, stderr, exit code).
    pub async fn collect(mut self) -> (Vec<u8>, Vec<u8>, Option<i32>) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (a, b) = tokio::join!(
            self.stdout.read_to_end(&mut out),
            self.stderr.read_to_end(&mut err)
        );
        // A failed read is part of what the command said: callers show stderr in their errors.
        for (stream, result) in [("stdout", a), ("stderr", b)] {
            if let Err(e) = result {
                err.extend_from_slice(
                    format!("\n(reading the command's {stream} failed: {e})").as_bytes(),
                );
            }
        }
        let code = self.wait().await;
        (out, err, code)
    }
}

impl From<Arc<ssh::SshHost>> for Host {
    fn from(h: Arc<ssh::SshHost>) -> Host {
        Host::Ssh(h)
    }
}

impl Host {
    pub fn label(&self) -> String {
        match self {
            Host::Local(_) => "the local machine".to_string(),
            Host::Ssh(s) => s.label(),
        }
    }

    /// Where a job submission's files live on this host.
    pub fn job_dir(&self, submission_id: u64) -> String {
        match self {
            Host::Local(l) => l
                .root
                .join("jobs")
                .join(submission_id.to_string())
                .display()
                .to_string(),
            Host::Ssh(s) => format!("{}/jobs/{submission_id}", s.root()),
        }
    }

    /// Starts `supervisor VERB ARGS...`; `stdin` is written and closed.
    pub async fn exec(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Exec, HostError> {
        self.exec_for(None, args, stdin).await
    }

    /// [`Host::exec`] for a job of the user `owner` (a uid): on the local machine a root daemon
    /// runs it as that user; an SSH host runs every verb as its login user.
    pub async fn exec_for(
        &self,
        owner: Option<u32>,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Exec, HostError> {
        match self {
            Host::Local(l) => l.exec(self.label(), args, stdin, owner).await,
            Host::Ssh(s) => s.exec_supervisor(args, stdin).await,
        }
    }

    /// [`Host::run_for`] with standard input streamed from `stdin` (an archive: never whole in
    /// memory).
    pub async fn run_reader_for(
        &self,
        owner: Option<u32>,
        args: &[&str],
        stdin: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<String, HostError> {
        let exec = match self {
            Host::Local(l) => l.exec_reader(self.label(), args, stdin, owner).await?,
            Host::Ssh(s) => s.exec_supervisor_reader(args, stdin).await?,
        };
        self.finished(args, exec).await
    }

    /// Runs a verb to its end and returns its stdout; a non-zero exit is an error with its stderr.
    pub async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, HostError> {
        self.run_for(None, args, stdin).await
    }

    /// [`Host::run`] for a job of the user `owner` (see [`Host::exec_for`]).
    pub async fn run_for(
        &self,
        owner: Option<u32>,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<String, HostError> {
        let exec = self.exec_for(owner, args, stdin).await?;
        self.finished(args, exec).await
    }

    /// A verb's stdout once it ended; a non-zero exit is an error with its stderr.
    async fn finished(&self, args: &[&str], exec: Exec) -> Result<String, HostError> {
        let (out, err, code) = exec.collect().await;
        if code != Some(0) {
            let message = String::from_utf8_lossy(&err).trim().to_string();
            if code.is_none() {
                return Err(HostError::Unreachable {
                    host: self.label(),
                    message: if message.is_empty() {
                        "the connection closed before the command ended".into()
                    } else {
                        message
                    },
                });
            }
            return Err(HostError::Verb {
                host: self.label(),
                verb: args.first().unwrap_or(&"").to_string(),
                message,
            });
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

pub use flotilla_protocol::shell::sh_quote;
