//! The params and results of the socket methods, and the items of its streams.

use crate::config::{ConfigError, Range};
use crate::model::{Event, Offer, Run, RunArchive};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloParams {
    pub protocol: String,
    #[serde(default)]
    pub client: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloResult {
    pub protocol: String,
    pub daemon_version: String,
    pub user: String,
    pub uid: u32,
    pub admin: bool,
}

/// Params of `run.plan` and `run.apply`: the configuration file's text, parsed by the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunApplyParams {
    /// The YAML text of a task, service or dev-environment file.
    pub configuration: String,
    /// Shown in errors (`task.yml:7:5: ...`) and kept with the run.
    #[serde(default)]
    pub file_name: Option<String>,
    /// Values for the bare `KEY` entries of `env`, from the caller's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Overrides the configuration's `name`.
    #[serde(default)]
    pub name: Option<String>,
    /// The archive uploaded (`file.upload`) for each `files` entry and local `repos` entry, by
    /// hash; `run.apply` needs one for each, `run.plan` none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<RunArchive>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    pub replica_num: u32,
    pub job_num: u32,
    pub job_name: String,
    pub offers: Vec<Offer>,
    pub total_offers: usize,
    pub max_price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub run_name: String,
    pub configuration_type: String,
    pub user: String,
    /// The run an apply would replace, when one of that name exists.
    pub current_run_status: Option<String>,
    pub jobs: Vec<JobPlan>,
    /// When a run of that name is still active: what re-applying changes in it (dstack's
    /// "Detected changes that can / cannot be updated in-place").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<RunUpdate>,
}

/// What applying a configuration to the active run of the same name changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunUpdate {
    /// The fields written differently from the running configuration, in field order.
    pub changes: Vec<FieldChange>,
    /// `None`: the run is updated in place (a service's changed replicas start beside the old
    /// ones, a rolling update); else why it cannot be (apply refuses it).
    pub refusal: Option<String>,
}

/// One changed field: its value in the running configuration and in the new one (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunListParams {
    /// Include finished runs (default: unfinished runs, or the last run when none is unfinished).
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunNameParams {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStopParams {
    pub name: String,
    /// Kill at once instead of SIGTERM and the `stop_duration` grace.
    #[serde(default)]
    pub abort: bool,
}

/// Which job's log: `run` plus optional replica and job numbers (default 0/0) and submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogTarget {
    pub run: String,
    #[serde(default)]
    pub replica: u32,
    #[serde(default)]
    pub job: u32,
    /// Submission number; default the latest.
    #[serde(default)]
    pub submission: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsReadParams {
    #[serde(flatten)]
    pub target: LogTarget,
    #[serde(default)]
    pub offset: u64,
    /// At most this many bytes (default and cap 1 MiB).
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsFollowParams {
    #[serde(flatten)]
    pub target: LogTarget,
    /// Start here (default 0: the whole log, then live).
    #[serde(default)]
    pub offset: u64,
    /// The follower is an attached client (`flotilla attach`): while the stream lasts, a dev
    /// environment is not inactive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach: bool,
}

/// Bytes of a log. `text` when the bytes are UTF-8, otherwise `b64` (standard base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
}

impl LogChunk {
    pub fn from_bytes(offset: u64, bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => LogChunk {
                offset,
                text: Some(s.to_string()),
                b64: None,
            },
            Err(_) => LogChunk {
                offset,
                text: None,
                b64: Some(crate::base64::encode(bytes)),
            },
        }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.text, &self.b64) {
            (Some(t), _) => Ok(t.as_bytes().to_vec()),
            (None, Some(b)) => crate::base64::decode(b),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsReadResult {
    #[serde(flatten)]
    pub chunk: LogChunk,
    pub next_offset: u64,
    /// The log's size now.
    pub size: u64,
    /// The job has ended and nothing more will be written.
    pub complete: bool,
}

/// The final response of `logs.follow`: how the job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsFollowEnd {
    pub next_offset: u64,
    pub job_status: String,
    pub exit_code: Option<i32>,
    pub termination_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EventsParams {
    /// Only events after this sequence number (default: from now on for `events.watch`,
    /// the last 100 for `event.list`).
    #[serde(default)]
    pub since: Option<u64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// Params of `offer.list`; the strings use the resources grammar of SPEC section 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OfferQuery {
    #[serde(default)]
    pub gpu: Option<String>,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub disk: Option<String>,
    /// `spot`, `on-demand` or `auto` (default: both, as `auto`).
    #[serde(default)]
    pub spot_policy: Option<String>,
    #[serde(default)]
    pub max_price: Option<f64>,
    #[serde(default)]
    pub backends: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    /// At most this many offers in the answer (default 50); `total` counts all matches.
    #[serde(default)]
    pub max_offers: Option<usize>,
    /// `gpu`, optionally with `backend`, `region`, `count`.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// One row of the group-by view: `GPU "H100:80GB:1..8" | SPOT | $/GPU | BACKENDS | REGIONS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferGroup {
    pub gpu: String,
    pub spot: Vec<String>,
    pub price_per_gpu: Range<f64>,
    pub backends: Vec<String>,
    pub regions: Vec<String>,
    pub count: Range<u32>,
    pub offers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferList {
    pub offers: Vec<Offer>,
    pub total: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<OfferGroup>>,
    /// Catalog problems the user should know of (offline, stale cache, skipped rows).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub protocol: String,
    pub pid: u32,
    pub socket: String,
    pub data_dir: String,
    pub started_at: Timestamp,
    pub uptime_secs: u64,
    pub runs: usize,
    pub active_runs: usize,
    pub fleets: usize,
    pub instances: usize,
    /// The HTTP server in front of services.
    #[serde(default)]
    pub http: HttpStatus,
}

/// The HTTP server in front of services: where it serves, or why it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpStatus {
    /// The configured address (`off` when disabled).
    pub listen: String,
    /// The bound address while it serves (`127.0.0.1:3000`; the real port for port 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Why it does not serve (the address is taken, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The error data of `INVALID_CONFIGURATION`: every problem found in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigErrorData {
    pub errors: Vec<ConfigError>,
}

/// Result of `run.list`.
pub type RunList = Vec<Run>;

/// Params of `metrics.get`: one instance (`fleet/instance`), or the instance of a run's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetricsParams {
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub run: Option<String>,
    /// Only samples newer than this many seconds (default and most: 3600).
    #[serde(default)]
    pub window_secs: Option<u64>,
}

/// One GPU sample, as the supervisor's `metrics` verb reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub time: Timestamp,
    pub util_percent: f64,
    pub memory_used_gb: f64,
    pub memory_total_gb: f64,
}

