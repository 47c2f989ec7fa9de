//! Bottom layer. Pure placement: (pending jobs, fleets with their instances and block usage, backend offers,
//! now) -> decisions, plus the fleet-maintenance and retry rules (SPEC sections 4 and 5).
//!
//! No I/O and no clock: the caller passes everything in (`now` included) and applies the
//! decisions. The parts:
//! - [`schedule`] / [`schedule_with`] (`placement`, `replicas`, on the state of `pass`): jobs by priority (high first),
//!   then oldest first; each to the cheapest idle share of an instance in the best fleet, else a
//!   new instance from the cheapest backend offer, else it waits for a busy instance or fails;
//! - `terms`: how a run's profile and a fleet's profile combine into one offer request;
//! - `shares`: instance shapes, block shares and GPU pinning; `fingerprint`: the fast hashing
//!   of the pass's interning tables;
//! - `offer_sources`: the [`OfferSource`] of backend offers, and [`pool_offers`]; `backend`: how a
//!   pass asks for them once per distinct request;
//! - `messages`: the human reasons for waiting and failing;
//! - `fleet_plan`: [`plan_fleet`], what a fleet's instances need (keep `nodes.min`, trim, timeouts);
//! - `retry`: [`retry_delay`] and [`retry_decision`] for resubmitting failed runs.

mod backend;
mod fingerprint;
mod fleet_plan;
mod messages;
mod offer_sources;
mod pass;
mod placement;
mod replicas;
mod retry;
mod shares;
mod terms;

pub use fleet_plan::{
    plan_fleet, FleetAction, InstanceTerminationReason, PROVISIONING_TIMEOUT_SECS,
    UNREACHABLE_TERMINATION_SECS,
};
pub use offer_sources::{pool_offers, NoBackendOffers, OfferSource, PerFleetOffers, StaticOffers};
pub use placement::{schedule, schedule_with, MAX_PROVISION_OFFERS};
pub use retry::{retry_decision, retry_delay, retry_event, RetryDecision, RETRY_DELAYS_SECS};
pub use shares::{new_instance_gpus, total_blocks};
pub use terms::{backend_requirements, JobTerms};

use flotilla_protocol::config::{FleetConfig, ResourcesSpec};
use flotilla_protocol::model::{
    HostSoftware, InstanceResources, InstanceStatus, JobTerminationReason, Offer,
};
use flotilla_protocol::Timestamp;
use std::sync::Arc;

/// One job of one replica of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub run_id: u64,
    pub replica_num: u32,
    pub job_num: u32,
}

/// A job waiting to be placed, with everything about its run that placement looks at.
#[derive(Debug, Clone, Default)]
pub struct PendingJob {
    pub key: JobKey,
    /// `run/replica/job`, for messages.
    pub label: String,
    pub priority: u32,
    pub submitted_at: Timestamp,
    pub requirements: ResourcesSpec,
    /// The run's `fleets:`; `None` = any fleet.
    pub fleets: Option<Vec<String>>,
    /// The run's `max_price` ($/h); `None` = any price.
    pub max_price: Option<f64>,
    /// How many jobs (nodes) the job's replica has; 0 or 1 = a single-node job. The jobs of a
    /// multi-node replica are placed together, in one `placement: cluster` fleet.
    pub nodes: u32,
    /// For a job other than the master (`job_num` 0) of a multi-node replica whose master was
    /// placed earlier: the master's fleet. `None` while the master is not placed.
    pub master_fleet: Option<String>,
    /// The rest of the run's profile that steers placement (creation and spot policies, where).
    pub terms: JobTerms,
}

/// A machine of a fleet, with what jobs hold on it now.
#[derive(Debug, Clone)]
pub struct InstanceSlot {
    pub id: u64,
    pub name: String,
    pub status: InstanceStatus,
    pub unreachable: bool,
    pub resources: InstanceResources,
    pub total_blocks: u32,
    pub busy_blocks: u32,
    /// GPU indices held by running jobs.
    pub busy_gpus: Vec<u32>,
    /// $/h for the whole machine.
    pub price: f64,
    pub backend: String,
    pub region: String,
    /// A spot (interruptible) machine.
    pub spot: bool,
    /// Failing its health checks: takes no new jobs.
    pub unhealthy: bool,
    pub created_at: Timestamp,
    /// Since when no job holds a block of it; `None` = unknown (then `created_at` counts).
    pub idle_since: Option<Timestamp>,
    /// Since when it has not answered (with `unreachable`).
    pub unreachable_since: Option<Timestamp>,
    /// The idle limit of the run that created it (seconds); the fleet's `idle_duration` applies
    /// when it is lower or when this is `None`.
    pub idle_duration: Option<u64>,
    /// What the host runs beyond its resources (Docker, uv).
    pub software: HostSoftware,
}

