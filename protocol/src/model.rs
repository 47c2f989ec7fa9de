//! The things flotilla manages, as both sides see them: runs, jobs, fleets, instances, offers, events.

use crate::config::{CpuArch, FleetConfig, GpuVendor, RunConfiguration};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }
        impl $name {
            pub fn as_str(self) -> &'static str { match self { $(Self::$variant => $text),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// SPEC section 4: `pending -> submitted -> provisioning -> running -> terminating -> terminated | failed | done`.
    RunStatus {
        Pending = "pending",
        Submitted = "submitted",
        Provisioning = "provisioning",
        Running = "running",
        Terminating = "terminating",
        Terminated = "terminated",
        Failed = "failed",
        Done = "done",
    }
);

impl RunStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Terminated | Self::Failed | Self::Done)
    }
}

string_enum!(
    RunTerminationReason {
        AllJobsDone = "all_jobs_done",
        JobFailed = "job_failed",
        RetryLimitExceeded = "retry_limit_exceeded",
        ServerError = "server_error",
        StoppedByUser = "stopped_by_user",
        AbortedByUser = "aborted_by_user",
        MaxDurationExceeded = "max_duration_exceeded",
    }
);

string_enum!(
    /// SPEC section 4: `submitted -> provisioning -> pulling -> running -> terminating -> terminated | aborted | failed | done`.
    JobStatus {
        Submitted = "submitted",
        Provisioning = "provisioning",
        Pulling = "pulling",
        Running = "running",
        Terminating = "terminating",
        Terminated = "terminated",
        Aborted = "aborted",
        Failed = "failed",
        Done = "done",
    }
);

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Terminated | Self::Aborted | Self::Failed | Self::Done
        )
    }
    /// Started on a host (a process may exist there).
    pub fn is_on_host(self) -> bool {
        matches!(self, Self::Pulling | Self::Running | Self::Terminating)
    }
}

string_enum!(
    JobTerminationReason {
        FailedToStartDueToNoCapacity = "failed_to_start_due_to_no_capacity",
        InterruptedByNoCapacity = "interrupted_by_no_capacity",
        InstanceUnreachable = "instance_unreachable",
        WaitingInstanceLimitExceeded = "waiting_instance_limit_exceeded",
        ContainerExitedWithError = "container_exited_with_error",
        CreatingContainerError = "creating_container_error",
        DoneByRunner = "done_by_runner",
        TerminatedByUser = "terminated_by_user",
        AbortedByUser = "aborted_by_user",
        MaxDurationExceeded = "max_duration_exceeded",
        InactivityDurationExceeded = "inactivity_duration_exceeded",
        ScaledDown = "scaled_down",
        TerminatedDueToUtilizationPolicy = "terminated_due_to_utilization_policy",
        VolumeError = "volume_error",
        TerminatedByServer = "terminated_by_server",
        ExecutorError = "executor_error",
        LogStorageFailed = "log_storage_failed",
        ExitCodeStorageFailed = "exit_code_storage_failed",
    }
);

string_enum!(
    /// SPEC section 4: `pending -> provisioning -> idle <-> busy -> terminating -> terminated`.
    InstanceStatus {
        Pending = "pending",
        Provisioning = "provisioning",
        Idle = "idle",
        Busy = "busy",
        Terminating = "terminating",
        Terminated = "terminated",
        Failed = "failed",
    }
);

string_enum!(
    /// SPEC section 4: `submitted -> active -> terminating -> terminated | failed`.
    FleetStatus {
        Submitted = "submitted",
        Active = "active",
        Terminating = "terminating",
        Terminated = "terminated",
        Failed = "failed",
    }
);

string_enum!(
    /// SPEC section 3: whether an offer can be taken now.
    Availability {
        Available = "available",
        Idle = "idle",
        Busy = "busy",
        NotAvailable = "not_available",
        NoQuota = "no_quota",
    }
);

impl Availability {
    pub fn is_available(self) -> bool {
        matches!(self, Self::Available | Self::Idle)
    }
}

/// One GPU of a machine, with its catalog short name (`H100`, `A100`, `RTX4090`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub memory_gb: f64,
    #[serde(default = "default_vendor")]
    pub vendor: GpuVendor,
}

