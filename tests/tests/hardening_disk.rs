//! No failure left silent: a disk that fills up under a running job. The daemon's copy of job
//! logs lives on a 1 MiB tmpfs; the job writes more than that.

use flotilla_e2e::users::is_root;
use flotilla_e2e::{stderr, stdout, TestDaemon};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A small tmpfs mounted for the life of the value.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let status = Command::new("umount").arg("-l").arg(&self.0).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

#[test]
fn a_full_disk_under_a_jobs_log_shows_on_the_run_and_ends_it_with_a_reason_naming_the_disk() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let mut d = TestDaemon::new();
    let Some(_disk) = SmallDisk::mount(&d.data_dir.join("logs"), "1m") else {
        eprintln!("skipped: this machine refuses tmpfs mounts");
        return;
    };
    d.spawn();
    let p = d.write_config(
        "chatty.dstack.yml",
        "type: task\nname: chatty\ncommands:\n  - head -c 4000000 /dev/zero | tr '\\0' 'x' | fold -w 100\n  - sleep 30\nresources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n",
    );
    let mut apply = d.cli_command(&["apply", "-f", p.to_str().expect("utf-8 path"), "-y"]);
    let child = apply
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("apply");
    let pid = child.id();
    // apply must end by itself (the job sleeps 30 s after its output); stop waiting at 60 s.
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        // SAFETY: kill with a pid this test spawned; harmless when it already exited.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("apply output");
    assert!(
        out.status.code().is_some(),
        "apply hung on a full disk and was killed after 60 s: {}",
        stderr(&out)
    );
    drop(watchdog);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("No space left") || err.to_lowercase().contains("disk"),
        "apply says why: {err}\n{}",
        &stdout(&out)[..stdout(&out).len().min(300)]
    );
    let run = d.run_json("chatty");
    let text = run.to_string();
    assert!(
        text.contains("No space left") || text.to_lowercase().contains("disk full"),
        "the run names the disk: {text}"
    );
    assert_ne!(
        run["jobs"][0]["termination_reason"], "executor_error",
        "{text}"
    );
    let events = d.cli(&["event", "--json"]);
    assert!(
        String::from_utf8_lossy(&events.stdout).contains("No space left"),
        "an event says it"
    );
    // `logs -f` of the job says why its log stops short.
    let logs = d.cli(&["logs", "chatty", "-f"]);
    assert!(!logs.status.success());
    assert!(stderr(&logs).contains("No space left"), "{}", stderr(&logs));
    // The daemon is still there.
    let status = d.cli(&["daemon", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));
}
