//! Driver layer: one runner per job submission on a host. Starts it through the supervisor,
//! copies its log, records how it ended.
//!
//! The copy resumes at the length of the daemon's own log file, so a restart neither skips nor
//! repeats a byte.

use super::cluster;
use super::container_jobs::{pull_image, record_ports, wait_started};
use super::job_common::{sleep_or_shutdown, Failure};
use super::job_start::plan_launch;
use crate::handle::Daemon;
use crate::hosts::container::{self, Network};
use crate::hosts::supervisor::{self, FollowEnd, ProcessStatus};
use crate::hosts::{sh_quote, Host};
use crate::lifecycle::{
    failure_stops_run, finish, finish_from_exit, request_job_stop, stop_on_master_done,
};
use crate::loops::launch::Launch;
use crate::ops::secrets;
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
        if let Err(Failure { reason, message }) = drive(&d, target).await {
            warn!("job submission {sub_id}: {message}");
            let now = Timestamp::now();
            let recorded = d.update_run(run_id, |run| {
                if let Some(job) = run.job_mut(replica, job_num) {
                    if job.current.id == sub_id && !job.current.status.is_finished() {
                        finish(
                            &mut job.current,
                            JobStatus::Failed,
                            Some(reason),
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

async fn drive(d: &Daemon, target: Target) -> Result<(), Failure> {
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

    if matches!(
        job.current.status,
        JobStatus::Provisioning | JobStatus::Pulling
    ) && !start(d, &host, &run, job, &job_dir).await?
    {
        return Ok(());
    }
    Ok(follow_to_end(d, &host, target, &job_dir).await?)
}

/// Starts the job on its host; false when it was stopped before it started. The run's secrets
/// are put in here (a failure's text masks their values).
async fn start(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    job_dir: &str,
) -> Result<bool, Failure> {
    if job.current.stop.is_some() {
        end_stopped_before_start(d, run.id, job).await?;
        return Ok(false);
    }
    let resolved = secrets::resolve_for_job(d, run).map_err(|message| Failure {
        reason: JobTerminationReason::TerminatedByServer,
        message,
    })?;
    start_resolved(d, host, &resolved.run, job, job_dir)
        .await
        .map_err(|f| Failure {
            reason: f.reason,
            message: resolved.mask(&f.message),
        })
}

async fn start_resolved(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    job_dir: &str,
) -> Result<bool, Failure> {
    if super::slurm_jobs::is_slurm(host) {
        // A Slurm cluster: one sbatch job, running once Slurm starts it.
        return match super::slurm_jobs::start(d, host, run, job, job_dir).await? {
            Some(_) => mark_started(d, run, job).await,
            None => Ok(false),
        };
    }
    // dstack's `startup_order`: the job waits (provisioning) until its turn.
    if !super::cluster::wait_for_startup_order(d, run.id, job).await {
        if stopped_meanwhile(d, run.id, job)? {
            end_stopped_before_start(d, run.id, job).await?;
            cluster::remove_ssh(d, host, run, job, job_dir).await;
        }
        return Ok(false);
    }
    let mut launch = plan_launch(d, run, job, job_dir, None)?;
    // A host job of a multi-node run reaches the other nodes by `ssh` (not set up in containers).
    if matches!(launch, Launch::Host { .. }) {
        let nodes = cluster::nodes(d, run, job.replica_num)?;
        if let Some(bin) = cluster::install_ssh(d, host, run, &nodes, job_dir).await? {
            launch = plan_launch(d, run, job, job_dir, Some(&bin))?;
        }
    }
    super::job_files::put_archives(d, host, run, job_dir).await?;
    let pid = match launch {
        Launch::Host {
            script,
            shell,
            workdir,
        } => supervisor::start(host, run.uid, job_dir, &shell, &workdir, &script)
            .await
            .map_err(|e| format!("cannot start the job: {e}"))?,
        Launch::Container {
            spec,
            registry_auth,
        } => {
            pull_image(d, host, run, job, &spec.image, registry_auth).await?;
            // A stop that came while the image was pulled.
            if stopped_meanwhile(d, run.id, job)? {
                end_stopped_before_start(d, run.id, job).await?;
                cluster::remove_ssh(d, host, run, job, job_dir).await;
                return Ok(false);
            }
            let launcher = spec.launcher(job_dir);
            let pid = supervisor::start(host, run.uid, job_dir, "sh", job_dir, &launcher)
                .await
                .map_err(|e| format!("cannot start the job's container: {e}"))?;
            // The job runs once its container does (creating it takes a moment).
            wait_started(d, host, job.current.id, job_dir).await;
            if matches!(&spec.network, Network::Bridge { ports } if !ports.is_empty()) {
                record_ports(d, host, run.id, job, job_dir);
            }
            pid
        }
    };
    info!(run = %run.name, job = job.job_num, pid, "job started");
    mark_started(d, run, job).await
}

/// Whether the job must not start after all: a stop came since `job` was read, it ended, or
/// it (or its run) is gone.
fn stopped_meanwhile(d: &Daemon, run_id: u64, job: &Job) -> Result<bool, Failure> {
    Ok(d.store()
        .get_run(run_id)
        .map_err(|e| e.to_string())?
        .and_then(|r| {
            r.job(job.replica_num, job.job_num)
                .filter(|j| j.current.id == job.current.id)
                .map(|j| j.current.stop.is_some() || j.current.status.is_finished())
        })
        .unwrap_or(true))
}

/// Records that the job's process runs (or, stopped meanwhile, that it terminates).
async fn mark_started(d: &Daemon, run: &Run, job: &Job) -> Result<bool, Failure> {
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

/// A job stopped before anything ran on its host ends `terminated` (or `aborted`) at once.
async fn end_stopped_before_start(d: &Daemon, run_id: u64, job: &Job) -> Result<(), Failure> {
    let sub_id = job.current.id;
    d.update_run(run_id, |run| {
        if let Some(j) = run.job_mut(job.replica_num, job.job_num) {
            if j.current.id != sub_id || j.current.status.is_finished() {
                return;
            }
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
    Ok(())
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
    // Gone without an exit code: its directory may be unwritable (a full disk on the host).
    let storage_error = match exit {
        Some(_) => None,
        None => unwritable(host, job_dir).await,
    };
    // A Slurm job: whether Slurm ended it (cancelled, preempted, its time limit...).
    let slurm_end = if super::slurm_jobs::is_slurm(host) {
        super::slurm_jobs::how_slurm_ended(host, job_dir, exit).await
    } else {
        None
    };
    // A container that could not be created or run says why in its directory.
    let container_error = match exit {
        Some(code) if code != 0 => match container::container_error(host, job_dir).await {
            Ok(e) => e,
            Err(e) => {
                warn!("job submission {sub_id}: cannot read why its container failed: {e}");
                None
            }
        },
        _ => None,
    };
    let before = d.store().get_run(run_id).map_err(|e| e.to_string())?;
    // The run's SSH key and files leave this host before the job is seen to end.
    let ended = before
        .as_ref()
        .and_then(|r| r.job(replica, job_num).map(|j| (r, j)));
    if let Some((r, job)) = ended {
        cluster::remove_ssh(d, host, r, job, job_dir).await;
    }
    let now = Timestamp::now();
    let stop_duration = before.and_then(|r| r.configuration.common().policy.stop_duration);
    let (run, others_to_stop) = d
        .update_run(run_id, |run| {
            let Some(job) = run.job_mut(replica, job_num) else {
                return false;
            };
            if job.current.id != sub_id || job.current.status.is_finished() {
                return false;
            }
            finish_from_exit(&mut job.current, exit, now);
            if let Some(e) = container_error
                .as_ref()
                .filter(|_| job.current.stop.is_none())
            {
                // The container never ran: the launcher's 125 is not the job's exit code.
                job.current.exit_code = None;
                job.current.termination_reason = Some(JobTerminationReason::CreatingContainerError);
                job.current.termination_message = Some(e.clone());
            }
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
                // `stop_criteria: master-done`: the master's end ends the run.
                let done = job.current.status == JobStatus::Done;
                return done && stop_on_master_done(run, replica, now);
            }
            if note.is_some() {
                run.status_message = note;
            }
            // A failed node stops the others of its run; a service's other replicas go on
            // serving unless the failure ends the service.
            if !failure_stops_run(run) {
                return false;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
