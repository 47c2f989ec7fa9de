//! Operations layer: `event.list`, the recorded events, and what of them a caller may see:
//! the events of others' runs and jobs keep their status change and lose their message.

use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use flotilla_protocol::model::{Event, EventKind};

/// Events after `since`, oldest first, or else the last ones; at most `limit` (100 unless
/// told, 10 000 at most).
pub fn list(
    d: &Daemon,
    caller: &Caller,
    since: Option<u64>,
    limit: Option<usize>,
) -> Result<Vec<Event>, OpError> {
    let limit = limit.unwrap_or(100).min(10_000);
    let events = match since {
        Some(s) => d.store().events_since(s, limit),
        None => d.store().last_events(limit),
    }?;
    Ok(events
        .into_iter()
        .map(|e| visible_to(d, caller, e))
        .collect())
}

/// An event as `caller` may see it: an event of another user's run or job (or of a run that
/// no longer exists) keeps what changed and loses its message, which may quote the run's
/// output or configuration.
pub fn visible_to(d: &Daemon, caller: &Caller, e: Event) -> Event {
    if caller.admin || !matches!(e.kind, EventKind::Run | EventKind::Job) {
        return e;
    }
    let run_name = e.resource.split('/').next().unwrap_or_default();
    let own = matches!(d.store().run_by_name(run_name), Ok(Some(r)) if r.uid == caller.uid);
    if own {
        e
    } else {
        without_message(e)
    }
}

fn without_message(mut e: Event) -> Event {
    e.message = None;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::Timestamp;

    #[test]
    fn an_event_of_anothers_run_keeps_its_status_change_only() {
        let e = Event {
            seq: 3,
            time: Timestamp::now(),
            kind: EventKind::Job,
            resource: "private/0/0".into(),
            old_status: Some("running".into()),
            new_status: Some("failed".into()),
            reason: Some("container_exited_with_error".into()),
            message: Some("token s3cr3t".into()),
        };
        let seen = without_message(e.clone());
        assert_eq!(seen.message, None);
        assert_eq!(seen.new_status, e.new_status);
        assert_eq!(seen.old_status, e.old_status);
        assert_eq!(seen.resource, e.resource);
    }
}
