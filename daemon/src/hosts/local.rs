//! Bottom layer. The local machine as a host: supervisor verbs run as child processes. A root
//! daemon runs the verbs of another user's job as that user (uid, primary gid, supplementary
//! groups, `HOME`, `USER`, `LOGNAME`), in a job directory `<data>/host/jobs/<id>` that the daemon
//! makes for them: owned by the user, 0700, under root-owned 0711 parents, so the user reaches
//! their own job by path and nothing else of the daemon's data dir (the store is 0700).

use super::{Exec, HostError, SUPERVISOR_SCRIPT};
use std::ffi::{CStr, CString};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::oneshot;

/// The name of the local host's directory inside the daemon's data dir.
pub const HOST_DIR: &str = "host";

/// This machine: supervisor verbs run as local child processes.
#[derive(Debug, Clone)]
pub struct LocalHost {
    /// Where jobs of this host live (`FLOTILLA_ROOT` of the supervisor).
    pub root: PathBuf,
    supervisor: PathBuf,
}

/// A user account the daemon starts processes as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// Every group of the user (the primary one included), from `getgrouplist`.
    pub groups: Vec<libc::gid_t>,
    pub name: String,
    pub home: String,
}

impl Account {
    /// The account of `uid` from the password database; `None` when it has no entry.
    pub fn of_uid(uid: u32) -> Option<Account> {
        // SAFETY: getpwuid_r writes into buffers we own, sized as the manual asks; the strings
        // it points to live in `buf`, which outlives every read of them.
        let (name, gid, home) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut buf = vec![0 as libc::c_char; 16384];
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
                return None;
            }
            let name = CStr::from_ptr(pwd.pw_name).to_owned();
            let home = if pwd.pw_dir.is_null() {
                "/".to_string()
            } else {
                CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned()
            };
            (name, pwd.pw_gid, home)
        };
        let groups = group_list(&name, gid);
        Some(Account {
            uid,
            gid,
            groups,
            name: name.to_string_lossy().into_owned(),
            home,
        })
    }
}

/// Every group `name` belongs to, its primary group `gid` first.
fn group_list(name: &CString, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let before = n;
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most `n` and sets `n` to
        // the number it needs when that is more.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n <= before {
            return vec![gid];
        }
    }
}

/// Whether the daemon runs as root (and so starts other users' jobs as them).
pub fn daemon_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Opens a root daemon's data dir just enough for users to reach their jobs: the dir itself
/// becomes 0711 (traversable, not listable) and every entry but the local host's directory and
/// the daemon's socket loses all group and other permissions (the store, the logs, the
/// configuration).
pub fn share_data_dir_with_jobs(data_dir: &Path) -> std::io::Result<()> {
    if !daemon_is_root() {
        return Ok(());
    }
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if entry.file_name() == HOST_DIR {
            continue;
        }
        let meta = std::fs::symlink_metadata(entry.path())?;
        // A link is not followed; the daemon's socket (when it lives here) keeps its own mode.
        if meta.file_type().is_symlink() || meta.file_type().is_socket() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & !0o077))?;
        }
    }
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))
}

impl LocalHost {
    /// Installs the supervisor under `root` (when its hash changed) and returns the host. A
    /// root daemon makes `root` and `root/jobs` 0711 and the supervisor 0644, so that the jobs
    /// of other users can run it and reach their own job directory.
    pub fn install(root: &Path) -> Result<LocalHost, HostError> {
        let supervisor = root.join(format!("supervisor-{}.sh", super::supervisor_hash()));
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
        if daemon_is_root() {
            let mode = |m| std::fs::Permissions::from_mode(m);
            std::fs::set_permissions(root, mode(0o711)).map_err(install_err)?;
            std::fs::set_permissions(root.join("jobs"), mode(0o711)).map_err(install_err)?;
            std::fs::set_permissions(&supervisor, mode(0o644)).map_err(install_err)?;
        }
        Ok(LocalHost {
            root: root.to_path_buf(),
            supervisor,
        })
    }