fn default_vendor() -> GpuVendor {
    GpuVendor::Nvidia
}

/// What one machine (or one offer) has: exact values, not ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceResources {
    pub cpus: u32,
    #[serde(default = "default_arch")]
    pub cpu_arch: CpuArch,
    pub memory_gb: f64,
    /// `None` when the catalog does not state a disk size (the disk filter then does not apply).
    pub disk_gb: Option<f64>,
    pub gpus: Vec<Gpu>,
}

fn default_arch() -> CpuArch {
    CpuArch::X86
}

impl InstanceResources {
    /// The share of this machine that `blocks` of `total_blocks` equal blocks give.
    pub fn share(&self, blocks: u32, total_blocks: u32) -> InstanceResources {
        if total_blocks <= 1 || blocks >= total_blocks {
            return self.clone();
        }
        let frac = f64::from(blocks) / f64::from(total_blocks);
        let gpus_per_block = self.gpus.len() as u32 / total_blocks;
        InstanceResources {
            cpus: (self.cpus / total_blocks) * blocks,
            cpu_arch: self.cpu_arch,
            memory_gb: self.memory_gb * frac,
            disk_gb: self.disk_gb.map(|d| d * frac),
            gpus: self
                .gpus
                .iter()
                .take((gpus_per_block * blocks) as usize)
                .cloned()
                .collect(),
        }
    }

    /// `cpu=8 mem=64GB disk=100GB gpu=A100:80GB:1`, as in SPEC section 3.
    pub fn summary(&self) -> String {
        let mut s = format!("cpu={} mem={}GB", self.cpus, fmt_gb(self.memory_gb));
        if let Some(d) = self.disk_gb {
            s.push_str(&format!(" disk={}GB", fmt_gb(d)));
        }
        if let Some(g) = self.gpus.first() {
            s.push_str(&format!(
                " gpu={}:{}GB:{}",
                g.name,
                fmt_gb(g.memory_gb),
                self.gpus.len()
            ));
        }
        s
    }
}

/// A size in GB without a trailing `.0`, rounded to one decimal.
pub fn fmt_gb(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// One way to run a job: a backend's instance type, or an instance already in a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub backend: String,
    pub region: String,
    pub instance_type: String,
    /// Exact values in the normalized resources shape (min == max).
    pub resources: crate::config::ResourcesSpec,
    pub price: f64,
    pub spot: bool,
    pub availability: Availability,
    /// For pool offers: the fleet and instance that would take the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For pool offers on shared instances: how many blocks the job would take, of how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_blocks: Option<u32>,
}