impl Default for InstanceSlot {
    /// An idle, reachable, healthy, empty machine of one block, free of charge.
    fn default() -> Self {
        InstanceSlot {
            id: 0,
            name: String::new(),
            status: InstanceStatus::Idle,
            unreachable: false,
            resources: InstanceResources {
                cpus: 0,
                cpu_arch: flotilla_protocol::config::CpuArch::X86,
                memory_gb: 0.0,
                disk_gb: None,
                gpus: Vec::new(),
            },
            total_blocks: 1,
            busy_blocks: 0,
            busy_gpus: Vec::new(),
            price: 0.0,
            backend: String::new(),
            region: String::new(),
            spot: false,
            unhealthy: false,
            created_at: Timestamp::default(),
            idle_since: None,
            unreachable_since: None,
            idle_duration: None,
            software: HostSoftware::default(),
        }
    }
}

/// A fleet as placement sees it.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    pub name: String,
    pub instances: Vec<InstanceSlot>,
    /// The fleet's configuration. `None` = the built-in local fleet: existing hosts only,
    /// nothing provisioned, no limits (like an SSH fleet).
    pub config: Option<FleetConfig>,
    /// Being deleted: nothing new is placed or provisioned in it.
    pub terminating: bool,
}

/// A job goes onto free blocks of an existing instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub key: JobKey,
    pub fleet: String,
    pub instance_id: u64,
    pub instance: String,
    pub blocks: u32,
    /// GPU indices pinned to the job (never given to another job while it holds them).
    pub gpus: Vec<u32>,
    /// The job's share of the instance's hourly price.
    pub price: f64,
}

/// A job gets a new instance in `fleet`, created from a backend offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioning {
    pub key: JobKey,
    pub fleet: String,
    /// The cheapest acceptable backend offer. Like every offer here, `fleet` is set and
    /// `blocks` / `total_blocks` say the job's share of the new instance.
    pub offer: Offer,
    /// The next cheapest offers, in order, to try when creating from `offer` fails
    /// ([`MAX_PROVISION_OFFERS`] with `offer`, at most). Shared by the decisions of a pass
    /// that provision from the same offers.
    pub fallback_offers: Arc<[Offer]>,
    /// The job's blocks on the new instance from `offer`, of `total_blocks`.
    pub blocks: u32,
    pub total_blocks: u32,
    /// GPUs pinned to the job on the new instance from `offer` (see [`new_instance_gpus`] for
    /// a fallback offer).
    pub gpus: Vec<u32>,
    /// Seconds the new instance may stay idle: the lower of the run's and the fleet's
    /// `idle_duration`; `None` = forever.
    pub idle_duration: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Place(Placement),
    /// Create an instance for the job (the instances loop provisions it, then the job runs).
    Provision(Box<Provisioning>),
    /// Something in a fleet could take the job once it is free.
    Wait {
        key: JobKey,
        reason: String,
    },
    Fail {
        key: JobKey,
        reason: JobTerminationReason,
        message: String,
    },
}

impl Decision {
    /// The job the decision is about.
    pub fn key(&self) -> JobKey {
        match self {
            Decision::Place(p) => p.key,
            Decision::Provision(p) => p.key,
            Decision::Wait { key, .. } | Decision::Fail { key, .. } => *key,
        }
    }
}

impl InstanceSlot {
    /// Running or idle, reachable and healthy: may take a job.
    pub fn usable(&self) -> bool {
        matches!(self.status, InstanceStatus::Idle | InstanceStatus::Busy)
            && !self.unreachable
            && !self.unhealthy
    }

    /// Not on its way out: counts against `nodes.min` / `nodes.max`.
    pub fn active(&self) -> bool {
        matches!(
            self.status,
            InstanceStatus::Pending
                | InstanceStatus::Provisioning
                | InstanceStatus::Idle
                | InstanceStatus::Busy
        )
    }

    /// The smallest number of blocks whose share of this instance satisfies `req`,
    /// looking at `available` blocks.
    pub fn blocks_for(&self, req: &ResourcesSpec, available: u32) -> Option<u32> {
        shares::smallest_share(&self.resources, self.total_blocks.max(1), req, available)
    }
}

impl FleetView {
    /// Existing hosts only (an SSH fleet, or the built-in local fleet): never provisions,
    /// never terminates its machines.
    pub fn is_host_fleet(&self) -> bool {
        self.config
            .as_ref()
            .is_none_or(|c| c.ssh_config.is_some() || c.nodes.is_none())
    }
}