    /// Makes a job directory `root/jobs/<id>` that belongs to `account`, 0700.
    fn prepare_job_dir(&self, job_dir: &Path, account: &Account) -> std::io::Result<()> {
        if job_dir.parent() != Some(self.root.join("jobs").as_path()) {
            return Err(std::io::Error::other(format!(
                "{} is not a job directory of {}",
                job_dir.display(),
                self.root.display()
            )));
        }
        match std::fs::create_dir(job_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = std::fs::symlink_metadata(job_dir)?;
        if !meta.file_type().is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                job_dir.display()
            )));
        }
        std::os::unix::fs::lchown(job_dir, Some(account.uid), Some(account.gid))?;
        std::fs::set_permissions(job_dir, std::fs::Permissions::from_mode(0o700))
    }

    /// Who runs a verb: `None` for the daemon's own user, else the job's owner. `start` names
    /// the owner (and makes the directory theirs); the other verbs on a job directory run as
    /// whoever owns it, so that the daemon never reads or signals on a user's word as root.
    fn account_for(&self, args: &[&str], owner: Option<u32>) -> Result<Option<Account>, String> {
        if !daemon_is_root() {
            return Ok(None);
        }
        let (Some(verb), Some(dir)) = (args.first(), args.get(1)) else {
            return Ok(None);
        };
        let dir = Path::new(dir);
        let uid = match (*verb, owner) {
            ("start" | "upload", Some(uid)) => uid,
            ("start" | "follow" | "status" | "signal", _) => match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_dir() => m.uid(),
                Ok(_) => return Err(format!("{} is not a directory", dir.display())),
                Err(_) => 0,
            },
            _ => 0,
        };
        if uid == 0 {
            return Ok(None);
        }
        let account = Account::of_uid(uid)
            .ok_or_else(|| format!("uid {uid} has no entry in the password database"))?;
        if matches!(*verb, "start" | "upload") {
            self.prepare_job_dir(dir, &account)
                .map_err(|e| format!("cannot make the job directory {}: {e}", dir.display()))?;
        }
        Ok(Some(account))
    }

    /// Starts `supervisor ARGS...` as a child process (as the job's owner, see
    /// [`LocalHost::account_for`]); `stdin` is written and closed.
    pub async fn exec(
        &self,
        label: String,
        args: &[&str],
        stdin: Option<&[u8]>,
        owner: Option<u32>,
    ) -> Result<Exec, HostError> {
        let spawn_err = |source| HostError::Spawn {
            host: label.clone(),
            source,
        };
        let account = self
            .account_for(args, owner)
            .map_err(|m| spawn_err(std::io::Error::other(m)))?;
        let mut child = self
            .spawn(args, stdin.is_some(), account)
            .map_err(spawn_err)?;
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            w.write_all(data).await.map_err(spawn_err)?;
            drop(w);
        }
        Self::exec_of(label, child)
    }

    /// [`LocalHost::exec`] with standard input streamed from `stdin` (an archive: never whole
    /// in memory), then closed.
    pub async fn exec_reader(
        &self,
        label: String,
        args: &[&str],
        stdin: &mut (dyn AsyncRead + Send + Unpin),
        owner: Option<u32>,
    ) -> Result<Exec, HostError> {
        let spawn_err = |source| HostError::Spawn {
            host: label.clone(),
            source,
        };
        let account = self
            .account_for(args, owner)
            .map_err(|m| spawn_err(std::io::Error::other(m)))?;
        let mut child = self.spawn(args, true, account).map_err(spawn_err)?;
        if let Some(mut w) = child.stdin.take() {
            tokio::io::copy(stdin, &mut w).await.map_err(spawn_err)?;
            w.shutdown().await.map_err(spawn_err)?;
            drop(w);
        }
        Self::exec_of(label, child)
    }

    /// `sh supervisor ARGS...`, as `account` when given, with piped output.
    fn spawn(
        &self,
        args: &[&str],
        piped_stdin: bool,
        account: Option<Account>,
    ) -> std::io::Result<tokio::process::Child> {
        let mut cmd = Command::new("sh");
        cmd.arg(&self.supervisor)
            .args(args)
            .env("FLOTILLA_ROOT", &self.root)
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(a) = account {
            as_account(&mut cmd, a);
        }
        cmd.spawn()
    }

    /// The output streams and exit code of a spawned verb.
    fn exec_of(label: String, mut child: tokio::process::Child) -> Result<Exec, HostError> {
        let spawn_err = |source| HostError::Spawn {
            host: label.clone(),
            source,
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(spawn_err(std::io::Error::other(
                "no pipes to the supervisor",
            )));
        };
        let (exit_tx, exit_rx) = oneshot::channel();
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let _ = exit_tx.send(status.ok().and_then(|s| s.code()));
                }
                _ = kill_rx => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    let _ = exit_tx.send(None);
                }
            }
        });
        Ok(Exec::new(
            Box::pin(stdout),
            Box::pin(stderr),
            exit_rx,
            kill_tx,
        ))
    }
}

