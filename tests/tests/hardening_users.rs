//! A daemon shared by a team: who may connect, whose uid a job runs under, and what one user may
//! see and do of another's runs. These tests create real Unix users and need root (as CI runs).

use flotilla_e2e::users::{cli_as, ensure_user, is_root, TEST_GROUP};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use std::os::unix::fs::PermissionsExt;

const SMALL: &str = "resources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n";

/// A root daemon in a directory every user can traverse, optionally with a socket group.
fn shared_daemon(group: Option<&str>) -> TestDaemon {
    let mut d = TestDaemon::new();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if let Some(g) = group {
        d.write_daemon_config(&format!("socket_group: {g}\n"));
    }
    d.spawn();
    d
}

/// A configuration file every user can read.
fn public_file(d: &TestDaemon, name: &str, text: &str) -> String {
    let p = d.write_config(name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    p.to_str().expect("utf-8 path").to_string()
}

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: creating users needs root (CI runs as root)");
        return true;
    }
    false
}

#[test]
fn without_a_socket_group_only_the_daemons_user_may_connect() {
    if skip_unless_root() {
        return;
    }
    ensure_user("fl-e2e-b", false);
    let d = shared_daemon(None);
    let sock = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(sock, 0o600);
    let out = cli_as("fl-e2e-b", &d.socket, d.dir.path(), &["ps"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("socket-group") || err.contains("socket_group"),
        "says how access is granted: {err}"
    );
    // No daemon of that user's was started in its place.
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&d.socket).expect("socket"));
    assert_eq!(owner, 0);
}

#[test]
fn the_daemon_checks_every_peer_even_where_the_socket_files_mode_lets_it_in() {
    if skip_unless_root() {
        return;
    }
    ensure_user("fl-e2e-b", false);
    let d = shared_daemon(None);
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = cli_as("fl-e2e-b", &d.socket, d.dir.path(), &["ps"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("permission denied") && err.contains("socket-group"),
        "refused, saying how access is granted: {err}"
    );
}

#[test]
fn a_socket_group_lets_its_members_in_and_jobs_run_as_their_submitter() {
    if skip_unless_root() {
        return;
    }
    ensure_user("fl-e2e-a", true);
    let d = shared_daemon(Some(TEST_GROUP));
    let meta = std::fs::metadata(&d.socket).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let state = d.data_dir.join("state");
    let task = format!(
        "type: task\nname: whoami\ncommands:\n  - id -un\n  - stat -c 'owner=%U' .\n  - ls {} 2>&1 || true\n{SMALL}",
        state.display()
    );
    let file = public_file(&d, "whoami.dstack.yml", &task);
    let out = cli_as(
        "fl-e2e-a",
        &d.socket,
        d.dir.path(),
        &["apply", "-f", &file, "-y"],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.lines().any(|l| l.trim() == "fl-e2e-a"),
        "the job's uid: {text}"
    );
    assert!(
        text.contains("owner=fl-e2e-a"),
        "the job's directory is the user's: {text}"
    );
    assert!(
        text.contains("Permission denied"),
        "the job cannot read the daemon's store: {text}"
    );
    let run = d.run_json("whoami");
    assert_eq!(run["user"], "fl-e2e-a");
}

#[test]
fn others_see_that_a_run_exists_but_not_its_contents_and_cannot_touch_it() {
    if skip_unless_root() {
        return;
    }
    ensure_user("fl-e2e-a", true);
    ensure_user("fl-e2e-c", true);
    let d = shared_daemon(Some(TEST_GROUP));
    let task = format!(
        "type: task\nname: private\nenv:\n  - TOKEN=s3cr3t-value\ncommands:\n  - echo \"token $TOKEN\"\n  - sleep 60\n{SMALL}"
    );
    let file = public_file(&d, "private.dstack.yml", &task);
    let out = cli_as(
        "fl-e2e-a",
        &d.socket,
        d.dir.path(),
        &["apply", "-f", &file, "-y", "-d"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    d.wait_status("private", &["running"], std::time::Duration::from_secs(30));

    let out = cli_as("fl-e2e-c", &d.socket, d.dir.path(), &["ps", "-a", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    let runs: serde_json::Value = serde_json::from_str(&listing).expect("JSON");
    let run = runs
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "private"))
        .unwrap_or_else(|| panic!("others see that the run exists: {listing}"));
    assert_eq!(run["user"], "fl-e2e-a");
    assert_eq!(run["status"], "running");
    assert!(
        !listing.contains("s3cr3t"),
        "no configuration or env for others: {listing}"
    );

    for args in [
        vec!["logs", "private"],
        vec!["attach", "private", "-p", "*:9999"],
        // A session through the daemon's SSH gateway (the way into every job).
        vec!["ssh", "private", "--", "true"],
        vec!["stop", "private", "-y"],
        vec!["delete", "private", "-y"],
    ] {
        let out = cli_as("fl-e2e-c", &d.socket, d.dir.path(), &args);
        assert!(
            !out.status.success(),
            "{args:?} by another user: {}",
            stdout(&out)
        );
        assert!(!stdout(&out).contains("s3cr3t"), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("fl-e2e-a"), "{args:?} names the owner: {err}");
    }
    // Re-applying a name another user owns is refused, and the run is untouched.
    let out = cli_as(
        "fl-e2e-c",
        &d.socket,
        d.dir.path(),
        &["apply", "-f", &file, "-y", "-d"],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("fl-e2e-a"), "{}", stderr(&out));
    assert_eq!(d.run_json("private")["status"], "running");

    // The owner and an admin (root) see everything.
    let out = cli_as("fl-e2e-a", &d.socket, d.dir.path(), &["logs", "private"]);
    assert!(
        stdout(&out).contains("token s3cr3t-value"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&d.logs("private")).contains("token s3cr3t-value"));
    let out = d.cli(&["stop", "private", "-x", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_fleets_identity_file_is_read_as_the_caller() {
    if skip_unless_root() {
        return;
    }
    ensure_user("fl-e2e-a", true);
    let d = shared_daemon(Some(TEST_GROUP));
    let key = d.dir.path().join("root-only-key");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let fleet = format!(
        "type: fleet\nname: stolen\nssh_config:\n  user: root\n  identity_file: {}\n  hosts:\n    - hostname: 127.0.0.1\n      port: 1\n",
        key.display()
    );
    let file = public_file(&d, "stolen.dstack.yml", &fleet);
    let out = cli_as(
        "fl-e2e-a",
        &d.socket,
        d.dir.path(),
        &["apply", "-f", &file, "-y", "-d"],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(key.to_str().expect("utf-8")),
        "names the file: {err}"
    );
    let fleets = d.cli_json(&["fleet", "list"]);
    assert!(
        !fleets.to_string().contains("stolen"),
        "no fleet was made with a key the caller cannot read: {fleets}"
    );
}
