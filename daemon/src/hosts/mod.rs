//! Reaching machines: the local machine through child processes, with the supervisor verbs on top.
//!
//! Every host action is a supervisor verb run through [`Host::exec`], so jobs on the local
//! machine and on SSH hosts take the same path.

pub mod inventory;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The supervisor script, embedded at build time.
pub const SUPERVISOR_SCRIPT: &str = include_str!("../../../assets/supervisor.sh");

/// FNV-1a of the supervisor script: versions the copy installed on hosts.
pub fn supervisor_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in SUPERVISOR_SCRIPT.bytes() {
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
}

/// This machine: supervisor verbs run as local child processes.
#[derive(Debug, Clone)]
pub struct LocalHost {
    /// Where jobs of this host live (`FLOTILLA_ROOT` of the supervisor).
    pub root: PathBuf,
    supervisor: PathBuf,
}

impl LocalHost {
    /// Installs the supervisor under `root` (when its hash changed) and returns the host.
    pub fn install(root: &Path) -> Result<LocalHost, HostError> {
        let supervisor = root.join(format!("supervisor-{}.sh", supervisor_hash()));
        let install_err = |source| HostError::Install {
            path: root.display().to_string(),
            source,
        };
        std::fs::create_dir_all(root.join("jobs")).map_err(install_err)?;
        if !supervisor.exists() {
            let tmp = root.join(".supervisor.tmp");
            std::fs::write(&tmp, SUPERVISOR_SCRIPT).map_err(install_err)?;
            std::fs::rename(&tmp, &supervisor).map_err(install_err)?;
        }
        Ok(LocalHost { root: root.to_path_buf(), supervisor })
    }
}

/// A machine the daemon can run supervisor verbs on.
#[derive(Debug, Clone)]
pub enum Host {
    Local(LocalHost),
}

/// A running supervisor verb.
pub struct Exec {
    pub child: Child,
}

impl Host {
    pub fn label(&self) -> String {
        match self {
            Host::Local(_) => "the local machine".to_string(),
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
        }
    }

    /// Starts `supervisor VERB ARGS...` with piped stdout and stderr; `stdin` is written and closed.
    pub async fn exec(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Exec, HostError> {
        match self {
            Host::Local(l) => {
                let mut cmd = Command::new("sh");
                cmd.arg(&l.supervisor)
                    .args(args)
                    .env("FLOTILLA_ROOT", &l.root)
                    .stdin(if stdin.is_some() {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut child = cmd.spawn().map_err(|source| HostError::Spawn {
                    host: self.label(),
                    source,
                })?;
                if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
                    w.write_all(data).await.map_err(|source| HostError::Spawn {
                        host: self.label(),
                        source,
                    })?;
                    drop(w);
                }
                Ok(Exec { child })
            }
        }
    }

    /// Runs a verb to its end and returns its stdout; a non-zero exit is an error with its stderr.
    pub async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, HostError> {
        let exec = self.exec(args, stdin).await?;
        let out = exec
            .child
            .wait_with_output()
            .await
            .map_err(|source| HostError::Spawn {
                host: self.label(),
                source,
            })?;
        if !out.status.success() {
            return Err(HostError::Verb {
                host: self.label(),
                verb: args.first().unwrap_or(&"").to_string(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