/// `sh -c SCRIPT` as the user `owner` (a root daemon drops to them; otherwise the daemon's own
/// user, who owns every job), with piped standard streams: a gateway session.
pub fn session_command(owner: u32, script: &str) -> Result<Command, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: getuid has no preconditions.
    if daemon_is_root() && owner != unsafe { libc::getuid() } {
        let account =
            Account::of_uid(owner).ok_or_else(|| format!("uid {owner} has no account here"))?;
        as_account(&mut cmd, account);
    }
    Ok(cmd)
}

/// Makes `cmd` run as `a`: a fresh environment of the user's (`HOME`, `USER`, `LOGNAME`, the
/// daemon's `PATH`), `/` as the working directory, then groups, gid and uid dropped in the child.
fn as_account(cmd: &mut Command, a: Account) {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", &a.home)
        .env("USER", &a.name)
        .env("LOGNAME", &a.name)
        .current_dir("/");
    let Account {
        uid, gid, groups, ..
    } = a;
    // SAFETY: the closure runs in the child between fork and exec and only makes the
    // async-signal-safe system calls setgroups, setgid and setuid on data moved into it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_an_account_with_its_groups() {
        let root = Account::of_uid(0).expect("root has an entry");
        assert_eq!(root.name, "root");
        assert_eq!(root.gid, 0);
        assert!(root.groups.contains(&0));
    }

    #[test]
    fn a_root_daemons_data_dir_lets_users_reach_the_host_dir_only() {
        if !daemon_is_root() {
            return; // only a root daemon shares its data dir
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        for sub in ["state", "logs", HOST_DIR] {
            std::fs::create_dir(data.join(sub)).expect("dir");
            std::fs::set_permissions(data.join(sub), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        std::fs::write(data.join("config.yml"), "").expect("config");
        std::fs::set_permissions(
            data.join("config.yml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let sock = data.join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("socket");
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).expect("chmod");
        share_data_dir_with_jobs(data).expect("shared");
        let mode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(data), 0o711);
        assert_eq!(mode(&data.join("state")), 0o700);
        assert_eq!(mode(&data.join("logs")), 0o700);
        assert_eq!(mode(&data.join("config.yml")), 0o600);
        assert_eq!(mode(&data.join(HOST_DIR)), 0o755);
        assert_eq!(mode(&sock), 0o660);
    }

    #[test]
    fn a_job_directory_outside_the_hosts_jobs_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = LocalHost::install(dir.path()).expect("install");
        // SAFETY: getuid has no preconditions.
        let me = Account::of_uid(unsafe { libc::getuid() }).expect("own account");
        let outside = dir.path().join("elsewhere");
        assert!(host.prepare_job_dir(&outside, &me).is_err());
        let inside = dir.path().join("jobs").join("7");
        host.prepare_job_dir(&inside, &me).expect("a job directory");
        let meta = std::fs::metadata(&inside).expect("made");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), me.uid);
    }

    /// Runs `supervisor ARGS...` under `root` with `stdin`; returns its stdout.
    fn supervisor(root: &Path, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let script = root.join("supervisor.sh");
        std::fs::write(&script, SUPERVISOR_SCRIPT).expect("script");
        let mut child = std::process::Command::new("sh")
            .arg(&script)
            .args(args)
            .env("FLOTILLA_ROOT", root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn the_supervisor_keeps_job_files_private_and_collects_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("jobs")).expect("jobs");
        let job = root.join("jobs").join("1");
        let job_s = job.to_str().expect("utf-8");
        let work = format!("{job_s}/work");
        supervisor(
            root,
            &["start", job_s, "sh", &work],
            "export HF_TOKEN=secret\necho hi > out.txt\n",
        );
        for _ in 0..500 {
            if job.join("exit_code").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(job.join("exit_code").exists(), "the job ended");
        assert_eq!(mode(&job), 0o700);
        assert_eq!(mode(&job.join("script")), 0o600);
        assert_eq!(mode(&job.join("log")), 0o600);
        assert_eq!(mode(&job.join("exit_code")), 0o600);
        assert_eq!(mode(Path::new(&work)), 0o700);
        // The job itself runs with the umask it was started under, not the supervisor's.
        assert_ne!(mode(&Path::new(&work).join("out.txt")) & 0o077, 0o000);

        // A recent job stays; one whose exit code is older than the retention goes.
        assert_eq!(supervisor(root, &["gc", "3600"], ""), "");
        assert!(job.exists());
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(job.join("exit_code"))
            .and_then(|f| f.set_modified(old))
            .expect("age the exit code");
        assert_eq!(supervisor(root, &["gc", "3600"], "").trim(), job_s);
        assert!(!job.exists());
    }
}
