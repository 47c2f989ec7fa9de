//! Secrets: set through the command line (the value on standard input), used by a job through
//! `${{ secrets.NAME }}`, sealed in the store and absent from `ps`, events and the daemon's
//! logs; admins alone read them back; every user's runs use them. Plan-time errors for unknown
//! secrets and refused fields, at their line and column.

use flotilla_e2e::users::{cli_as, ensure_user, is_root, TEST_GROUP};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const SMALL: &str = "resources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n";
const VALUE: &str = "hf_Zq8-not-a-real-token-7741";

fn set_secret_from_stdin(d: &TestDaemon, name: &str, value: &str) {
    let mut child = d
        .cli_command(&["secret", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla secret set");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{value}\n").as_bytes())
        .expect("write the value");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
}

fn sha256(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    stdout(&out)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// Applies `task`, waits for it to end `done`, and checks that the job printed the hash of `value`.
fn run_printing_hash_of(d: &TestDaemon, name: &str, task: &str, value: &str) -> String {
    let name = d.apply_detached(name, task);
    let run = d.wait_status(
        &name,
        &["done", "failed"],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(run["status"], "done", "{run}");
    let log = String::from_utf8_lossy(&d.logs(&name)).to_string();
    assert!(log.contains(&sha256(value)), "the job saw the value: {log}");
    name
}

async fn user_me(d: &TestDaemon) -> flotilla_protocol::model::User {
    d.client()
        .await
        .call::<flotilla_protocol::rpc::methods::UserMe>(&flotilla_protocol::rpc::NoParams {})
        .await
        .expect("user.me")
}

/// Every file under `dir` (but `skip`) whose bytes contain `needle`.
fn files_containing(dir: &Path, skip: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p == skip {
            continue;
        }
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir").flatten() {
                stack.push(e.path());
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn a_secret_reaches_the_job_by_interpolation_and_appears_nowhere_else() {
    let d = TestDaemon::start();
    set_secret_from_stdin(&d, "hf_token", VALUE);
    let list = d.cli_json(&["secret", "list"]);
    assert_eq!(list[0]["name"], "hf_token");
    assert!(list[0].get("value").is_none(), "{list}");
    let got = d.cli_json(&["secret", "get", "hf_token"]);
    assert_eq!(
        got["value"], VALUE,
        "the final newline of stdin is not part of it"
    );

    let task = format!(
        "type: task\nname: uses-secret\nenv:\n  - HF_TOKEN=${{{{ secrets.hf_token }}}}\ncommands:\n  - printf %s \"$HF_TOKEN\" | sha256sum\n{SMALL}"
    );
    run_printing_hash_of(&d, "uses-secret", &task, VALUE);

    // Not in ps, events, the daemon's output and logs, nor the store's files.
    let ps = stdout(&d.cli(&["ps", "-a", "--json"]));
    assert!(
        ps.contains("${{ secrets.hf_token }}") && !ps.contains(VALUE),
        "{ps}"
    );
    let events = stdout(&d.cli(&["event", "--json"]));
    assert!(!events.contains(VALUE), "{events}");
    assert!(!d.daemon_output().contains(VALUE));
    let leaks = files_containing(&d.data_dir, &d.data_dir.join("host"), VALUE);
    assert!(leaks.is_empty(), "the value in clear in {leaks:?}");
    let sealed = files_containing(&d.data_dir, &d.data_dir.join("host"), "sealed:v1:");
    assert!(!sealed.is_empty(), "the store keeps the sealed value");

    // Deleted, it is gone; a run that names it is refused at plan time.
    let out = d.cli(&["secret", "delete", "hf_token", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.cli_json(&["secret", "list"]), serde_json::json!([]));
    let file = d.write_config("again.dstack.yml", &task);
    let out = d.cli(&["apply", "-f", file.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("again.dstack.yml:4:5: env[0]: Failed to interpolate due to missing vars: ['secrets.hf_token']"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_secrets_misplaced_references_and_refused_fields_are_located_plan_time_errors() {
    let d = TestDaemon::start();
    set_secret_from_stdin(&d, "known", "v");
    let file = d.write_config(
        "bad.dstack.yml",
        &format!(
            "type: task\nenv:\n  - A=${{{{ secrets.unknown }}}}\nimage: ${{{{ secrets.known }}}}\nfiles:\n  - data:~bob/data\nreservation: r-1\ncommands:\n  - echo ${{{{ secrets.known }}}}\n{SMALL}"
        ),
    );
    let out = d.cli(&["apply", "-f", file.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for want in [
        "bad.dstack.yml:3:5: env[0]: Failed to interpolate due to missing vars: ['secrets.unknown']",
        "bad.dstack.yml:4:8: image: `${{ ... }}` is not interpolated in `image`",
        "bad.dstack.yml:5:1: files: \"~bob/data\": `~user` paths are not supported",
        "bad.dstack.yml:7:1: reservation: no backend of this daemon takes it",
        "bad.dstack.yml:9:5: commands[0]: secrets are not interpolated in `commands`",
    ] {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
    assert_eq!(
        d.cli_json(&["ps", "-a"]),
        serde_json::json!([]),
        "nothing was submitted"
    );
    // A fleet file's refused fields, the same way.
    let fleet = d.write_config(
        "fleet.dstack.yml",
        "type: fleet\nname: tagged\ntags:\n  team: ml\nssh_config:\n  user: root\n  hosts: [127.0.0.9]\n",
    );
    let out = d.cli(&["apply", "-f", fleet.to_str().expect("utf-8"), "-y"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("fleet.dstack.yml:3:1: tags: no backend of this daemon takes it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.cli_json(&["fleet", "list"])
            .as_array()
            .map(|f| f.iter().filter(|f| f["name"] == "tagged").count()),
        Some(0)
    );
}

#[test]
fn only_admins_set_read_and_delete_secrets_and_every_users_runs_use_them() {
    if !is_root() {
        eprintln!("skipped: creating users needs root (CI runs as root)");
        return;
    }
    ensure_user("fl-e2e-s", true);
    let mut d = TestDaemon::new();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d.write_daemon_config(&format!("socket_group: {TEST_GROUP}\n"));
    d.spawn();
    set_secret_from_stdin(&d, "team_key", VALUE);

    let as_user = |args: &[&str]| cli_as("fl-e2e-s", &d.socket, d.dir.path(), args);
    let out = as_user(&["secret", "get", "team_key"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only root or the daemon's own user can read secrets"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains(VALUE));
    let out = as_user(&["secret", "set", "team_key", "other"]);
    assert!(stderr(&out).contains("can set secrets"), "{}", stderr(&out));
    let out = as_user(&["secret", "delete", "team_key", "-y"]);
    assert!(
        stderr(&out).contains("can delete secrets"),
        "{}",
        stderr(&out)
    );
    let out = as_user(&["secret", "list"]);
    assert!(
        out.status.success() && stdout(&out).contains("team_key"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.cli_json(&["secret", "get", "team_key"])["value"], VALUE);

    let task = format!(
        "type: task\nname: user-secret\nenv:\n  - KEY=${{{{ secrets.team_key }}}}\ncommands:\n  - printf %s \"$KEY\" | sha256sum\n{SMALL}"
    );
    let p = d.write_config("user.dstack.yml", &task);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = as_user(&["apply", "-f", p.to_str().expect("utf-8"), "-y"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&sha256(VALUE)), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_private_keys_are_sealed_in_the_store() {
    let mut d = TestDaemon::start();
    let me = user_me(&d).await;
    let private = me.ssh_private_key.expect("one's own private key");
    // The base64 body of the key: a line long enough to be unique.
    let body = private
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .expect("a key body line")
        .to_string();
    d.terminate(); // flushed and closed
    let leaks = files_containing(&d.data_dir.join("state"), Path::new("/nonexistent"), &body);
    assert!(leaks.is_empty(), "a private key in clear in {leaks:?}");
    // After a restart the same key is read back.
    d.spawn();
    let again = user_me(&d).await;
    assert_eq!(again.ssh_private_key.as_deref(), Some(private.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_reseals_everything_and_needs_the_daemon_stopped() {
    let mut d = TestDaemon::start();
    set_secret_from_stdin(&d, "rotated", VALUE);
    let me = user_me(&d).await;
    let rotate = |d: &TestDaemon| {
        d.daemon_command()
            .arg("--rotate-key")
            .output()
            .expect("flotillad --rotate-key")
    };
    let out = rotate(&d);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stop the daemon before rotating its key"),
        "{}",
        stderr(&out)
    );

    d.terminate();
    let old_key = std::fs::read_to_string(d.data_dir.join("key")).expect("the key");
    let out = rotate(&d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("re-sealed 1 secrets, 1 users' private keys, 0 registry passwords"),
        "{}",
        stdout(&out)
    );
    let key = d.data_dir.join("key");
    assert_ne!(std::fs::read_to_string(&key).expect("the key"), old_key);
    assert_eq!(
        std::fs::metadata(&key).expect("key").permissions().mode() & 0o777,
        0o600
    );
    assert!(!d.data_dir.join("key.new").exists());

    d.spawn();
    assert_eq!(d.cli_json(&["secret", "get", "rotated"])["value"], VALUE);
    let again = user_me(&d).await;
    assert_eq!(again.ssh_private_key, me.ssh_private_key);
}

#[test]
fn secrets_and_env_in_registry_auth_pull_a_private_image_and_reach_the_container() {
    use flotilla_e2e::docker::{test_image, Registry};
    let password = "pw-Kx42-from-a-secret";
    let registry = Registry::start("bob", password);
    let private = registry.push_private(test_image(), "team/secret-pull:1", "bob", password);
    let d = TestDaemon::start();
    set_secret_from_stdin(&d, "registry_pw", password);
    set_secret_from_stdin(&d, "in_container", VALUE);
    let task = format!(
        "type: task\nimage: {private}\nenv:\n  - REG_USER=bob\n  - TOKEN=${{{{ secrets.in_container }}}}\nregistry_auth:\n  username: ${{{{ env.REG_USER }}}}\n  password: ${{{{ secrets.registry_pw }}}}\ncommands:\n  - printf %s \"$TOKEN\" | sha256sum\n"
    );
    run_printing_hash_of(&d, "secret-pull", &task, VALUE);
    let ps = stdout(&d.cli(&["ps", "-a", "--json"]));
    assert!(!ps.contains(password) && !ps.contains(VALUE), "{ps}");
    assert!(
        ps.contains("\"username\": \"bob\""),
        "env interpolated at apply: {ps}"
    );
    assert!(!d.daemon_output().contains(password) && !d.daemon_output().contains(VALUE));
    let leaks = files_containing(&d.data_dir, Path::new("/nonexistent"), password);
    assert!(
        leaks.is_empty(),
        "the registry password in clear in {leaks:?}"
    );
    let leaks = files_containing(&d.data_dir, &d.data_dir.join("host"), VALUE);
    assert!(leaks.is_empty(), "the secret in clear in {leaks:?}");
    let removed = std::process::Command::new("docker")
        .args(["rmi", &private])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(removed, "cannot remove the pulled image {private}");
}

#[test]
fn a_secret_deleted_before_its_job_starts_fails_the_job_with_dstacks_reason() {
    let d = TestDaemon::start();
    set_secret_from_stdin(&d, "short_lived", VALUE);
    // Scheduled for the next minute, so that the secret can go first.
    let task = format!(
        "type: task\nname: late-start\nschedule:\n  cron: \"* * * * *\"\nenv:\n  - T=${{{{ secrets.short_lived }}}}\ncommands:\n  - echo started\n{SMALL}"
    );
    let file = d.write_config("late.dstack.yml", &task);
    let out = d.cli(&["apply", "-f", file.to_str().expect("utf-8"), "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = d.cli(&["secret", "delete", "short_lived", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let failed = loop {
        let run = d.run_json("late-start");
        let first = &run["jobs"][0]["previous_submissions"][0];
        if first.is_object() {
            break first.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["termination_reason"], "terminated_by_server",
        "{failed}"
    );
    assert_eq!(
        failed["termination_message"],
        "Secrets interpolation error: Failed to interpolate due to missing vars: ['secrets.short_lived']"
    );
    let out = d.cli(&["stop", "late-start", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
