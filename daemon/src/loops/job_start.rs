//! Driver layer: how a job starts on its host (`runners`, `slurm_jobs`): the launch plan from
//! the host's software and GPUs, the fleet's env, the nodes' addresses, the daemon's
//! `base_image` and the registry password.

use super::cluster;
use super::job_common::Failure;
use crate::handle::Daemon;
use crate::loops::launch::{self, Launch, LaunchContext};
use crate::sealing::is_sealed;
use flotilla_protocol::model::{Job, JobTerminationReason, Run};

/// How the job starts on its host: the host's software and GPUs, the fleet's env, the nodes'
/// addresses, the daemon's `base_image` and the registry password (opened from its seal).
pub(super) fn plan_launch(
    d: &Daemon,
    run: &Run,
    job: &Job,
    job_dir: &str,
    ssh_bin: Option<&str>,
) -> Result<Launch, Failure> {
    let fleet_env = match job.current.fleet.as_deref() {
        Some(f) => d
            .store()
            .get_fleet(f)
            .map_err(|e| format!("cannot read fleet {f}: {e}"))?
            .and_then(|f| f.configuration)
            .map(|c| c.env.resolve(&Default::default()).unwrap_or_default())
            .unwrap_or_default(),
        None => Default::default(),
    };
    let nodes = cluster::nodes(d, run, job.replica_num)?;
    let node_ips: Vec<String> = nodes.iter().map(|n| n.ip.clone()).collect();
    let node_gpus: Vec<usize> = nodes.iter().map(|n| n.gpus).collect();
    let instance = match job.current.instance_id {
        Some(id) => d
            .store()
            .get_instance(id)
            .map_err(|e| format!("cannot read instance {id}: {e}"))?,
        None => None,
    };
    let registry_password = match &run.configuration.common().registry_auth {
        Some(auth) if is_sealed(&auth.password) => Some(
            d.sealing()
                .open(&auth.password)
                .map_err(|e| format!("registry_auth: cannot open the stored password: {e}"))?,
        ),
        Some(auth) => Some(auth.password.clone()),
        None => None,
    };
    let ctx = LaunchContext {
        fleet_env: &fleet_env,
        node_ips: &node_ips,
        node_gpus: &node_gpus,
        ssh_bin,
        job_dir,
        software: instance.as_ref().map(|i| i.software).unwrap_or_default(),
        gpu_vendor: instance
            .as_ref()
            .and_then(|i| i.resources.gpus.first())
            .map(|g| g.vendor),
        base_image: d.config().base_image.as_deref(),
        registry_password,
    };
    launch::plan(run, job, ctx).map_err(|message| Failure {
        reason: JobTerminationReason::CreatingContainerError,
        message,
    })
}
