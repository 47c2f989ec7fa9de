//! Operations layer: `metrics.get`, the GPU samples of an instance or of a run's first job.

use super::runs::find_run;
use super::OpError;
use crate::gpu_samples::WINDOW_SECS;
use crate::handle::Daemon;
use flotilla_protocol::rpc::{MetricsParams, MetricsResult};
use flotilla_protocol::Timestamp;

pub fn get(d: &Daemon, p: &MetricsParams) -> Result<MetricsResult, OpError> {
    let window = p.window_secs.unwrap_or(WINDOW_SECS).min(WINDOW_SECS);
    let run = match (&p.instance, &p.run) {
        (_, None) => None,
        (None, Some(name)) => Some(find_run(d, name)?),
        // With an instance named, the run only narrows the GPUs: an unknown run narrows nothing.
        (Some(_), Some(name)) => match find_run(d, name) {
            Ok(run) => Some(run),
            Err(OpError::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
    };
    // A run sees the instance and the GPUs its first job holds.
    let first = run.as_ref().and_then(|r| r.jobs.first());
    let instance = match (&p.instance, first) {
        (Some(i), _) => Some(i.clone()),
        (None, Some(j)) => j
            .current
            .fleet
            .as_ref()
            .zip(j.current.instance.as_ref())
            .map(|(f, i)| format!("{f}/{i}")),
        (None, None) => None,
    };
    let mut series = d
        .gpu_samples()
        .get(instance.as_deref(), window, Timestamp::now());
    if let Some(j) = first {
        series.retain(|s| j.current.gpus.contains(&s.gpu));
    }
    Ok(MetricsResult { series })
}
