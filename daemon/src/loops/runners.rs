//! Driver layer: one runner per job submission on a host. Starts it through the supervisor,
//! copies its log, records how it ended.
//!
//! The copy resumes at the length of the daemon's own log file, so a restart neither skips nor
//! repeats a byte.

use crate::handle::Daemon;
use crate::hosts::supervisor::{self, FollowEnd, ProcessStatus};
use crate::hosts::{sh_quote, Host};
use crate::lifecycle::{finish, finish_from_exit, request_job_stop};
use crate::ops::stops::carry_out_stops;
use flotilla_protocol::model::{Job, JobStatus, JobTerminationReason, Run};
use flotilla_protocol::Timestamp;
use std::time::Duration;
use tracing::{info, warn};

/// Which submission a runner drives: its run, the job's replica and number, the submission's id.
#[derive(Debug, Clone, Copy)]
struct Target {
    run_id: u64,
    replica: u32,
    job_num: u32,
    sub_id: u64,
}

pub fn spawn(d: &Daemon, run_id: u64, replica: u32, job_num: u32, sub_id: u64) {
    if !d.claim_runner(sub_id) {
        return;
    }
    let d = d.clone();
    tokio::spawn(async move {
        let target = Target {
            run_id,
            replica,
            job_num,
            sub_id,
        };
        if let Err(message) = drive(&d, target).await {
            warn!("job submission {sub_id}: {message}");
            let now = Timestamp::now();
            let recorded = d.update_run(run_id, |run| {
                if let Some(job) = run.job_mut(replica, job_num) {
                    if job.current.id == sub_id && !job.current.status.is_finished() {
                        finish(
                            &mut job.current,
                            JobStatus::Failed,
                            Some(JobTerminationReason::ExecutorError),
                            Some(message.clone()),
                            now,
                        );
                    }
                }
            });
            if let Err(e) = recorded {
                warn!("job submission {sub_id}: cannot record its failure: {e}");
            }
            d.flush_or_warn("a job's failure").await;
            d.logs().complete(sub_id);
        }
        d.release_runner(sub_id);
    });
}

async fn drive(d: &Daemon, target: Target) -> Result<(), String> {
    let Target {
        run_id,
        replica,
        job_num,
        sub_id,
    } = target;
    let run = d
        .store()
        .get_run(run_id)
        .map_err(|e| e.to_string())?
        .ok_or("the run is gone")?;
    let job = run.job(replica, job_num).ok_or("the job is gone")?;
    if job.current.id != sub_id || job.current.status.is_finished() {
        return Ok(());
    }
    let host = d.host_for(job.current.instance_id);
    let job_dir = job
        .current
        .job_dir
        .clone()
        .unwrap_or_else(|| host.job_dir(sub_id));

    if job.current.status == JobStatus::Provisioning
        && !start(d, &host, &run, job, &job_dir).await?
    {
        return Ok(());
    }
    follow_to_end(d, &host, target, &job_dir).await
}

/// Starts the job on its host; false when it was stopped before it started.
async fn start(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    job_dir: &str,
) -> Result<bool, String> {
    let sub_id = job.current.id;
    if job.current.stop.is_some() {
        // Stopped before it started: nothing runs on the host.
        d.update_run(run.id, |run| {
            if let Some(j) = run.job_mut(job.replica_num, job.job_num) {
                if let Some(stop) = j.current.stop.clone() {
                    let status = if stop.abort {
                        JobStatus::Aborted
                    } else {
                        JobStatus::Terminated
                    };
                    finish(
                        &mut j.current,
                        status,
                        Some(stop.reason),
                        None,
                        Timestamp::now(),
                    );
                }
            }
        })
        .map_err(|e| e.to_string())?;
        d.store().flush().await.map_err(|e| e.to_string())?;
        d.logs().complete(sub_id);
        return Ok(false);
    }
    if super::slurm_jobs::is_slurm(host) {
        // A Slurm cluster: one sbatch job, running once Slurm starts it.
        return match super::slurm_jobs::start(d, host, run, job, job_dir).await? {
            Some(_) => mark_started(d, run, job).await,
            None => Ok(false),
        };
    }
    let common = run.configuration.common();
    if let Some(image) = &common.image {
        return Err(format!(
            "running in a Docker image ({image}) is not supported yet; remove `image` to run on the host"
        ));
    }
    let fleet_env = fleet_env(d, job)?;
    let node_ips = node_ips(d, run, job.replica_num)?;
    let script = job_script(run, job, &fleet_env, &node_ips)?;
    let workdir = match &common.working_dir {
        Some(w) if w.starts_with('/') => w.clone(),
        Some(w) => format!("{job_dir}/work/{w}"),
        None => format!("{job_dir}/work"),
    };
    let shell = common.shell.clone().unwrap_or_else(|| "default".into());
    let pid = supervisor::start(host, run.uid, job_dir, &shell, &workdir, &script)
        .await
        .map_err(|e| format!("cannot start the job: {e}"))?;
    info!(run = %run.name, job = job.job_num, pid, "job started");
    mark_started(d, run, job).await
}

