//! Unit tests of the store: schema version and migrations, and the events that writes record.

use super::*;
use flotilla_protocol::config::parse_configuration;
use flotilla_protocol::model::{
    Instance, InstanceResources, InstanceStatus, Job, JobStatus, JobSubmission, RunStatus,
};
use flotilla_protocol::Timestamp;

/// A submitted job's submission.
fn new_submission(id: u64, submission_num: u32, now: Timestamp) -> JobSubmission {
    JobSubmission::submitted(id, submission_num, now)
}

/// Opens the store in `dir`. A store just dropped may still hold sled's file lock for a moment
/// (its flusher thread ends on its own), so a reopen waits for it, up to 5 s.
fn open(dir: &tempfile::TempDir) -> Store {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(&dir.path().join("state")) {
            Ok(store) => return store,
            Err(StoreError::Open { source, .. })
                if source.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("the store opens: {e:?}"),
        }
    }
}

fn run(store: &Store, name: &str, jobs: u32) -> Run {
    let now = Timestamp(1_000_000);
    let configuration = parse_configuration("t.yml", "type: task\ncommands: [\"true\"]\n")
        .expect("a valid task")
        .as_run()
        .expect("a run configuration");
    Run {
        id: store.next_id().expect("an id"),
        name: name.into(),
        user: "alice".into(),
        uid: 1000,
        status: RunStatus::Submitted,
        termination_reason: None,
        status_message: None,
        submitted_at: now,
        finished_at: None,
        configuration_type: "task".into(),
        configuration_path: None,
        configuration,
        caller_env: Default::default(),
        retry_window_started_at: None,
        service: None,
        next_triggered_at: None,
        archives: Vec::new(),
        cluster_key: None,
        deployment_num: 0,
        desired_replicas: Default::default(),
        last_scaled_at: None,
        jobs: (0..jobs)
            .map(|j| Job {
                replica_num: 0,
                job_num: j,
                job_name: format!("{name}-{j}-0"),
                replica_group: None,
                deployment_num: 0,
                current: new_submission(store.next_id().expect("an id"), 0, now),
                previous_submissions: Vec::new(),
            })
            .collect(),
    }
}

#[test]
fn a_new_store_gets_the_current_schema_version_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir);
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    }
    let store = open(&dir);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
}

#[test]
fn a_store_from_a_newer_flotillad_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir);
        store
            .meta
            .insert(
                "schema_version",
                (SCHEMA_VERSION + 1).to_string().as_bytes(),
            )
            .expect("write");
        store.db.flush().expect("flush");
    }
    match Store::open(&dir.path().join("state")) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("a newer store must not open"),
    }
}

#[test]
fn migration_removes_the_retired_log_offsets_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir);
        let offsets = store.db.open_tree("log_offsets").expect("tree");
        offsets.insert(be(7), &be(42)).expect("write");
        store.db.flush().expect("flush");
    }
    let store = open(&dir);
    let names: Vec<Vec<u8>> = store.db.tree_names().iter().map(|n| n.to_vec()).collect();
    assert!(
        !names.iter().any(|n| n == b"log_offsets"),
        "the write-only tree is gone"
    );
}

#[test]
fn inserting_a_run_records_its_submission_and_each_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let r = run(&store, "quick-fox-1", 2);
    let events = store.insert_run(&r).expect("insert");
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.resource.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("run", "quick-fox-1"),
            ("job", "quick-fox-1/0/0"),
            ("job", "quick-fox-1/0/1")
        ]
    );
    assert_eq!(events[0].message.as_deref(), Some("submitted by alice"));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.last_event_seq().expect("seq"),
        events.last().expect("events").seq
    );
    assert_eq!(store.events_since(0, 100).expect("events"), events);
    assert_eq!(
        store
            .run_by_name("quick-fox-1")
            .expect("read")
            .map(|r| r.id),
        Some(r.id)
    );
    assert_eq!(store.active_runs().len(), 1);
}

#[test]
fn a_status_change_is_recorded_as_an_event_and_no_change_as_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let r = run(&store, "calm-owl-1", 1);
    store.insert_run(&r).expect("insert");
    let (_, (), none) = store.update_run(r.id, |_| ()).expect("update");
    assert!(none.is_empty(), "an unchanged run makes no event");
    let (after, (), events) = store
        .update_run(r.id, |run| {
            run.jobs[0].current.status = JobStatus::Running;
            run.jobs[0].current.instance = Some("local-0".into());
            run.status = RunStatus::Running;
        })
        .expect("update");
    assert_eq!(after.status, RunStatus::Running);
    let summary: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.old_status.as_deref(),
                e.new_status.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("run", Some("submitted"), Some("running")),
            ("job", Some("submitted"), Some("running"))
        ]
    );
    assert_eq!(events[1].message.as_deref(), Some("on local-0"));
    let stored = store.get_run(r.id).expect("read").expect("the run");
    assert_eq!(stored.jobs[0].current.status, JobStatus::Running);
}

