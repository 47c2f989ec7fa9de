//! Driver layer: the GPU sampler. Every few seconds, the supervisor's `metrics` verb on each
//! instance with GPUs that runs jobs; the samples go to the handle's [`GpuSampleStore`], then
//! the runs' `utilization_policy` is enforced over them.
//!
//! [`GpuSampleStore`]: crate::gpu_samples::GpuSampleStore

use super::{Loop, WakeSource};
use crate::gpu_samples::{parse_metrics_line, SAMPLE_INTERVAL_SECS};
use crate::handle::Daemon;
use crate::ops::occupancy;
use flotilla_protocol::model::InstanceStatus;
use flotilla_protocol::Timestamp;
use std::time::Duration;
use tracing::{debug, warn};

const INTERVAL: Duration = Duration::from_secs(SAMPLE_INTERVAL_SECS);

pub struct GpuSampler;

impl Loop for GpuSampler {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Timer
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        sample_all(d).await;
        // dstack's `utilization_policy`, over the samples just taken.
        crate::ops::utilization::enforce(d, Timestamp::now()).await;
        INTERVAL
    }
}

async fn sample_all(d: &Daemon) {
    let fleets = match occupancy::fleets_with_usage(d) {
        Ok(f) => f,
        Err(e) => {
            warn!("metrics: cannot list the fleets: {e}");
            return;
        }
    };
    for inst in fleets.iter().flat_map(|f| f.instances.iter()) {
        // Only while jobs run there, and only where there are GPUs to watch.
        if inst.status != InstanceStatus::Busy || inst.resources.gpus.is_empty() || inst.unreachable
        {
            continue;
        }
        let host = d.host_for(Some(inst.id));
        let label = format!("{}/{}", inst.fleet, inst.name);
        match tokio::time::timeout(Duration::from_secs(5), host.run(&["metrics"], None)).await {
            Ok(Ok(text)) => {
                let now = Timestamp::now();
                for line in text.lines() {
                    if let Some((gpu, s)) = parse_metrics_line(line, now) {
                        d.gpu_samples().record(&label, gpu, s);
                    }
                }
            }
            Ok(Err(e)) => debug!("metrics of {label}: {e}"),
            Err(_) => debug!("metrics of {label}: timed out"),
        }
    }
}