/// The samples of one GPU of one instance, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSeries {
    pub instance: String,
    pub gpu: u32,
    pub samples: Vec<GpuSample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetricsResult {
    pub series: Vec<GpuSeries>,
}

/// Params of `fleet.apply`: a fleet file's YAML text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetApplyParams {
    pub configuration: String,
    #[serde(default)]
    pub file_name: Option<String>,
    /// The content of each `identity_file` the fleet names, keyed by the path as written, read
    /// by the CLI as its user: the daemon takes a key file only from a caller who can read it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identity_keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetNameParams {
    pub name: String,
}

/// Params of `user.refresh_ssh_key`: one's own key, or (admins) another user's by uid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RefreshKeyParams {
    #[serde(default)]
    pub uid: Option<u32>,
}

/// Params of `tunnel.open`: the host of a run's job. After the response, the connection carries
/// the raw bytes of a TCP stream to that host's SSH port (the daemon's route to it, `proxy_jump`
/// included), or with `port`, to that port of the job (what `attach` forwards). It must be the
/// only call on its connection after `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelParams {
    pub run: String,
    #[serde(default)]
    pub replica: u32,
    #[serde(default)]
    pub job: u32,
    /// A port the job listens on (in its container, when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Where the tunnel leads, and what to check and where to go there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunnelInfo {
    pub instance: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// The host key pinned at first contact (OpenSSH format), for known_hosts.
    pub host_key: Option<String>,
    /// The job's working directory on the host.
    pub workdir: Option<String>,
}

/// What `gateway.open` answers before its connection becomes an SSH session with the daemon's
/// gateway into the job: the gateway's host key (OpenSSH format), to pin in `known_hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub host_key: String,
}

/// Params of the methods that take none: serialises to `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NoParams {}

/// Result of `run.delete` and `fleet.delete`: the name of what was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

/// Result of `daemon.stop`: the daemon has begun shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub stopping: bool,
}

/// One notification of `events.watch` (its `id` field, the stream's request id, is added on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventNotice {
    pub event: Event,
}

/// Params of `secret.set`: creates or replaces a secret (admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSetParams {
    /// 1-200 of `A-Z a-z 0-9 - _` (dstack's rule).
    pub name: String,
    /// At most 5000 characters (dstack's limit).
    pub value: String,
}

/// Params of `secret.get` and `secret.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretNameParams {
    pub name: String,
}

/// A secret as `secret.list`, `secret.set` and `secret.get` answer it: the value only from
/// `secret.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    pub set_by: String,
    pub set_by_uid: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Params of `backend.list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackendListParams {
    /// Ask each provider again whether the credentials work (else the last check is shown).
    #[serde(default)]
    pub check: bool,
}

/// One configured backend as `backend.list` shows it. Credentials are never included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub name: String,
    /// `pool`, `lambda`, `runpod`, `vastai`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The provider API in use (cloud backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// `valid`, `invalid`, or `unchecked` (not yet known: the check at start is still running).
    pub credentials: String,
    /// The provider's words when the credentials did not work (or could not be checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Instances of this backend in the store (any fleet, terminating ones included).
    pub instances: u32,
    /// What they cost now, in $/h.
    pub price_per_hour: f64,
    /// Machines carrying flotilla's name prefix that the daemon did not know at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<String>,
}

/// Params of `file.upload`: an archive (a tar of `files` or a repo) by its SHA-256 and size.
/// It must be the only call on its connection after `hello`. When the caller already uploaded
/// it, the answer comes at once (`present: true`); otherwise the daemon sends a
/// `file.upload.ready` notification, then reads exactly `size` raw bytes, then answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUploadParams {
    /// Lowercase hex SHA-256 of the bytes.
    pub hash: String,
    pub size: u64,
}

/// The `file.upload.ready` notification: send the bytes now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUploadReady {
    /// The daemon's limit per archive in bytes (0: none).
    pub limit: u64,
}

/// The answer of `file.upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUploadResult {
    pub hash: String,
    pub size: u64,
    /// The caller had uploaded it before: no bytes were sent.
    pub present: bool,
}
