//! Resubmitting failed runs (SPEC section 4): which failures a run's `retry` covers, the
//! backoff (15s, 30s, 1m, 2m, 5m, then every 10m), and when the retry `duration` has run out
//! (`retry_limit_exceeded`).

use flotilla_protocol::config::{RetryEvent, RetrySpec};
use flotilla_protocol::model::{JobTerminationReason, RunTerminationReason};
use flotilla_protocol::Timestamp;
use std::time::Duration;

/// The waits before the 1st, 2nd, ... resubmission, in seconds; the last one repeats.
pub const RETRY_DELAYS_SECS: [u64; 6] = [15, 30, 60, 120, 300, 600];

/// The wait after `attempt` resubmissions so far (0 = before the first one): 15s, 30s, 1m,
/// 2m, 5m, then 10m.
pub fn retry_delay(attempt: u32) -> Duration {
    let index = (attempt as usize).min(RETRY_DELAYS_SECS.len() - 1);
    Duration::from_secs(RETRY_DELAYS_SECS[index])
}

/// The retry event a job's end counts as, if any: no capacity to start; an interruption (a
/// spot loss, or the host gone unreachable); an error (the job's own non-zero exit, or the
/// executor failing). Other ends (done, stopped, scaled down, past `max_duration`, ...) are
/// not retried.
pub fn retry_event(reason: JobTerminationReason) -> Option<RetryEvent> {
    use JobTerminationReason as R;
    match reason {
        R::FailedToStartDueToNoCapacity => Some(RetryEvent::NoCapacity),
        R::InterruptedByNoCapacity | R::InstanceUnreachable => Some(RetryEvent::Interruption),
        R::ContainerExitedWithError | R::CreatingContainerError | R::ExecutorError => {
            Some(RetryEvent::Error)
        }
        R::WaitingInstanceLimitExceeded
        | R::VolumeError
        | R::DoneByRunner
        | R::TerminatedByUser
        | R::AbortedByUser
        | R::MaxDurationExceeded
        | R::InactivityDurationExceeded
        | R::ScaledDown
        | R::TerminatedDueToUtilizationPolicy
        | R::TerminatedByServer
        | R::LogStorageFailed
        | R::ExitCodeStorageFailed => None,
    }
}

/// What to do with a run after a job failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Pending again; resubmit at `at`.
    Resubmit { at: Timestamp },
    /// The retry window is over: the run fails with `retry_limit_exceeded`.
    LimitExceeded,
    /// The run's `retry` does not cover this event (or there is none): the run fails.
    NotRetried,
}

impl RetryDecision {
    /// The run's termination reason when it ends here.
    pub fn run_termination_reason(self) -> Option<RunTerminationReason> {
        match self {
            RetryDecision::Resubmit { .. } => None,
            RetryDecision::LimitExceeded => Some(RunTerminationReason::RetryLimitExceeded),
            RetryDecision::NotRetried => Some(RunTerminationReason::JobFailed),
        }
    }
}

/// Whether and when to resubmit after failure `event` at `now`, after `attempt` resubmissions
/// so far (0 = this is the first failure), given the run's `retry` and when its retry window
/// began (`first_failure_at`). The window runs out once more than `retry.duration` seconds
/// have passed since then.
pub fn retry_decision(
    retry: Option<&RetrySpec>,
    event: RetryEvent,
    attempt: u32,
    first_failure_at: Timestamp,
    now: Timestamp,
) -> RetryDecision {
    let Some(retry) = retry.filter(|r| r.on_events.contains(&event)) else {
        return RetryDecision::NotRetried;
    };
    let elapsed_ms = now.millis().saturating_sub(first_failure_at.millis());
    if elapsed_ms > retry.duration.saturating_mul(1000) {
        return RetryDecision::LimitExceeded;
    }
    RetryDecision::Resubmit {
        at: now.plus_secs(retry_delay(attempt).as_secs()),
    }
}
