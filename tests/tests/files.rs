//! `files` and `repos` end to end: `flotilla apply` packs a Git repo (an uncommitted change, an
//! untracked file, ignored files that must not arrive) and files, uploads them with
//! `file.upload`, and the job finds them in its working directory on the local fleet, on an
//! sshd test host and in a Docker container. The same content is stored once, a too large
//! archive is refused with the limit, and another user can name neither the upload nor skip
//! sending its bytes.

use flotilla_e2e::docker::test_image;
use flotilla_e2e::sshd::{ssh_keygen, TestHost, TWO_H100};
use flotilla_e2e::users::{ensure_user, is_root, TEST_GROUP};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SMALL: &str = "resources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n";
/// H100s: only the sshd test host (two fake ones) has them.
const ON_THE_SSH_HOST: &str =
    "resources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n  gpu: H100\n";

/// What every job prints when its repo and files arrived as they should.
const EXPECTED: &str =
    "changed, not committed\nuntracked\ndata a\ntoken\nnothing ignored arrived\n";

const COMMANDS: &str = "  - cat tracked.txt untracked.txt\n  - cat inputs/a.txt\n  - cat token-copy\n  - \"if [ -e secret.log ] || [ -e skipme ] || [ -e .git ]; then echo LEAKED; ls -a; else echo nothing ignored arrived; fi\"\n";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

/// A Git repo with a committed file changed since, an untracked file, a file `.gitignore`
/// ignores and a directory `.dstackignore` ignores; `data/a.txt`; and `~/token` in the CLI's
/// home (the test dir).
fn project(d: &TestDaemon) -> PathBuf {
    let p = d.dir.path().join("project");
    std::fs::create_dir_all(p.join("data")).expect("data");
    std::fs::create_dir_all(p.join("skipme")).expect("skipme");
    std::fs::write(p.join("tracked.txt"), "committed\n").expect("tracked");
    std::fs::write(p.join(".gitignore"), "*.log\n").expect("gitignore");
    // The run files written into the project later are ignored too: the repo stays the same.
    std::fs::write(p.join(".dstackignore"), "skipme/\n*.dstack.yml\n").expect("dstackignore");
    git(&p, &["init", "-q"]);
    git(&p, &["add", "."]);
    git(&p, &["commit", "-q", "-m", "init"]);
    std::fs::write(p.join("tracked.txt"), "changed, not committed\n").expect("change");
    std::fs::write(p.join("untracked.txt"), "untracked\n").expect("untracked");
    std::fs::write(p.join("secret.log"), "must not arrive\n").expect("ignored");
    std::fs::write(p.join("skipme/x"), "must not arrive\n").expect("ignored dir");
    std::fs::write(p.join("data/a.txt"), "data a\n").expect("data");
    std::fs::write(d.dir.path().join("token"), "token\n").expect("token");
    p
}

