//! flotilla-daemon: the daemon behind `flotillad`. [`run`] serves the socket until shutdown
//! (`startup` builds the parts and starts the drivers).
//!
//! The layers, each importing only the ones below it (ARCHITECTURE.md):
//! 1. drivers: `api` (the socket), `http` (the services' HTTP endpoint) and `loops` (the
//!    background work);
//! 2. operations: `ops`, what a request or a tick does;
//! 3. the handle (`handle`, `caller`, `gpu_samples`) and the pure rules (`lifecycle`);
//! 4. the bottom: `store`, `hosts`, `logs`, `scheduler`, `catalog`, `backends`, `blobs`,
//!    `config`, `sync`, `hashing`, `notify`, `presence`, `services`, `sealing`.

pub mod api;
pub mod backends;
pub mod blobs;
pub mod caller;
pub mod catalog;
pub mod config;
pub mod gpu_samples;
pub mod handle;
pub mod hashing;
pub mod hosts;
pub mod http;
pub mod lifecycle;
pub mod logs;
pub mod loops;
pub mod notify;
pub mod ops;
pub mod presence;
pub mod replica_rules;
pub mod rotate;
pub mod scheduler;
pub mod sealing;
pub mod services;
mod startup;
pub mod store;
pub mod sync;

pub use startup::run;
