//! Driver layer: the store watch. Once the state store has failed (sled reported an I/O error and
//! refuses writes until it is reopened), the daemon does not stay half-alive: this loop logs the
//! error and shuts the daemon down; the final flush is refused, so it exits non-zero and its
//! supervisor (systemd, `Restart=on-failure`) starts it again, which reopens the store.

use super::{Loop, WakeSource};
use crate::handle::Daemon;
use std::time::Duration;
use tracing::error;

pub struct StoreWatch;

impl Loop for StoreWatch {
    fn name(&self) -> &'static str {
        "store watch"
    }

    fn wake_source(&self) -> WakeSource {
        WakeSource::Timer
    }

    async fn tick(&mut self, d: &Daemon) -> Duration {
        tokio::select! {
            first = d.store().failed() => {
                error!("the state store failed ({first}); flotillad exits so that it is restarted and the store reopened");
                d.shutdown().cancel();
            }
            _ = d.shutdown().cancelled() => {}
        }
        Duration::from_secs(1)
    }
}
