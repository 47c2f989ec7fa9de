//! Operations layer: `event.list`, the recorded events.

use super::OpError;
use crate::handle::Daemon;
use flotilla_protocol::model::Event;

/// Events after `since`, oldest first, or else the last ones; at most `limit` (100 unless
/// told, 10 000 at most).
pub fn list(d: &Daemon, since: Option<u64>, limit: Option<usize>) -> Result<Vec<Event>, OpError> {
    let limit = limit.unwrap_or(100).min(10_000);
    Ok(match since {
        Some(s) => d.store().events_since(s, limit),
        None => d.store().last_events(limit),
    }?)
}
