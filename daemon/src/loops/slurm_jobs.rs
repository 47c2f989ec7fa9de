//! Driver layer: the start of a job placed on a Slurm cluster (the runner's hook). Rank 0 of a
//! replica writes each rank's script and one batch script, submits it once with `sbatch`; every
//! rank then waits while Slurm queues the job, `provisioning` with Slurm's reason as its waiting
//! reason, until its process runs inside the allocation. From there the runner follows it as
//! any job: the login node's `slurm.sh` answers the supervisor's verbs from Slurm's state.

use super::job_common::sleep_or_shutdown;
use super::job_start::plan_launch;
use super::launch::Launch;
use crate::backends::slurm::sbatch::{
    batch_script, parse_queue, time_minutes, with_allocation_env, BatchSpec, QueueState, Rank,
};
use crate::backends::slurm::JobPlacement;
use crate::handle::Daemon;
use crate::hosts::ssh::SshHost;
use crate::hosts::{slurm_script_hash, Host, HostError, SLURM_SCRIPT};
use crate::lifecycle::finish;
use flotilla_protocol::config::{ResourcesSpec, RunConfiguration};
use flotilla_protocol::model::{Job, JobStatus, JobTerminationReason, Run};
use flotilla_protocol::Timestamp;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often a queued job's state is read (one `scontrol` call on the login node): often in
/// its first seconds (an idle node starts it at once), then once a second.
const POLL_FAST: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_secs(1);
const FAST_FOR: Duration = Duration::from_secs(3);
/// How long a job that ended waits for Slurm's final state: 50 looks, 200 ms apart.
const SETTLE_TRIES: u32 = 50;
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// Running this long in Slurm without its pid file on the login node: the job directory is not
/// on a file system that the login and compute nodes share.
const NOT_SHARED_AFTER: Duration = Duration::from_secs(60);

/// Whether `host` is a Slurm cluster's login node.
pub fn is_slurm(host: &Host) -> bool {
    matches!(host, Host::Ssh(h) if h.is_slurm())
}

/// The Slurm counterpart of the supervisor's `start`: submits (rank 0) and waits until the job
/// runs. `Ok(Some(pid))` once it runs (or already ended: the follow reads its exit code);
/// `Ok(None)` when it ended before it ran (recorded here).
pub async fn start(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    job_dir: &str,
) -> Result<Option<u32>, String> {
    let Host::Ssh(login) = host else {
        return Err("a Slurm job needs its cluster's login node".into());
    };
    install(login).await?;
    let first = queue(host, job_dir).await?;
    if first.state == "absent" && job.job_num == 0 {
        let common = run.configuration.common();
        let (_, _, gpus) = requested(&common.resources);
        let placement = placement(d, job, gpus > 0).await?;
        if matches!(&run.configuration, RunConfiguration::Task(t) if t.groups.is_some()) {
            return Err(format!(
                "slurm cluster {}: task `groups` are not run on Slurm yet (one sbatch job asks for one shape of node); run them on an SSH or cloud fleet (`fleets: [...]`)",
                placement.cluster
            ));
        }
        if let Some(image) = &common.image {
            return Err(if placement.pyxis {
                format!(
                    "slurm cluster {} has Pyxis, but flotilla does not run images ({image}) through it yet; remove `image` to run on the nodes directly",
                    placement.cluster
                )
            } else {
                format!(
                    "slurm cluster {} cannot run images ({image}): it has no Pyxis (`srun --help` lists no --container-image); remove `image` to run on the nodes directly",
                    placement.cluster
                )
            });
        }
        submit(d, host, run, job, &placement).await?;
    }
    wait_until_running(d, host, run, job, job_dir).await
}

/// Which partitions the job goes to and whether the cluster has Pyxis.
async fn placement(d: &Daemon, job: &Job, gpu_job: bool) -> Result<JobPlacement, String> {
    let id = job.current.instance_id.ok_or("the job has no instance")?;
    let inst = d
        .store()
        .get_instance(id)
        .map_err(|e| format!("cannot read instance {id}: {e}"))?
        .ok_or_else(|| format!("instance {id} is gone"))?;
    let backend = d
        .backends()
        .get(&inst.backend)
        .ok_or_else(|| format!("backend {} is no longer configured", inst.backend))?;
    let slurm = backend
        .slurm()
        .ok_or_else(|| format!("backend {} is not a Slurm backend", inst.backend))?;
    slurm.placement_now(&inst, gpu_job).await
}

/// Installs this version of `slurm.sh` in the login user's `~/.flotilla` when it is missing.
async fn install(login: &SshHost) -> Result<(), String> {
    let command = format!(
        "set -e; r=\"$HOME/.flotilla\"; mkdir -p \"$r/jobs\"; f=\"$r/slurm-{}.sh\"; \
         if [ -f \"$f\" ]; then cat >/dev/null; else cat > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; fi",
        slurm_script_hash()
    );
    let (_, err, code) = login
        .exec_raw(&command, Some(SLURM_SCRIPT.as_bytes()))
        .await
        .map_err(|e| format!("cannot install flotilla's Slurm verbs: {e}"))?
        .collect()
        .await;
    if code != Some(0) {
        return Err(format!(
            "cannot install flotilla's Slurm verbs on {}: {}",
            login.label(),
            String::from_utf8_lossy(&err).trim()
        ));
    }
    Ok(())
}

