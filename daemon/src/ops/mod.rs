//! Operations layer: what a request or a tick does, one module per subject. The drivers above
//! (`api/` for the socket, `loops/` for the background work) call these; these call the handle,
//! the pure lifecycle rules and the bottom layer, never a driver.

pub mod backends;
pub mod config_fields;
pub mod events;
pub mod fleets;
pub mod fleets_keys;
pub mod gateway;
pub mod instances;
pub mod local_fleet;
pub mod logs;
pub mod metrics;
pub mod occupancy;
pub mod offers;
pub mod proxy;
pub mod runs;
pub mod runs_access;
pub mod runs_interpolation;
pub mod runs_retention;
pub mod runs_update;
pub mod secrets;
pub mod services;
pub mod status;
pub mod stops;
pub mod tokens;
pub mod tunnels;
pub mod uploads;
pub mod users;
pub mod utilization;

use crate::store::StoreError;
use flotilla_protocol::config::ConfigErrors;

/// Why an operation was refused or failed; the socket API turns each kind into its error code.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    /// Something the daemon could not do (a log it cannot read, a key it cannot make).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
