//! Every user in their own lane on an SSH host: `~/.flotilla` and every job directory are 0700
//! and job files 0600 (a job script carries the run's secrets); no user's key is installed on a
//! host, and one an earlier daemon installed leaves at a refresh.

use flotilla_e2e::sshd::{ssh_keygen, TestHost};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_files_on_a_host_are_private_and_no_users_key_stays_there() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(43, &key, None);
    let yaml = format!(
        "type: fleet\nname: lanes\nssh_config:\n  user: root\n  identity_file: {}\n  hosts:\n    - hostname: {}\n      port: {}\n",
        key.path.display(),
        host.ip,
        host.port
    );
    let p = d.write_config("fleet.yml", &yaml);
    let out = d.cli(&["apply", "-f", p.to_str().expect("utf-8"), "-y"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));

    let name = d.apply_detached(
        "secret",
        "type: task\nname: secret\nenv:\n  - HF_TOKEN=hf_s3cr3t\nfleets: [lanes]\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo done\n",
    );
    let run = d.wait_status(&name, &["done", "failed"], Duration::from_secs(30));
    assert_eq!(run["status"], "done", "{run}");
    let root = host.home().join(".flotilla");
    assert_eq!(mode(&root), 0o700, "~/.flotilla");
    assert_eq!(mode(&root.join("jobs")), 0o700, "~/.flotilla/jobs");
    let job = std::fs::read_dir(root.join("jobs"))
        .expect("jobs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("a job directory");
    assert_eq!(mode(&job), 0o700, "{}", job.display());
    let script = std::fs::read_to_string(job.join("script")).expect("script");
    assert!(script.contains("hf_s3cr3t"), "the script holds the secret");
    for f in ["script", "log", "pid", "exit_code", "workdir"] {
        assert_eq!(mode(&job.join(f)), 0o600, "{f}");
    }

    // No user's key is installed on a host: users come in through the daemon's gateway.
    let client = d.client().await;
    let me: Value = client
        .call_raw("user.me", serde_json::json!({}))
        .await
        .expect("user.me");
    let blob = me["ssh_public_key"]
        .as_str()
        .and_then(|k| k.split_whitespace().nth(1))
        .expect("a public key")
        .to_string();
    let ak_path = host.home().join(".ssh/authorized_keys");
    let ak = std::fs::read_to_string(&ak_path).unwrap_or_default();
    assert!(!ak.contains(&blob), "the user's key is on the host: {ak}");
    // A key that an earlier daemon installed leaves when its user refreshes it.
    std::fs::write(
        &ak_path,
        format!(
            "{ak}ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyStaysOtherKeyStaysOtherKeyStays someone\n\
             restrict,pty,port-forwarding ssh-ed25519 {blob} flotilla:old\n"
        ),
    )
    .expect("write authorized_keys");
    let _refreshed: Value = client
        .call_raw("user.refresh_ssh_key", serde_json::json!({}))
        .await
        .expect("refresh");
    let ak = std::fs::read_to_string(&ak_path).expect("authorized_keys");
    assert!(!ak.contains(&blob), "the old key is gone: {ak}");
    assert!(ak.contains("OtherKeyStays"), "another key stays: {ak}");
}