async fn queue(host: &Host, job_dir: &str) -> Result<QueueState, String> {
    let out = host
        .run(&["queue", job_dir], None)
        .await
        .map_err(|e| e.to_string())?;
    parse_queue(&out)
}

/// What the job asks of each node: CPUs, memory (MB) and GPUs, the least its ranges allow.
pub fn requested(res: &ResourcesSpec) -> (u32, u64, u32) {
    let cpus = res.cpu.count.min.unwrap_or(1).max(1);
    let memory_mb = res
        .memory
        .min
        .map(|gb| (gb * 1024.0).ceil() as u64)
        .unwrap_or(1024)
        .max(1);
    (cpus, memory_mb, res.gpu.count.min.unwrap_or(0))
}

/// Writes every rank's script and the batch script, and submits it once.
async fn submit(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    placement: &JobPlacement,
) -> Result<(), String> {
    let common = run.configuration.common();
    let mut shell = None;
    let mut ranks: Vec<&Job> = run
        .jobs
        .iter()
        .filter(|j| j.replica_num == job.replica_num)
        .collect();
    ranks.sort_by_key(|j| j.job_num);
    let mut rank_dirs = Vec::new();
    for r in &ranks {
        let dir = r
            .current
            .job_dir
            .clone()
            .ok_or_else(|| format!("rank {} has no job directory yet", r.job_num))?;
        let (script, rank_shell, workdir) = match plan_launch(d, run, r, &dir, None) {
            Ok(Launch::Host {
                script,
                shell,
                workdir,
            }) => (script, shell, workdir),
            Ok(Launch::Container { .. }) => {
                return Err(format!(
                    "slurm cluster {}: this job would run in a container, which flotilla does not run on Slurm yet",
                    placement.cluster
                ))
            }
            Err(f) => return Err(f.message),
        };
        let script = with_allocation_env(&script)?;
        super::job_files::put_archives(d, host, run, &dir).await?;
        write(host, &dir, "script", script.as_bytes()).await?;
        shell.get_or_insert(rank_shell);
        rank_dirs.push(Rank {
            job_dir: dir,
            workdir,
        });
    }
    let (cpus, memory_mb, gpus) = requested(&common.resources);
    let spec = BatchSpec {
        name: format!("flotilla-{}", job.current.id),
        partitions: placement.partitions.clone(),
        cpus_per_task: cpus,
        memory_mb,
        gpus_per_node: gpus,
        time_minutes: time_minutes(common.policy.max_duration),
        shell: shell.unwrap_or_else(|| "default".into()),
        ranks: rank_dirs.clone(),
    };
    let dir0 = &rank_dirs[0].job_dir;
    write(host, dir0, "batch.sh", batch_script(&spec).as_bytes()).await?;
    let id = host
        .run(&["submit", dir0], None)
        .await
        .map_err(|e| match e {
            HostError::Verb { message, .. } => {
                format!("slurm cluster {}: {message}", placement.cluster)
            }
            e => e.to_string(),
        })?
        .trim()
        .to_string();
    for r in rank_dirs.iter().skip(1) {
        write(
            host,
            &r.job_dir,
            "slurm_job_id",
            format!("{id}\n").as_bytes(),
        )
        .await?;
    }
    info!(run = %run.name, slurm_job = %id, cluster = %placement.cluster, partitions = %placement.partitions.join(","), "submitted to Slurm");
    Ok(())
}

async fn write(host: &Host, dir: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
    host.run(&["write", dir, name], Some(bytes))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot write {dir}/{name}: {e}"))
}

