//! `flotilla ... | head -1`: a command whose stdout reader has gone ends quietly, as `cat` does.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// A pipe whose reading end is already closed: every write to it fails with EPIPE.
fn pipe_without_reader() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills two descriptors we then own.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe");
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn printing_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("task.yml");
    std::fs::write(&file, "type: task\ncommands:\n  - echo hi\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["validate", "-f"])
        .arg(&file)
        .stdout(Stdio::from(pipe_without_reader()))
        .stderr(Stdio::piped())
        .output()
        .expect("run flotilla");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing on stderr, got {stderr:?}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "exit 0 or SIGPIPE, got {:?}",
        out.status
    );
}