/// One attempt at running a job. A job keeps all its submissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSubmission {
    pub id: u64,
    pub submission_num: u32,
    pub status: JobStatus,
    pub termination_reason: Option<JobTerminationReason>,
    pub termination_message: Option<String>,
    pub exit_code: Option<i32>,
    pub instance: Option<String>,
    pub instance_id: Option<u64>,
    pub fleet: Option<String>,
    /// Indices of the GPUs pinned to this job on its instance.
    pub gpus: Vec<u32>,
    pub blocks: u32,
    /// The job's share of its instance's hourly price, once placed.
    #[serde(default)]
    pub price: Option<f64>,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Why the job waits, while it waits (`no fleet has a free A100 block: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
    /// Where the job lives on its host (pid, log, exit code files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_dir: Option<String>,
    /// A resubmission after a retryable failure waits until then (retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    /// Set when a stop was asked: when, whether it is an abort, and when SIGKILL follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopRequest>,
    /// Where a container job's ports are published on its host, once it runs: the daemon
    /// reaches port `container` at `127.0.0.1:host` there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// A service replica's readiness while it runs: its `probes` passed `ready_after` times in a
    /// row (or, without probes, its `port` accepts connections). `None`: not a running replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// A container's port published on its host's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container: u16,
    pub host: u16,
}

impl JobSubmission {
    /// What this submission has cost at `now`: its share's price per hour times the time it
    /// ran (from its start to its end, or to `now` while it runs). Dollars.
    pub fn cost(&self, now: Timestamp) -> f64 {
        match (self.price, self.started_at) {
            (Some(price), Some(start)) => {
                let end = self.finished_at.unwrap_or(now);
                price * start.secs_until(end) as f64 / 3600.0
            }
            _ => 0.0,
        }
    }

    /// A fresh submission of a job, waiting to be placed.
    pub fn submitted(id: u64, submission_num: u32, now: Timestamp) -> Self {
        JobSubmission {
            id,
            submission_num,
            status: JobStatus::Submitted,
            termination_reason: None,
            termination_message: None,
            exit_code: None,
            instance: None,
            instance_id: None,
            fleet: None,
            gpus: Vec::new(),
            blocks: 0,
            price: None,
            submitted_at: now,
            started_at: None,
            finished_at: None,
            waiting_reason: None,
            job_dir: None,
            retry_at: None,
            stop: None,
            ports: Vec::new(),
            ready: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRequest {
    pub requested_at: Timestamp,
    pub abort: bool,
    /// When the job's process group gets SIGKILL; `None` = never (stop_duration off).
    pub kill_at: Option<Timestamp>,
    pub reason: JobTerminationReason,
    /// The signal to the host has been sent.
    #[serde(default)]
    pub signalled: bool,
    #[serde(default)]
    pub killed: bool,
}

/// A job of a run: one node of one replica. Its current submission's fields are on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub replica_num: u32,
    pub job_num: u32,
    pub job_name: String,
    /// The replica group of a service's job (`0` when `replicas` is not a list of groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_group: Option<String>,
    /// The run's deployment this job's configuration belongs to; a job behind the run's
    /// `deployment_num` is replaced by a rolling update.
    #[serde(default)]
    pub deployment_num: u32,
    #[serde(flatten)]
    pub current: JobSubmission,
    /// Earlier submissions of this job, oldest first.
    #[serde(default)]
    pub previous_submissions: Vec<JobSubmission>,
}

/// A submitted configuration (task, service, dev environment) and its jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    pub name: String,
    pub user: String,
    pub uid: u32,
    pub status: RunStatus,
    pub termination_reason: Option<RunTerminationReason>,
    pub status_message: Option<String>,
    pub submitted_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub configuration_type: String,
    pub configuration_path: Option<String>,
    pub configuration: RunConfiguration,
    /// The caller's environment values for bare `KEY` entries of `env`.
    #[serde(default)]
    pub caller_env: std::collections::BTreeMap<String, String>,
    /// When the current retry window began (first retryable failure), for `retry.duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_window_started_at: Option<Timestamp>,
    /// A run with `schedule`: its next start (dstack's `next_triggered_at`; while it runs, the
    /// start it runs for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_triggered_at: Option<Timestamp>,
    /// The uploaded archives of its `files` and local `repos`, put in place before each job's
    /// commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<RunArchive>,
    /// Bumped by each update of a running service's configuration (a rolling update).
    #[serde(default)]
    pub deployment_num: u32,
    /// A service's desired replica count per replica group, as its scaler last decided.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub desired_replicas: std::collections::BTreeMap<String, u32>,
    /// When a service last scaled up or down (for `scale_up_delay` / `scale_down_delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scaled_at: Option<Timestamp>,
    #[serde(default)]
    pub jobs: Vec<Job>,
    /// A service's endpoint, filled in by the daemon when it answers (never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceEndpoint>,
    /// A multi-node run's SSH key pair, with which its nodes reach each other (`ssh NODE_IP`,
    /// `mpirun --hostfile`): the private key sealed with the daemon's key, never sent to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_key: Option<ClusterKey>,
}

/// The key pair the nodes of a multi-node run log in to each other with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterKey {
    /// OpenSSH public key, authorized on the run's hosts while its jobs run there.
    pub public: String,
    /// OpenSSH private key, sealed (empty in what clients receive).
    pub private_sealed: String,
}

impl Run {
    /// What the run has cost at `now`: every submission of every job (dollars).
    pub fn cost(&self, now: Timestamp) -> f64 {
        self.jobs
            .iter()
            .flat_map(|j| std::iter::once(&j.current).chain(j.previous_submissions.iter()))
            .map(|s| s.cost(now))
            .sum()
    }

