//! Retry backoff and limits (SPEC section 4) as tables with fixed clocks: 15s, 30s, 1m, 2m,
//! 5m, then every 10m, until the retry `duration` runs out (`retry_limit_exceeded`).

use flotilla_daemon::scheduler::{retry_decision, retry_delay, retry_event, RetryDecision};
use flotilla_protocol::config::{RetryEvent, RetrySpec};
use flotilla_protocol::model::{JobTerminationReason as Job, RunTerminationReason};
use flotilla_protocol::Timestamp;
use std::time::Duration;

const T0: Timestamp = Timestamp(1_700_000_000_000);

#[test]
fn backoff_grows_then_stays_at_ten_minutes() {
    let table = [
        (0, 15),
        (1, 30),
        (2, 60),
        (3, 120),
        (4, 300),
        (5, 600),
        (6, 600),
        (1000, 600),
    ];
    for (attempt, secs) in table {
        assert_eq!(
            retry_delay(attempt),
            Duration::from_secs(secs),
            "attempt {attempt}"
        );
    }
}

#[test]
fn failures_map_to_retry_events() {
    let table = [
        (
            Job::FailedToStartDueToNoCapacity,
            Some(RetryEvent::NoCapacity),
        ),
        (Job::InterruptedByNoCapacity, Some(RetryEvent::Interruption)),
        (Job::ContainerExitedWithError, Some(RetryEvent::Error)),
        (Job::InstanceUnreachable, Some(RetryEvent::Interruption)),
        (Job::ExecutorError, Some(RetryEvent::Error)),
        (Job::DoneByRunner, None),
        (Job::TerminatedByUser, None),
        (Job::AbortedByUser, None),
        (Job::MaxDurationExceeded, None),
        (Job::ScaledDown, None),
    ];
    for (reason, event) in table {
        assert_eq!(retry_event(reason), event, "{reason}");
    }
}

#[test]
fn retry_decisions() {
    let all_for_an_hour = RetrySpec {
        on_events: RetryEvent::ALL.to_vec(),
        duration: 3600,
    };
    let capacity_only = RetrySpec {
        on_events: vec![RetryEvent::NoCapacity],
        duration: 600,
    };
    struct Row<'a> {
        name: &'a str,
        retry: Option<&'a RetrySpec>,
        event: RetryEvent,
        /// Resubmissions so far.
        attempt: u32,
        /// Seconds since the first failure.
        elapsed: u64,
        want: RetryDecision,
    }
    let table = [
        Row {
            name: "no retry",
            retry: None,
            event: RetryEvent::Error,
            attempt: 0,
            elapsed: 0,
            want: RetryDecision::NotRetried,
        },
        Row {
            name: "an event the run does not retry on",
            retry: Some(&capacity_only),
            event: RetryEvent::Error,
            attempt: 0,
            elapsed: 0,
            want: RetryDecision::NotRetried,
        },
        Row {
            name: "the first retry waits 15s",
            retry: Some(&capacity_only),
            event: RetryEvent::NoCapacity,
            attempt: 0,
            elapsed: 0,
            want: RetryDecision::Resubmit {
                at: T0.plus_secs(15),
            },
        },
        Row {
            name: "the fourth waits 2m",
            retry: Some(&all_for_an_hour),
            event: RetryEvent::Interruption,
            attempt: 3,
            elapsed: 1000,
            want: RetryDecision::Resubmit {
                at: T0.plus_secs(1000 + 120),
            },
        },
        Row {
            name: "at the end of the window it still retries",
            retry: Some(&all_for_an_hour),
            event: RetryEvent::Error,
            attempt: 9,
            elapsed: 3600,
            want: RetryDecision::Resubmit {
                at: T0.plus_secs(3600 + 600),
            },
        },
        Row {
            name: "past the window: retry_limit_exceeded",
            retry: Some(&all_for_an_hour),
            event: RetryEvent::Error,
            attempt: 9,
            elapsed: 3601,
            want: RetryDecision::LimitExceeded,
        },
    ];
    for row in table {
        let got = retry_decision(
            row.retry,
            row.event,
            row.attempt,
            T0,
            T0.plus_secs(row.elapsed),
        );
        assert_eq!(got, row.want, "{}", row.name);
    }
    assert_eq!(
        RetryDecision::LimitExceeded.run_termination_reason(),
        Some(RunTerminationReason::RetryLimitExceeded)
    );
    assert_eq!(
        RetryDecision::NotRetried.run_termination_reason(),
        Some(RunTerminationReason::JobFailed)
    );
}