/// Writes `name` into the project with the repo, the files and `extra`, and applies it
/// detached (as the test's own user); returns the run's name.
fn apply_in(d: &TestDaemon, project: &Path, name: &str, extra: &str) -> String {
    let text = format!(
        "type: task\nname: {name}\nrepos:\n  - .\nfiles:\n  - data:inputs\n  - ~/token:token-copy\n{extra}commands:\n{COMMANDS}"
    );
    let path = project.join(format!("{name}.dstack.yml"));
    std::fs::write(&path, text).expect("config");
    let out = d.cli(&["apply", "-f", path.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    name.to_string()
}

fn finished_log(d: &TestDaemon, name: &str) -> String {
    let run = d.wait_status(name, &["done", "failed"], WAIT);
    let log = String::from_utf8_lossy(&d.logs(name)).to_string();
    assert_eq!(run["status"], "done", "{run}\n{log}\n{}", d.daemon_output());
    log
}

/// The archives the daemon keeps.
fn stored(d: &TestDaemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.data_dir.join("uploads"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn files_and_a_repo_arrive_in_the_working_directory_on_the_local_fleet() {
    let d = TestDaemon::start();
    let p = project(&d);
    let name = apply_in(&d, &p, "local-files", SMALL);
    assert_eq!(finished_log(&d, &name), EXPECTED);
    // Three archives (the repo, `data`, the token), each a file named by its hash.
    let kept = stored(&d);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept.iter().all(|n| n.len() == 68 && n.ends_with(".tar")),
        "{kept:?}"
    );

    // The same content again is stored once: the second run reuses the three archives.
    let again = apply_in(&d, &p, "local-files-again", SMALL);
    assert_eq!(finished_log(&d, &again), EXPECTED);
    assert_eq!(stored(&d), kept);
    // A changed file (outside the repo) is one new archive, next to the old ones.
    std::fs::write(d.dir.path().join("token"), "token 2\n").expect("change");
    let changed = apply_in(&d, &p, "local-files-changed", SMALL);
    assert!(finished_log(&d, &changed).contains("\ntoken 2\n"));
    assert_eq!(stored(&d).len(), 4);
}

#[test]
fn files_and_a_repo_arrive_on_an_ssh_host() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(87, &key, Some(TWO_H100));
    d.apply_ssh_fleet("box", &key, &host);
    let p = project(&d);
    let name = apply_in(&d, &p, "ssh-files", ON_THE_SSH_HOST);
    assert_eq!(finished_log(&d, &name), EXPECTED);
    let run = d.run_json(&name);
    assert_eq!(run["jobs"][0]["instance"], "box-0", "{run}");
    // The job's directory on the host kept the archives it unpacked.
    let jobs = host.home().join(".flotilla/jobs");
    let uploads: Vec<_> = std::fs::read_dir(&jobs)
        .expect("job dirs")
        .filter_map(|e| e.ok())
        .flat_map(|e| {
            std::fs::read_dir(e.path().join("uploads"))
                .into_iter()
                .flatten()
        })
        .collect();
    assert_eq!(uploads.len(), 3, "{}", d.daemon_output());
}

#[test]
fn files_and_a_repo_arrive_in_a_container_and_tilde_is_the_containers_home() {
    let image = test_image();
    let d = TestDaemon::start();
    let p = project(&d);
    let text = format!(
        "type: task\nname: in-container\nimage: {image}\nworking_dir: /workflow\n{SMALL}repos:\n  - .\nfiles:\n  - data:inputs\n  - ~/token:token-copy\n  - ~/token\ncommands:\n  - pwd\n  - cat ~/token\n{COMMANDS}"
    );
    let path = p.join("container.dstack.yml");
    std::fs::write(&path, text).expect("config");
    let out = d.cli(&["apply", "-f", path.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let log = finished_log(&d, "in-container");
    assert_eq!(log, format!("/workflow\ntoken\n{EXPECTED}"));
}

#[test]
fn a_too_large_archive_is_refused_with_the_limit_and_nothing_is_submitted() {
    let d = TestDaemon::new();
    d.write_daemon_config("code_upload_limit: 64KB\n");
    let mut d = d;
    d.spawn();
    let p = d.dir.path().join("big");
    std::fs::create_dir_all(&p).expect("dir");
    std::fs::write(p.join("big.bin"), vec![7u8; 200 * 1024]).expect("big file");
    let path = p.join("big.dstack.yml");
    std::fs::write(
        &path,
        format!(
            "type: task\nname: too-big\nfiles:\n  - big.bin\n{SMALL}commands:\n  - ls -l big.bin\n"
        ),
    )
    .expect("config");
    let out = d.cli(&["apply", "-f", path.to_str().expect("utf-8"), "-y", "-d"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("files[0] (big.bin)"), "{err}");
    assert!(err.contains("upload limit of 64.0 KiB"), "{err}");
    assert!(err.contains("code_upload_limit"), "{err}");
    assert_eq!(d.cli_json(&["ps", "-a"]), serde_json::json!([]));
    assert!(stored(&d).is_empty(), "{:?}", stored(&d));
}

/// As `user`: `file.upload` of `hash`/`size` without sending bytes, then `run.apply` naming it;
/// prints both answers, one per line.
const AS_ANOTHER_USER: &str = r#"
import json, socket, sys
sock, hash_, size, config = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def session(*requests):
    s = socket.socket(socket.AF_UNIX); s.connect(sock); f = s.makefile("rwb")
    f.write(b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":"1.0"}}\n')
    for r in requests: f.write((json.dumps(r) + "\n").encode())
    f.flush(); f.readline()
    return json.loads(f.readline())
print(json.dumps(session({"jsonrpc":"2.0","id":2,"method":"file.upload","params":{"hash":hash_,"size":size}})))
print(json.dumps(session({"jsonrpc":"2.0","id":3,"method":"run.apply","params":{"configuration":config,
    "archives":[{"field":"files","index":0,"hash":hash_}]}})))
"#;

#[test]
fn another_user_cannot_use_your_upload() {
    if !is_root() {
        eprintln!("skipped: creating users needs root (CI runs as root)");
        return;
    }
    let user = "fl-e2e-files";
    ensure_user(user, true);
    let mut d = TestDaemon::new();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d.write_daemon_config(&format!("socket_group: {TEST_GROUP}\n"));
    d.spawn();
    let p = d.dir.path().join("mine");
    std::fs::create_dir_all(&p).expect("dir");
    std::fs::write(p.join("notes.txt"), "private notes\n").expect("file");
    let config =
        format!("type: task\nfiles:\n  - notes.txt\n{SMALL}commands:\n  - cat notes.txt\n");
    let path = p.join("mine.dstack.yml");
    std::fs::write(&path, &config).expect("config");
    let out = d.cli(&[
        "apply",
        "-f",
        path.to_str().expect("utf-8"),
        "-y",
        "--name",
        "mine",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("private notes"), "{}", stdout(&out));
    let run = d.run_json("mine");
    let archive = &run["archives"][0];
    let hash = archive["hash"].as_str().expect("the archive's hash");
    let size = archive["size"].as_u64().expect("its size").to_string();

    let out = Command::new("runuser")
        .args(["-u", user, "--", "python3", "-c", AS_ANOTHER_USER])
        .arg(&d.socket)
        .args([hash, &size, &config])
        .output()
        .expect("python3 as another user");
    assert!(out.status.success(), "{}", stderr(&out));
    let answers: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an answer"))
        .collect();
    // The upload is not theirs: the daemon asks for the bytes instead of saying it has them.
    assert_eq!(answers[0]["method"], "file.upload.ready", "{}", answers[0]);
    // Naming it in a run is refused.
    let error = &answers[1]["error"];
    assert_eq!(error["code"], -32006, "{}", answers[1]);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("was not uploaded by fl-e2e-files")),
        "{error}"
    );
}

#[test]
fn archives_no_run_names_are_removed_after_the_job_retention() {
    let d = TestDaemon::new();
    d.write_daemon_config("job_retention: 1\n");
    let mut d = d;
    d.spawn();
    let p = d.dir.path().join("gc");
    std::fs::create_dir_all(&p).expect("dir");
    let mut names = Vec::new();
    for (name, text) in [("kept", "kept\n"), ("dropped", "dropped\n")] {
        std::fs::write(p.join(format!("{name}.txt")), text).expect("file");
        let path = p.join(format!("{name}.dstack.yml"));
        std::fs::write(
            &path,
            format!("type: task\nname: {name}\nfiles:\n  - {name}.txt\n{SMALL}commands:\n  - cat {name}.txt\n"),
        )
        .expect("config");
        let out = d.cli(&["apply", "-f", path.to_str().expect("utf-8"), "-y"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        names.push(
            d.run_json(name)["archives"][0]["hash"]
                .as_str()
                .expect("hash")
                .to_string(),
        );
    }
    assert_eq!(stored(&d).len(), 2);
    let out = d.cli(&["delete", "dropped", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(1100));
    // The retention pass runs when the daemon starts, then hourly.
    d.terminate();
    d.spawn();
    let deadline = std::time::Instant::now() + WAIT;
    while stored(&d).len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            stored(&d),
            d.daemon_output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stored(&d), [format!("{}.tar", names[0])]);
}

#[test]
fn a_repo_url_is_cloned_into_the_working_directory_at_its_branch_and_hash() {
    let d = TestDaemon::start();
    let origin = d.dir.path().join("origin");
    std::fs::create_dir_all(&origin).expect("origin");
    git(&origin, &["init", "-q", "-b", "main"]);
    std::fs::write(origin.join("v.txt"), "first\n").expect("v1");
    git(&origin, &["add", "."]);
    git(&origin, &["commit", "-q", "-m", "first"]);
    let first = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&origin)
        .output()
        .expect("rev-parse");
    let first = stdout(&first).trim().to_string();
    git(&origin, &["checkout", "-q", "-b", "dev"]);
    std::fs::write(origin.join("v.txt"), "second\n").expect("v2");
    git(&origin, &["commit", "-q", "-am", "second"]);
    let url = format!("file://{}", origin.display());
    let name = d.apply_detached(
        "cloned",
        &format!(
            "type: task\nrepos:\n  - url: {url}\n    branch: dev\nsingle_branch: false\n{SMALL}commands:\n  - cat v.txt\n  - git log --format=%s | head -1\n  - git checkout -q {first} && cat v.txt\n"
        ),
    );
    assert_eq!(finished_log(&d, &name), "second\nsecond\nfirst\n");
    let name = d.apply_detached(
        "pinned",
        &format!("type: task\nrepos:\n  - url: {url}\n    branch: dev\n    hash: {first}\n{SMALL}commands:\n  - cat v.txt\n"),
    );
    assert_eq!(finished_log(&d, &name), "first\n");
}