    /// What the run is spending now: the price per hour of its unfinished jobs' shares.
    pub fn price_per_hour(&self) -> f64 {
        self.jobs
            .iter()
            .filter(|j| !j.current.status.is_finished())
            .filter_map(|j| j.current.price)
            .sum()
    }

    /// Job `job` of replica `replica` (the one place a job is looked up by its numbers).
    pub fn job(&self, replica: u32, job: u32) -> Option<&Job> {
        self.jobs
            .iter()
            .find(|j| j.replica_num == replica && j.job_num == job)
    }

    /// Job `job` of replica `replica`, to change it.
    pub fn job_mut(&mut self, replica: u32, job: u32) -> Option<&mut Job> {
        self.jobs
            .iter_mut()
            .find(|j| j.replica_num == replica && j.job_num == job)
    }
}

/// A machine in a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: u64,
    pub name: String,
    pub fleet: String,
    pub instance_num: u32,
    pub status: InstanceStatus,
    pub unreachable: bool,
    pub termination_reason: Option<String>,
    pub backend: String,
    pub region: String,
    pub hostname: Option<String>,
    pub price: f64,
    pub resources: InstanceResources,
    pub total_blocks: u32,
    pub busy_blocks: u32,
    pub created_at: Timestamp,
    /// The last error seen while reaching or provisioning this machine.
    pub error: Option<String>,
    /// How to reach a host of an SSH fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshEndpoint>,
    /// The host key seen at first contact (OpenSSH format); a different key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// The backend's own id of a machine it created (None for SSH fleet hosts and this machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    /// Where the supervisor and jobs live on the host (SSH hosts; learned at provisioning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_root: Option<String>,
    /// Since when the host has not answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<Timestamp>,
    /// The host key of the `proxy_jump` host in front of this one, pinned at first contact like
    /// `host_key`; a different key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump_host_key: Option<String>,
    /// Jobs given up while the host was unreachable that may still run there: stopped when the
    /// host is back; their blocks and GPUs stay busy until they are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<OrphanJob>,
    /// What the host offers jobs beyond its resources (Docker, uv), from its inventory.
    #[serde(default)]
    pub software: HostSoftware,
}

/// What a host offers jobs beyond its resources: a running Docker engine (jobs with `image`,
/// `python`, `nvcc` or `docker: true`) and `uv` (jobs with `python` on a host without Docker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSoftware {
    pub docker: bool,
    pub uv: bool,
}

/// A job submission that the daemon ended while its host was away, and that may still run there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrphanJob {
    pub submission: u64,
    /// `run/replica/job`, for messages.
    pub job: String,
    pub job_dir: String,
    pub blocks: u32,
    pub gpus: Vec<u32>,
}

/// Where and as whom to connect over SSH (a fleet's `ssh_config` resolved for one host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshEndpoint {
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_jump: Option<Box<SshEndpoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_ip: Option<String>,
}

impl SshEndpoint {
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.hostname, self.port)
    }
}

/// A user of the daemon (identified by uid), with the SSH key pair the daemon made for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub name: String,
    pub admin: bool,
    pub ssh_public_key: String,
    /// Only ever sent to the user it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_private_key: Option<String>,
    pub created_at: Timestamp,
    /// Public keys a refresh replaced (the newest last, at most 20): a host that was down at
    /// the refresh may still hold them, and loses them when it is next provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_ssh_keys: Vec<String>,
    /// The bearer token for services' HTTP endpoints (`Authorization: Bearer TOKEN`); only ever
    /// sent to the user it belongs to (the store keeps it sealed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token's SHA-256 (hex), what the daemon looks a request's token up by; kept in the
    /// store only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
}

