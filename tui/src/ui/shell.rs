//! `s`: an interactive shell in a job. A running job is reached with `flotilla ssh RUN` (this
//! same binary) through the daemon's SSH gateway, wherever it runs: inside its container, or in
//! its working directory with its environment. A job of the local instance that has ended gets
//! a local shell in its directory (what it left there), with the environment of its file.

use flotilla_protocol::model::{Job, JobSubmission, Run};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// What to start: program, directory and environment, and the line printed before it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Where it starts; `None`: here (`flotilla ssh` goes to the job's directory on its host).
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub banner: String,
}

/// How to run `flotilla ssh` against the dashboard's daemon: this binary and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct SshVia {
    pub exe: PathBuf,
    pub socket: PathBuf,
    pub data_dir: Option<PathBuf>,
}

/// The shell for `job` of `run`, or why there is none. `via` runs jobs on SSH hosts.
pub fn spec(
    run: &Run,
    job: &Job,
    sub: &JobSubmission,
    shell: Option<&str>,
    via: Option<&SshVia>,
) -> Result<ShellSpec, String> {
    let what = format!("{} {}/{}", run.name, job.replica_num, job.job_num);
    let host = sub.instance.as_deref().unwrap_or("its host");
    if sub.status.is_on_host() {
        let Some(via) = via else {
            return Err(format!(
                "{what} runs on {host}: use `flotilla ssh {} --replica {} --job {}`",
                run.name, job.replica_num, job.job_num
            ));
        };
        return Ok(through_gateway(run, job, via, &what, host));
    }
    match sub.fleet.as_deref() {
        Some("local") => {}
        Some(fleet) => {
            return Err(format!(
                "{what} is {}; a shell on {host} (fleet {fleet}) needs the job running",
                sub.status
            ));
        }
        None => {
            return Err(format!(
                "{what} has no instance yet ({}); try again when it runs",
                sub.status
            ))
        }
    }
    let Some(job_dir) = sub.job_dir.as_deref() else {
        return Err(format!(
            "{what} has not started on its instance yet ({})",
            sub.status
        ));
    };
    let common = run.configuration.common();
    let cwd = match common.working_dir.as_deref() {
        Some(w) if w.starts_with('/') => PathBuf::from(w),
        Some(w) => Path::new(job_dir).join("work").join(w),
        None => Path::new(job_dir).join("work"),
    };
    let mut env = BTreeMap::new();
    let nodes = run.configuration.nodes();
    let gpus = sub.gpus.len();
    env.insert("DSTACK_RUN_NAME".into(), run.name.clone());
    env.insert("DSTACK_NODE_RANK".into(), job.job_num.to_string());
    env.insert("DSTACK_NODES_NUM".into(), nodes.to_string());
    env.insert("DSTACK_GPUS_PER_NODE".into(), gpus.to_string());
    env.insert(
        "DSTACK_GPUS_NUM".into(),
        (gpus * nodes as usize).to_string(),
    );
    env.insert("DSTACK_MASTER_NODE_IP".into(), "127.0.0.1".into());
    env.insert("DSTACK_NODES_IPS".into(), "127.0.0.1".into());
    let visible: Vec<String> = sub.gpus.iter().map(|g| g.to_string()).collect();
    env.insert("CUDA_VISIBLE_DEVICES".into(), visible.join(","));
    // The file's env, bare keys from the caller's environment at apply time (missing ones skipped;
    // so are values with `${{ secrets.NAME }}`, which only the daemon puts in, at the job's start).
    for (k, v) in &common.env.0 {
        let value = v
            .clone()
            .or_else(|| run.caller_env.get(k).cloned())
            .filter(|v| !flotilla_protocol::config::interpolate::has_reference(v));
        if let Some(value) = value {
            env.insert(k.clone(), value);
        }
    }
    let program = shell
        .filter(|s| !s.is_empty())
        .unwrap_or("/bin/sh")
        .to_string();
    Ok(ShellSpec {
        args: Vec::new(),
        banner: format!(
            "flotilla: shell in {what} ({}); exit to return to the dashboard",
            cwd.display()
        ),
        program,
        cwd: Some(cwd),
        env,
    })
}

/// `flotilla ssh RUN --replica R --job J` against the dashboard's daemon.
fn through_gateway(run: &Run, job: &Job, via: &SshVia, what: &str, host: &str) -> ShellSpec {
    let mut env = BTreeMap::new();
    env.insert(
        "FLOTILLA_SOCKET".to_string(),
        via.socket.display().to_string(),
    );
    if let Some(d) = &via.data_dir {
        env.insert("FLOTILLA_DATA_DIR".to_string(), d.display().to_string());
    }
    ShellSpec {
        program: via.exe.display().to_string(),
        args: vec![
            "ssh".into(),
            run.name.clone(),
            "--replica".into(),
            job.replica_num.to_string(),
            "--job".into(),
            job.job_num.to_string(),
        ],
        cwd: None,
        env,
        banner: format!("flotilla: shell in {what} on {host}; exit to return to the dashboard"),
    }
}

/// Runs the shell on this terminal until it exits. The caller has handed the terminal over
/// (input thread joined, raw mode and alternate screen left). Ctrl-C reaches the shell, not us.
pub async fn run(spec: &ShellSpec) -> Result<std::process::ExitStatus, String> {
    if let Some(cwd) = spec.cwd.as_ref().filter(|c| !c.is_dir()) {
        return Err(format!(
            "the job's working directory {} does not exist (any more)",
            cwd.display()
        ));
    }
    println!("{}", spec.banner);
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args).envs(&spec.env);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: signal() is async-signal-safe; the child gets default dispositions back.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    // Like system(3): the terminal's ctrl-c and ctrl-\ are for the shell while it runs.
    let _ignore = IgnoreInterrupts::new();
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.program))?;
    child
        .wait()
        .await
        .map_err(|e| format!("waiting for {}: {e}", spec.program))
}

/// Ignores SIGINT and SIGQUIT while alive; restores the previous handlers on drop.
struct IgnoreInterrupts {
    int: libc::sighandler_t,
    quit: libc::sighandler_t,
}

impl IgnoreInterrupts {
    fn new() -> IgnoreInterrupts {
        // SAFETY: setting dispositions of this process; restored in Drop.
        unsafe {
            IgnoreInterrupts {
                int: libc::signal(libc::SIGINT, libc::SIG_IGN),
                quit: libc::signal(libc::SIGQUIT, libc::SIG_IGN),
            }
        }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        // SAFETY: restores what `new` replaced.
        unsafe {
            libc::signal(libc::SIGINT, self.int);
            libc::signal(libc::SIGQUIT, self.quit);
        }
    }
}

/// `$SHELL`, when set.
pub fn user_shell() -> Option<String> {
    std::env::var("SHELL").ok().filter(|s| !s.is_empty())
}
