//! Driver layer: the parts of a job's runner that only container jobs have: pulling the
//! image (the job is `pulling`), noting a host whose Docker stopped, and recording where the
//! container's ports are published.

use super::job_common::{sleep_or_shutdown, Failure};
use crate::handle::Daemon;
use crate::hosts::container::{self, Credentials};
use crate::hosts::{Host, HostError};
use flotilla_protocol::model::{Job, JobStatus, JobTerminationReason, Run};
use std::time::Duration;
use tracing::{info, warn};

/// Pulls the job's image (the job is `pulling`, its waiting reason names the image); a pull
/// that fails ends the job with `creating_container_error` and Docker's words.
pub(super) async fn pull_image(
    d: &Daemon,
    host: &Host,
    run: &Run,
    job: &Job,
    image: &str,
    registry_auth: Option<(String, String)>,
) -> Result<(), Failure> {
    let sub_id = job.current.id;
    d.update_run(run.id, |run| {
        if let Some(j) = run.job_mut(job.replica_num, job.job_num) {
            if j.current.id == sub_id && !j.current.status.is_finished() {
                j.current.status = JobStatus::Pulling;
                j.current.waiting_reason = Some(format!("pulling {image}"));
            }
        }
    })
    .map_err(|e| e.to_string())?;
    d.flush_or_warn("a job's pulling state").await;
    let credentials = registry_auth.as_ref().map(|(u, p)| Credentials {
        username: u,
        password: p,
    });
    match container::pull(host, run.uid, image, credentials).await {
        Ok(pulled) => {
            info!(run = %run.name, job = job.job_num, image, ?pulled, "image ready");
            Ok(())
        }
        Err(e) if e.is_connection() => Err(format!("cannot pull {image}: {e}").into()),
        Err(HostError::Verb { mut message, .. }) => {
            if message.contains("Cannot connect to the Docker daemon") {
                docker_is_down(d, job.current.instance_id, &message);
            }
            if message.contains("permission denied") && message.contains("docker.sock") {
                message.push_str(&format!(
                    "; {} may not use Docker on {}: add them to the `docker` group there",
                    run.user,
                    host.label()
                ));
            }
            Err(Failure {
                reason: JobTerminationReason::CreatingContainerError,
                message: format!("image {image}: {message}"),
            })
        }
        Err(e) => Err(Failure {
            reason: JobTerminationReason::CreatingContainerError,
            message: format!("image {image}: {e}"),
        }),
    }
}

/// Docker stopped on a host: image jobs no longer go there until the host is looked at again.
fn docker_is_down(d: &Daemon, instance_id: Option<u64>, message: &str) {
    let Some(id) = instance_id else { return };
    let result = d.store().get_instance(id).and_then(|inst| match inst {
        Some(mut inst) => {
            inst.software.docker = false;
            inst.error = Some(format!("Docker is not running: {message}"));
            d.store().put_instance(&inst)
        }
        None => Ok(Vec::new()),
    });
    match result {
        Ok(events) => d.publish(events),
        Err(e) => warn!("cannot record that Docker is down on instance {id}: {e}"),
    }
}

/// Records where the container's ports are published once its launcher has written them
/// (within 10 s of the start), so that the daemon can reach them.
pub(super) fn record_ports(d: &Daemon, host: &Host, run_id: u64, job: &Job, job_dir: &str) {
    let (d, host, job_dir) = (d.clone(), host.clone(), job_dir.to_string());
    let (replica, job_num, sub_id) = (job.replica_num, job.job_num, job.current.id);
    tokio::spawn(async move {
        for _ in 0..100 {
            match container::published_ports(&host, &job_dir).await {
                Ok(ports) if !ports.is_empty() => {
                    let recorded = d.update_run(run_id, |run| {
                        if let Some(j) = run.job_mut(replica, job_num) {
                            if j.current.id == sub_id && !j.current.status.is_finished() {
                                j.current.ports = ports.clone();
                            }
                        }
                    });
                    match recorded {
                        Ok(_) => d.flush_or_warn("a job's published ports").await,
                        Err(e) => warn!("job submission {sub_id}: cannot record its ports: {e}"),
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => warn!("job submission {sub_id}: cannot read its published ports: {e}"),
            }
            if sleep_or_shutdown(&d, Duration::from_millis(100)).await {
                return;
            }
        }
        warn!("job submission {sub_id}: its container published no port within 10 s");
    });
}

/// Waits until the launcher says the container runs (or has ended already); a host that does
/// not answer is followed on regardless (the log follow finds how the job went).
pub(super) async fn wait_started(d: &Daemon, host: &Host, sub_id: u64, job_dir: &str) {
    loop {
        match container::started(host, job_dir).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                warn!("job submission {sub_id}: cannot ask whether its container started: {e}");
                return;
            }
        }
        if sleep_or_shutdown(d, Duration::from_millis(50)).await {
            return;
        }
    }
}
