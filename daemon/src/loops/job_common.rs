//! Driver layer: what every part of a job's runner shares (`runners`, `container_jobs`,
//! `slurm_jobs`, `cluster`): why it gave up, and a sleep that ends at shutdown.

use crate::handle::Daemon;
use flotilla_protocol::model::JobTerminationReason;
use std::time::Duration;

/// Why a runner gave up on its job: `executor_error` unless said otherwise.
pub(super) struct Failure {
    pub(super) reason: JobTerminationReason,
    pub(super) message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            reason: JobTerminationReason::ExecutorError,
            message,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::from(message.to_string())
    }
}

/// Sleeps; true when the daemon is shutting down (the job keeps running on its host).
pub(super) async fn sleep_or_shutdown(d: &Daemon, dur: Duration) -> bool {
    tokio::select! {
        _ = d.shutdown().cancelled() => true,
        _ = tokio::time::sleep(dur) => false,
    }
}