/// Where a service answers over HTTP (dstack's `service` of a run): its URL and, with `model`
/// set, the model on the OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    /// `http://ADDR/proxy/services/main/RUN/`; empty while the HTTP server is off or down.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ServiceModel>,
    /// Why there is no URL (the daemon's HTTP endpoint is off or down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A service's model on the OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceModel {
    pub name: String,
    /// `http://ADDR/proxy/models/main/`: the base URL an OpenAI client takes.
    pub base_url: String,
    /// `chat` (dstack's only model type).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A set of machines that runs can be placed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub id: u64,
    pub name: String,
    pub status: FleetStatus,
    pub user: String,
    pub created_at: Timestamp,
    /// `None` for the built-in `local` fleet.
    pub configuration: Option<FleetConfig>,
    #[serde(default)]
    pub instances: Vec<Instance>,
}

/// One state change, as `events.watch` streams it and `flotilla event` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time: Timestamp,
    /// What changed: a run, a job, an instance or a fleet.
    pub kind: EventKind,
    /// `hello-1`, `hello-1/0/0`, `local/local-0`, ...
    pub resource: String,
    pub old_status: Option<String>,
    pub new_status: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// What an [`Event`] is about; on the wire the lowercase name (`"run"`, `"job"`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    Run,
    Job,
    Instance,
    Fleet,
    /// A kind this build does not know (sent by a newer daemon), kept as it was written.
    Other(String),
}

impl EventKind {
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Run => "run",
            EventKind::Job => "job",
            EventKind::Instance => "instance",
            EventKind::Fleet => "fleet",
            EventKind::Other(s) => s,
        }
    }
}

impl From<&str> for EventKind {
    fn from(s: &str) -> Self {
        match s {
            "run" => EventKind::Run,
            "job" => EventKind::Job,
            "instance" => EventKind::Instance,
            "fleet" => EventKind::Fleet,
            other => EventKind::Other(other.to_string()),
        }
    }
}

/// Reads as its wire name, so that views can show and search it like text.
impl std::ops::Deref for EventKind {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(EventKind::from(&*s))
    }
}

/// The thing an [`Event`] is about, read from its `kind` and `resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSubject {
    Run {
        run: String,
    },
    /// `run/replica/job`.
    Job {
        run: String,
        replica: u32,
        job: u32,
    },
    /// `fleet/instance`.
    Instance {
        fleet: String,
        instance: String,
    },
    Fleet {
        fleet: String,
    },
}

impl Event {
    /// The event's subject; `None` for a kind this build does not know or a malformed resource.
    pub fn subject(&self) -> Option<EventSubject> {
        let r = self.resource.as_str();
        Some(match self.kind {
            EventKind::Run => EventSubject::Run { run: r.to_string() },
            EventKind::Job => {
                let mut parts = r.rsplitn(3, '/');
                let job = parts.next()?.parse().ok()?;
                let replica = parts.next()?.parse().ok()?;
                let run = parts.next()?.to_string();
                EventSubject::Job { run, replica, job }
            }
            EventKind::Instance => {
                let (fleet, instance) = r.split_once('/')?;
                EventSubject::Instance {
                    fleet: fleet.to_string(),
                    instance: instance.to_string(),
                }
            }
            EventKind::Fleet => EventSubject::Fleet {
                fleet: r.to_string(),
            },
            EventKind::Other(_) => return None,
        })
    }
}

/// A secret of the daemon (dstack's project secrets), as the store keeps it: the value only
/// sealed with the daemon's key (`sealed:v1:...`), never in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    /// The value sealed with the daemon's key.
    pub sealed_value: String,
    /// Who set it last (user name and uid).
    pub set_by: String,
    pub set_by_uid: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which field of a run an uploaded archive fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveField {
    Files,
    Repos,
}

impl fmt::Display for ArchiveField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveField::Files => "files",
            ArchiveField::Repos => "repos",
        })
    }
}

/// An uploaded archive (a tar, see `file.upload`) that fills `files[index]` or `repos[index]`
/// of a run, named by the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunArchive {
    pub field: ArchiveField,
    pub index: usize,
    /// Lowercase hex SHA-256 of the archive.
    pub hash: String,
    /// Its size in bytes (filled in by the daemon).
    #[serde(default)]
    pub size: u64,
}

/// An archive the daemon keeps (its bytes in a file under the data dir, named by hash), with
/// the users who uploaded it: only they may name it in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub hash: String,
    pub size: u64,
    pub owners: Vec<u32>,
    pub created_at: Timestamp,
}
