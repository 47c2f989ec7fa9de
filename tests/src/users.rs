//! Real Unix users for tests of a shared daemon: created with `useradd` when missing (the tests
//! run as root, as CI does), and a copy of the command line that every user may execute.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// The group whose members may use a shared test daemon.
pub const TEST_GROUP: &str = "flotilla-e2e";

static CREATE: Mutex<()> = Mutex::new(());

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A user `name` (with a home), member of [`TEST_GROUP`] when `member`; returns its uid.
pub fn ensure_user(name: &str, member: bool) -> u32 {
    let _one_at_a_time = CREATE.lock().unwrap_or_else(|p| p.into_inner());
    if !exists("group", TEST_GROUP) {
        run(Command::new("groupadd").arg(TEST_GROUP));
    }
    if !exists("passwd", name) {
        run(Command::new("useradd").args(["-m", "-s", "/bin/bash", name]));
    }
    if member {
        run(Command::new("usermod").args(["-a", "-G", TEST_GROUP, name]));
    }
    let out = Command::new("id").args(["-u", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric uid")
}

fn exists(db: &str, name: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(c: &mut Command) {
    let out = c.output().expect("run a user-management command");
    assert!(
        out.status.success() || out.status.code() == Some(9),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `flotilla` binary copied into a directory every user can traverse (the build's own
/// directory may be private to root).
pub fn public_cli() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(format!("/tmp/flotilla-e2e-bin-{}", std::process::id()));
    let path = dir.join("flotilla");
    let _one_at_a_time = CREATE.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        std::fs::create_dir_all(&dir).expect("bin dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::copy(crate::bin("flotilla"), &path).expect("copy flotilla");
    }
    path
}

/// `flotilla ARGS...` as `user`, against the daemon at `socket`, from directory `cwd`.
pub fn cli_as(
    user: &str,
    socket: &std::path::Path,
    cwd: &std::path::Path,
    args: &[&str],
) -> Output {
    Command::new("runuser")
        .arg("-u")
        .arg(user)
        .arg("--")
        .arg("env")
        .arg(format!("FLOTILLA_SOCKET={}", socket.display()))
        .arg(format!("HOME=/home/{user}"))
        .arg(public_cli())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("runuser")
}