#[test]
fn a_new_submission_and_a_new_waiting_reason_are_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let old = run(&store, "bold-yak-1", 1);
    let mut waiting = old.clone();
    waiting.jobs[0].current.waiting_reason = Some("no idle instance".into());
    let drafts = status_changes(&old, &waiting);
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].message.as_deref(), Some("waiting"));
    assert_eq!(drafts[0].reason.as_deref(), Some("no idle instance"));
    let mut resubmitted = old.clone();
    let previous = std::mem::replace(
        &mut resubmitted.jobs[0].current,
        new_submission(99, 1, Timestamp(2_000_000)),
    );
    resubmitted.jobs[0].previous_submissions.push(previous);
    let drafts = status_changes(&old, &resubmitted);
    assert_eq!(drafts.len(), 1);
    assert_eq!(
        drafts[0].old_status, None,
        "a new submission starts from none"
    );
    assert_eq!(drafts[0].new_status.as_deref(), Some("submitted"));
}

#[test]
fn deleting_a_run_frees_its_name_and_says_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let r = run(&store, "keen-seal-1", 1);
    store.insert_run(&r).expect("insert");
    let events = store.delete_run(r.id).expect("delete");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message.as_deref(), Some("deleted"));
    assert!(store.run_by_name("keen-seal-1").expect("read").is_none());
    assert!(store.get_run(r.id).expect("read").is_none());
    assert!(store.active_runs().is_empty());
}

#[test]
fn an_instance_event_comes_with_a_change_of_status_or_reachability_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut inst = Instance {
        id: store.next_id().expect("id"),
        name: "lab-0".into(),
        fleet: "lab".into(),
        instance_num: 0,
        status: InstanceStatus::Pending,
        unreachable: false,
        termination_reason: None,
        backend: "ssh".into(),
        region: "ssh".into(),
        hostname: None,
        price: 0.0,
        resources: InstanceResources {
            cpus: 4,
            cpu_arch: flotilla_protocol::config::CpuArch::X86,
            memory_gb: 8.0,
            disk_gb: None,
            gpus: Vec::new(),
        },
        total_blocks: 1,
        busy_blocks: 0,
        created_at: Timestamp(0),
        error: None,
        ssh: None,
        host_key: None,
        backend_id: None,
        host_root: None,
        unreachable_since: None,
        jump_host_key: None,
        orphans: Vec::new(),
        software: Default::default(),
    };
    assert_eq!(store.put_instance(&inst).expect("put").len(), 1);
    inst.price = 1.0;
    assert!(store.put_instance(&inst).expect("put").is_empty());
    inst.unreachable = true;
    let events = store.put_instance(&inst).expect("put");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message.as_deref(), Some("unreachable"));
    let gone = store.delete_instance(&inst, "removed").expect("delete");
    assert_eq!(gone[0].new_status.as_deref(), Some("terminated"));
    assert!(store.get_instance(inst.id).expect("read").is_none());
}

/// A small tmpfs mounted for the life of the value (root only; None where mounts are refused).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

/// Fills the file system under `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..512]).is_ok() {}
    while f.write_all(&block[..1]).is_ok() {}
}

#[test]
fn an_io_error_fails_the_store_which_then_refuses_writes_and_keeps_no_unstored_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "8m") else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = Store::open(&disk.0.join("state")).expect("the store opens");
    let first = run(&store, "stored", 1);
    store.insert_run(&first).expect("stored");
    rt.block_on(store.flush()).expect("flushed");
    assert!(store.failure().is_none());

    fill(&disk.0);
    let mut stored = vec![first.id];
    let mut error = None;
    for i in 0..2000 {
        let mut r = match store.next_id() {
            Ok(_) => run(&store, &format!("big-{i}"), 4),
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        r.status_message = Some("x".repeat(64 * 1024));
        let result = store
            .insert_run(&r)
            .and_then(|_| rt.block_on(store.flush()));
        match result {
            Ok(()) => stored.push(r.id),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("a full disk makes a write fail");
    assert!(
        matches!(
            error,
            StoreError::Sled(sled::Error::Io(_)) | StoreError::Failed(_)
        ),
        "{error:?}"
    );
    let failure = store.failure().expect("the store knows it failed");
    assert!(!failure.is_empty());
    // Every later write is refused with the first error, also once space is back.
    std::fs::remove_file(disk.0.join("filler")).expect("space again");
    let later = run(
        &Store::open(&dir.path().join("other")).expect("another store"),
        "later",
        1,
    );
    assert!(matches!(
        store.insert_run(&later),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(
        rt.block_on(store.flush()),
        Err(StoreError::Failed(_))
    ));
    assert!(rt.block_on(store.failed()).contains("state store"));
    // Only the runs whose insert and flush succeeded are in memory.
    let active: Vec<u64> = store.active_runs().iter().map(|r| r.id).collect();
    assert_eq!(active, stored);
}