/// The env of the job's fleet (`env:` of its configuration).
pub(super) fn fleet_env(
    d: &Daemon,
    job: &Job,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    Ok(match job.current.fleet.as_deref() {
        Some(f) => d
            .store()
            .get_fleet(f)
            .map_err(|e| format!("cannot read fleet {f}: {e}"))?
            .and_then(|f| f.configuration)
            .map(|c| c.env.resolve(&Default::default()).unwrap_or_default())
            .unwrap_or_default(),
        None => Default::default(),
    })
}

/// Records that the job's process runs (or, stopped meanwhile, that it terminates).
async fn mark_started(d: &Daemon, run: &Run, job: &Job) -> Result<bool, String> {
    let sub_id = job.current.id;
    let now = Timestamp::now();
    let (_, stop_pending) = d
        .update_run(run.id, |run| {
            let Some(j) = run.job_mut(job.replica_num, job.job_num) else {
                return false;
            };
            if j.current.id != sub_id {
                return false;
            }
            j.current.started_at = Some(now);
            j.current.waiting_reason = None;
            if j.current.stop.is_some() {
                j.current.status = JobStatus::Terminating;
                true
            } else {
                j.current.status = JobStatus::Running;
                false
            }
        })
        .map_err(|e| e.to_string())?;
    d.store().flush().await.map_err(|e| e.to_string())?;
    if stop_pending {
        carry_out_stops(d, run.id).await;
    }
    Ok(true)
}