/// Polls Slurm until the job's process runs, keeping Slurm's reason as the waiting reason.
async fn wait_until_running(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    job_dir: &str,
) -> Result<Option<u32>, String> {
    let (run_id, replica, job_num, sub_id) = (run.id, job.replica_num, job.job_num, job.current.id);
    let mut running_since: Option<Instant> = None;
    let waiting_since = Instant::now();
    loop {
        let poll = if waiting_since.elapsed() < FAST_FOR {
            POLL_FAST
        } else {
            POLL
        };
        let current = d
            .store()
            .get_run(run_id)
            .map_err(|e| e.to_string())?
            .and_then(|r| r.job(replica, job_num).map(|j| j.current.clone()));
        let Some(current) = current.filter(|c| c.id == sub_id && !c.status.is_finished()) else {
            return Ok(None);
        };
        if let Some(stop) = current.stop.clone() {
            // Stopped while queued: the Slurm job goes, nothing ran.
            if let Err(e) = host.run(&["cancel", job_dir], None).await {
                warn!("job submission {sub_id}: cannot cancel its Slurm job: {e}; retrying");
                if sleep_or_shutdown(d, POLL).await {
                    return Ok(None);
                }
                continue;
            }
            let status = if stop.abort {
                JobStatus::Aborted
            } else {
                JobStatus::Terminated
            };
            end(
                d,
                run_id,
                replica,
                job_num,
                sub_id,
                status,
                stop.reason,
                None,
            )
            .await?;
            return Ok(None);
        }
        let reason = match queue(host, job_dir).await {
            Ok(q) if q.started => return Ok(Some(0)),
            Ok(q) if q.is_running() => {
                let since = *running_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= NOT_SHARED_AFTER {
                    if let Err(e) = host.run(&["cancel", job_dir], None).await {
                        warn!("job submission {sub_id}: cannot cancel its Slurm job: {e}");
                    }
                    return Err(format!(
                        "Slurm runs the job, but its files do not appear in {job_dir} on the login node after {}s: the job directory must be on a file system the login and compute nodes share (the login user's home usually is)",
                        NOT_SHARED_AFTER.as_secs()
                    ));
                }
                "Slurm job running, waiting for its process".to_string()
            }
            Ok(q) if q.state == "absent" => "waiting for rank 0 to submit the Slurm job".into(),
            Ok(q) if q.state == "error" => format!("cannot ask Slurm about the job: {}", q.reason),
            Ok(q) if q.is_waiting() => format!("Slurm: {} ({})", q.state, q.reason),
            Ok(q) => {
                // Ended before its process ran: cancelled, failed to launch, preempted...
                let message = format!(
                    "Slurm ended the job before it ran: {} ({}){}",
                    q.state,
                    q.reason,
                    q.exit
                        .map(|e| format!(", exit code {e}"))
                        .unwrap_or_default()
                );
                end(
                    d,
                    run_id,
                    replica,
                    job_num,
                    sub_id,
                    JobStatus::Failed,
                    JobTerminationReason::InterruptedByNoCapacity,
                    Some(message),
                )
                .await?;
                return Ok(None);
            }
            Err(e) => format!("cannot ask Slurm about the job: {e}"),
        };
        let changed = current.waiting_reason.as_deref() != Some(reason.as_str());
        let r = if !changed {
            Ok(())
        } else {
            d.update_run(run_id, |run| {
                if let Some(j) = run.job_mut(replica, job_num) {
                    if j.current.id == sub_id
                        && j.current.waiting_reason.as_deref() != Some(&reason)
                    {
                        j.current.waiting_reason = Some(reason.clone());
                    }
                }
            })
            .map(|_| ())
        };
        if let Err(e) = r {
            warn!("job submission {sub_id}: cannot record its waiting reason: {e}");
        }
        if sleep_or_shutdown(d, poll).await {
            return Ok(None);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn end(
    d: &Daemon,
    run_id: u64,
    replica: u32,
    job_num: u32,
    sub_id: u64,
    status: JobStatus,
    reason: JobTerminationReason,
    message: Option<String>,
) -> Result<(), String> {
    let now = Timestamp::now();
    d.update_run(run_id, |run| {
        if let Some(j) = run.job_mut(replica, job_num) {
            if j.current.id == sub_id && !j.current.status.is_finished() {
                finish(&mut j.current, status, Some(reason), message.clone(), now);
            }
        }
    })
    .map_err(|e| e.to_string())?;
    d.store().flush().await.map_err(|e| e.to_string())?;
    d.logs().complete(sub_id);
    Ok(())
}

/// How Slurm ended a job, in job terms, when Slurm rather than the job decided: cancelled or
/// preempted by Slurm itself (or its node failed) is an interruption, which `retry` covers;
/// Slurm's time limit is `max_duration`. `None` when the job's own exit code tells it all.
pub async fn how_slurm_ended(
    host: &Host,
    job_dir: &str,
    exit: Option<i32>,
) -> Option<(JobTerminationReason, String)> {
    // The job's process has ended; Slurm may still be tearing the job down (`COMPLETING`):
    // its final state follows within moments.
    let mut tries = 0;
    let q = loop {
        let q = match queue(host, job_dir).await {
            Ok(q) => q,
            Err(e) => {
                warn!("cannot ask Slurm how the job in {job_dir} ended: {e}");
                return None;
            }
        };
        tries += 1;
        if !(q.is_running() || q.is_waiting()) || tries >= SETTLE_TRIES {
            break q;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    };
    let reason = match q.state.as_str() {
        "CANCELLED" | "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" => {
            JobTerminationReason::InterruptedByNoCapacity
        }
        "TIMEOUT" => JobTerminationReason::MaxDurationExceeded,
        "OUT_OF_MEMORY" => JobTerminationReason::ContainerExitedWithError,
        _ if exit.is_some() => return None,
        _ => JobTerminationReason::InterruptedByNoCapacity,
    };
    let why = if q.reason.is_empty() || q.reason == "None" {
        String::new()
    } else {
        format!(" ({})", q.reason)
    };
    let message = match (q.state.as_str(), exit) {
        ("gone", _) => format!(
            "Slurm no longer knows the job (and has no accounting); no exit code in {job_dir}"
        ),
        (state, Some(code)) => format!("Slurm ended the job: {state}{why}; exit code {code}"),
        (state, None) => format!("Slurm ended the job: {state}{why}; no exit code in {job_dir}"),
    };
    Some((reason, message))
}
