//! flotilla-protocol: the shared language of the daemon and its clients.
//!
//! `config` turns dstack YAML into typed specs, `model` holds what the daemon manages,
//! `rpc` the JSON-RPC messages of the socket, `framing` the line codec, `client` an async client.

pub mod base64;
pub mod client;
pub mod config;
pub mod framing;
pub mod model;
pub mod paths;
pub mod rpc;
pub mod shell;
pub mod time;

pub use time::Timestamp;

/// The version of this build (daemon and CLI report it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