async fn follow_to_end(
    d: &Daemon,
    host: &Host,
    target: Target,
    job_dir: &str,
) -> Result<(), String> {
    let Target {
        run_id,
        replica,
        job_num,
        sub_id,
    } = target;
    let mut backoff = Duration::from_millis(200);
    let exit = loop {
        let mut writer = match d.logs().writer(sub_id) {
            Ok(w) => w,
            Err(e) => {
                warn!("cannot open the log of submission {sub_id}: {e}; retrying");
                if sleep_or_shutdown(d, backoff).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let offset = writer.size();
        let mut storage_error = None;
        let end = supervisor::follow(host, job_dir, offset, |bytes| {
            writer.append(bytes).inspect_err(|e| {
                storage_error = Some(std::io::Error::new(e.kind(), e.to_string()));
            })
        })
        .await;
        if let Some(e) = storage_error {
            let path = d.logs().path(sub_id);
            return log_storage_failed(d, host, target, job_dir, &path, e).await;
        }
        match end {
            Ok(FollowEnd::Exited(code)) => break Some(code),
            Ok(FollowEnd::Lost) => break None,
            Ok(FollowEnd::Broken(e)) => warn!("following submission {sub_id}: {e}; retrying"),
            Err(e) => warn!("following submission {sub_id}: {e}; retrying"),
        }
        if sleep_or_shutdown(d, backoff).await {
            return Ok(());
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
        // Ended elsewhere meanwhile (its host stayed unreachable past the grace, say).
        let ended = match d.store().get_run(run_id) {
            Ok(run) => run
                .as_ref()
                .and_then(|r| r.job(replica, job_num))
                .is_none_or(|j| j.current.id != sub_id || j.current.status.is_finished()),
            Err(e) => {
                warn!("following submission {sub_id}: cannot read its run: {e}; following on");
                false
            }
        };
        if ended {
            return Ok(());
        }
    };
    // A Slurm job: whether Slurm ended it (cancelled, preempted, its time limit...).
    let slurm_end = if super::slurm_jobs::is_slurm(host) {
        super::slurm_jobs::how_slurm_ended(host, job_dir, exit).await
    } else {
        None
    };
    // Gone without an exit code: its directory may be unwritable (a full disk on the host).
    let storage_error = match exit {
        Some(_) => None,
        None => unwritable(host, job_dir).await,
    };
    let now = Timestamp::now();
    let stop_duration = d
        .store()
        .get_run(run_id)
        .map_err(|e| e.to_string())?
        .and_then(|r| r.configuration.common().policy.stop_duration);
    let (run, others_to_stop) = d
        .update_run(run_id, |run| {
            let Some(job) = run.job_mut(replica, job_num) else {
                return false;
            };
            if job.current.id != sub_id || job.current.status.is_finished() {
                return false;
            }
            finish_from_exit(&mut job.current, exit, now);
            if let Some((reason, message)) =
                slurm_end.as_ref().filter(|_| job.current.stop.is_none())
            {
                job.current.termination_reason = Some(*reason);
                job.current.termination_message = Some(message.clone());
            }
            let mut note = None;
            if let Some(e) = storage_error
                .as_ref()
                .filter(|_| job.current.stop.is_none())
            {
                let message = format!(
                    "cannot store the exit code of job {} in {job_dir}: {e}",
                    job.job_name
                );
                job.current.termination_reason = Some(JobTerminationReason::ExitCodeStorageFailed);
                job.current.termination_message = Some(message.clone());
                note = Some(message);
            }
            if job.current.status != JobStatus::Failed {
                return false;
            }
            if note.is_some() {
                run.status_message = note;
            }
            // A failed node stops the others of its run.
            let mut any = false;
            for other in run.jobs.iter_mut() {
                any |= request_job_stop(
                    other,
                    JobTerminationReason::TerminatedByServer,
                    false,
                    stop_duration,
                    now,
                );
            }
            any
        })
        .map_err(|e| e.to_string())?;
    d.store().flush().await.map_err(|e| e.to_string())?;
    d.logs().complete(sub_id);
    info!(run = %run.name, job = job_num, ?exit, status = %run.status, "job ended");
    if others_to_stop {
        carry_out_stops(d, run_id).await;
    }
    Ok(())
}

/// The daemon cannot store the job's log (a full disk, say): says so on the run at once (its
/// status message and the job's event name the path and the OS error), stops the job as a stop
/// does (TERM, KILL when `stop_duration` runs out), waits until its process is gone and ends it
/// `failed` with `log_storage_failed`.
async fn log_storage_failed(
    d: &Daemon,
    host: &Host,
    target: Target,
    job_dir: &str,
    path: &std::path::Path,
    error: std::io::Error,
) -> Result<(), String> {
    let Target {
        run_id,
        replica,
        job_num,
        sub_id,
    } = target;
    let now = Timestamp::now();
    let mut message = String::new();
    let (run, stop_sent) = d
        .update_run(run_id, |run| {
            let stop_duration = run.configuration.common().policy.stop_duration;
            let Some(job) = run.job_mut(replica, job_num) else {
                return false;
            };
            if job.current.id != sub_id || job.current.status.is_finished() {
                return false;
            }
            message = format!(
                "cannot store the log of job {} in {}: {error}",
                job.job_name,
                path.display()
            );
            job.current.termination_message = Some(message.clone());
            let sent = request_job_stop(
                job,
                JobTerminationReason::LogStorageFailed,
                false,
                stop_duration,
                now,
            );
            run.status_message = Some(message.clone());
            sent
        })
        .map_err(|e| e.to_string())?;
    d.flush_or_warn("a job's log storage failure").await;
    if message.is_empty() {
        return Ok(());
    }
    warn!(run = %run.name, job = job_num, "{message}");
    if stop_sent {
        carry_out_stops(d, run_id).await;
    }
    // The process ends with the stop (the timers loop kills it when `stop_duration` runs out).
    let mut exit = None;
    loop {
        match supervisor::status(host, job_dir).await {
            Ok(ProcessStatus::Running(_)) => {}
            Ok(ProcessStatus::Exited(code)) => {
                exit = Some(code);
                break;
            }
            Ok(ProcessStatus::Lost | ProcessStatus::Absent) => break,
            Err(e) => warn!("job submission {sub_id}: cannot ask whether it still runs: {e}"),
        }
        if sleep_or_shutdown(d, Duration::from_millis(250)).await {
            return Ok(());
        }
    }
    let now = Timestamp::now();
    d.update_run(run_id, |run| {
        if let Some(job) = run.job_mut(replica, job_num) {
            if job.current.id == sub_id && !job.current.status.is_finished() {
                job.current.exit_code = exit;
                finish(
                    &mut job.current,
                    JobStatus::Failed,
                    Some(JobTerminationReason::LogStorageFailed),
                    Some(message.clone()),
                    now,
                );
            }
        }
    })
    .map_err(|e| e.to_string())?;
    d.store().flush().await.map_err(|e| e.to_string())?;
    d.logs().complete(sub_id);
    Ok(())
}

/// Why a file cannot be written in the job's directory on its host (None when it can): a job
/// that ended without an exit code may have had no room to write it.
async fn unwritable(host: &Host, job_dir: &str) -> Option<String> {
    const PROBE: &str = ".flotilla-write-probe";
    match host {
        Host::Local(_) => {
            let probe = std::path::Path::new(job_dir).join(PROBE);
            let written = std::fs::write(&probe, b"0\n");
            if let Err(e) = std::fs::remove_file(&probe) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!("cannot remove {}: {e}", probe.display());
                }
            }
            written.err().map(|e| e.to_string())
        }
        Host::Ssh(h) => {
            let command = format!(
                "cd {dir} && {{ echo 0 > {PROBE}; c=$?; rm -f {PROBE}; exit $c; }}",
                dir = sh_quote(job_dir)
            );
            match h.exec_raw(&command, None).await {
                Ok(exec) => {
                    let (_, err, code) = exec.collect().await;
                    (code != Some(0)).then(|| {
                        let err = String::from_utf8_lossy(&err).trim().to_string();
                        // `sh: 1: cannot create X: No space left on device`: the OS error.
                        err.rsplit(": ").next().unwrap_or(&err).to_string()
                    })
                }
                Err(e) => {
                    warn!("cannot look at {job_dir} on {}: {e}", h.label());
                    None
                }
            }
        }
    }
}

/// Sleeps; true when the daemon is shutting down (the job keeps running on its host).
pub(super) async fn sleep_or_shutdown(d: &Daemon, dur: Duration) -> bool {
    tokio::select! {
        _ = d.shutdown().cancelled() => true,
        _ = tokio::time::sleep(dur) => false,
    }
}

/// The address of each node of a replica, master (job 0) first: an SSH host's `internal_ip`,
/// else its hostname; 127.0.0.1 for the local machine.
/// A store error is an error: it never turns a node into `127.0.0.1`.
fn node_ips(d: &Daemon, run: &Run, replica: u32) -> Result<Vec<String>, String> {
    let mut jobs: Vec<&Job> = run
        .jobs
        .iter()
        .filter(|j| j.replica_num == replica)
        .collect();
    jobs.sort_by_key(|j| j.job_num);
    jobs.iter()
        .map(|j| {
            let instance = match j.current.instance_id {
                Some(id) => d
                    .store()
                    .get_instance(id)
                    .map_err(|e| format!("cannot read instance {id}: {e}"))?,
                None => None,
            };
            Ok(instance
                .and_then(|i| i.ssh)
                .map(|ep| ep.internal_ip.unwrap_or(ep.hostname))
                .unwrap_or_else(|| "127.0.0.1".to_string()))
        })
        .collect()
}

/// The script the supervisor runs: the job's environment, then its commands, stopping at the first failure.
pub fn job_script(
    run: &Run,
    job: &Job,
    fleet_env: &std::collections::BTreeMap<String, String>,
    node_ips: &[String],
) -> Result<String, String> {
    let common = run.configuration.common();
    let env = common
        .env
        .resolve(&run.caller_env)
        .map_err(|e| format!("env: {e}"))?;
    let nodes = run.configuration.nodes();
    let gpus_per_node = job.current.gpus.len();
    let mut s = String::from("# written by flotillad\n");
    let mut export = |k: &str, v: &str| {
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    };
    export("DSTACK_RUN_NAME", &run.name);
    export("DSTACK_NODE_RANK", &job.job_num.to_string());
    export("DSTACK_NODES_NUM", &nodes.to_string());
    export("DSTACK_GPUS_PER_NODE", &gpus_per_node.to_string());
    export(
        "DSTACK_GPUS_NUM",
        &(gpus_per_node * nodes as usize).to_string(),
    );
    let master = node_ips.first().map(String::as_str).unwrap_or("127.0.0.1");
    export("DSTACK_MASTER_NODE_IP", master);
    export("DSTACK_NODES_IPS", &node_ips.join("\n"));
    let visible: Vec<String> = job.current.gpus.iter().map(|g| g.to_string()).collect();
    export("CUDA_VISIBLE_DEVICES", &visible.join(","));
    for (k, v) in fleet_env.iter().chain(env.iter()) {
        if !is_env_name(k) {
            return Err(format!("env: {k:?} is not a valid variable name"));
        }
        export(k, v);
    }
    s.push_str("set -e\n");
    for c in run.configuration.commands() {
        s.push_str(&c);
        s.push('\n');
    }
    Ok(s)
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::new_submission;
    use flotilla_protocol::config::parse_configuration;
    use flotilla_protocol::model::RunStatus;
    use flotilla_protocol::Timestamp;
    use std::collections::BTreeMap;

    fn run_of(yaml: &str) -> Run {
        let configuration = parse_configuration("t.yml", yaml)
            .expect("a valid task")
            .as_run()
            .expect("a run configuration");
        let nodes = configuration.nodes().max(1);
        Run {
            id: 1,
            name: "calm-owl-1".into(),
            user: "alice".into(),
            uid: 1000,
            status: RunStatus::Running,
            termination_reason: None,
            status_message: None,
            submitted_at: Timestamp(0),
            finished_at: None,
            configuration_type: "task".into(),
            configuration_path: None,
            configuration,
            caller_env: Default::default(),
            retry_window_started_at: None,
            jobs: (0..nodes)
                .map(|j| Job {
                    replica_num: 0,
                    job_num: j,
                    job_name: format!("calm-owl-1-{j}-0"),
                    current: new_submission(10 + u64::from(j), 0, Timestamp(0)),
                    previous_submissions: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_script_exports_the_job_environment_quoted_then_runs_the_commands() {
        let mut run = run_of(
            "type: task\nnodes: 2\nenv:\n  - GREETING=it's me\ncommands:\n  - echo \"$GREETING\"\n  - python train.py\n",
        );
        run.jobs[1].current.gpus = vec![2, 3];
        let fleet_env = BTreeMap::from([("FLEET_WIDE".to_string(), "yes".to_string())]);
        let ips = vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let script = job_script(&run, &run.jobs[1], &fleet_env, &ips).expect("a script");
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "# written by flotillad");
        for want in [
            "export DSTACK_RUN_NAME='calm-owl-1'",
            "export DSTACK_NODE_RANK='1'",
            "export DSTACK_NODES_NUM='2'",
            "export DSTACK_GPUS_PER_NODE='2'",
            "export DSTACK_GPUS_NUM='4'",
            "export DSTACK_MASTER_NODE_IP='10.0.0.1'",
            "export CUDA_VISIBLE_DEVICES='2,3'",
            "export FLEET_WIDE='yes'",
            "export GREETING='it'\\''s me'",
        ] {
            assert!(lines.contains(&want), "{want} missing from\n{script}");
        }
        assert!(script.contains("export DSTACK_NODES_IPS='10.0.0.1\n10.0.0.2'\n"));
        assert!(script.ends_with("set -e\necho \"$GREETING\"\npython train.py\n"));
        // The run's own env comes after the fleet's, so it wins.
        let fleet_at = script.find("FLEET_WIDE").expect("fleet env");
        let run_at = script.find("GREETING=").expect("run env");
        assert!(fleet_at < run_at);
    }

    #[test]
    fn a_single_node_job_without_addresses_has_the_local_master() {
        let run = run_of("type: task\ncommands: [\"true\"]\n");
        let script = job_script(&run, &run.jobs[0], &BTreeMap::new(), &[]).expect("a script");
        assert!(script.contains("export DSTACK_MASTER_NODE_IP='127.0.0.1'\n"));
        assert!(script.contains("export CUDA_VISIBLE_DEVICES=''\n"));
    }

    #[test]
    fn a_job_directory_that_cannot_be_written_says_why() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Host::Local(crate::hosts::LocalHost::install(dir.path()).expect("a local host"));
        let fine = dir.path().display().to_string();
        assert_eq!(rt.block_on(unwritable(&host, &fine)), None);
        assert!(!dir.path().join(".flotilla-write-probe").exists());
        let gone = dir.path().join("gone").display().to_string();
        let why = rt.block_on(unwritable(&host, &gone)).expect("an error");
        assert!(why.contains("No such file"), "{why}");
    }

    #[test]
    fn a_bad_variable_name_is_an_error_that_names_it() {
        let run = run_of("type: task\ncommands: [\"true\"]\n");
        let fleet_env = BTreeMap::from([("1BAD".to_string(), "x".to_string())]);
        let err = job_script(&run, &run.jobs[0], &fleet_env, &[]).expect_err("refused");
        assert!(err.contains("\"1BAD\""), "{err}");
        assert!(is_env_name("_OK_1"));
        assert!(!is_env_name("") && !is_env_name("A-B"));
    }
}
