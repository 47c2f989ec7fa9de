//! The human side of placement: why a job waits (`no fleet has a free A100 block:
//! gpu-box/gpu-box-0 2/2 busy`) and why it fails (`no fleets: ...`, `no offers: ...`, the two
//! openings users and scripts look for in a status message).

use super::{FleetView, PendingJob};
use flotilla_protocol::config::ResourcesSpec;

/// How many busy instances a waiting reason names before it counts the rest.
const NAMED_BUSY: usize = 3;
/// How many fleets a failure message names before it counts the rest.
const NAMED_FLEETS: usize = 5;

/// `a, b, c`, or `a, b, c, d, e and 7 more`.
fn fleet_list(list: &[String]) -> String {
    if list.len() <= NAMED_FLEETS {
        return list.join(", ");
    }
    format!(
        "{} and {} more",
        list[..NAMED_FLEETS].join(", "),
        list.len() - NAMED_FLEETS
    )
}

/// What kind of machine a requirement asks for, as a word before `block` or `instances`:
/// `A100 `, `A100/H100 `, `GPU `, `CPU ` or nothing.
fn kind(req: &ResourcesSpec) -> String {
    if req.is_cpu_only() {
        return "CPU ".to_string();
    }
    match &req.gpu.name {
        Some(names) if !names.is_empty() => format!("{} ", names.join("/")),
        _ if req.gpu.count.min.unwrap_or(0) > 0 => "GPU ".to_string(),
        _ => String::new(),
    }
}

/// An instance as messages name it: `fleet/instance` (`gpu-box/gpu-box-0`), as the e2e
/// tests and users' scripts read it.
pub(super) fn instance_label(fleet: &str, instance: &str) -> String {
    format!("{fleet}/{instance}")
}

/// Collects the busy instances a waiting job could use, naming the first few.
#[derive(Default)]
pub(super) struct BusyList {
    named: Vec<String>,
    more: usize,
}

impl BusyList {
    pub(super) fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    pub(super) fn push(&mut self, label: impl FnOnce() -> String, busy: u32, total: u32) {
        if self.named.len() < NAMED_BUSY {
            self.named.push(if busy == 0 {
                format!("{} idle", label())
            } else {
                format!("{} {busy}/{total} busy", label())
            });
        } else {
            self.more += 1;
        }
    }

    /// `no fleet has a free A100 block: box/box-0 2/2 busy, box/box-1 2/2 busy and 3 more`;
    /// for a replica of `nodes` > 1: `no cluster fleet has 4 free H100 instances: ...`.
    pub(super) fn reason(&self, req: &ResourcesSpec, nodes: u32) -> String {
        let wanted = if nodes > 1 {
            format!("no cluster fleet has {nodes} free {}instances", kind(req))
        } else {
            format!("no fleet has a free {}block", kind(req))
        };
        let mut text = format!("{wanted}: {}", self.named.join(", "));
        if self.more > 0 {
            text.push_str(&format!(" and {} more", self.more));
        }
        text
    }
}

/// The message when no fleet is a candidate at all: `no fleets: ...`.
pub(super) fn no_candidate_fleets(job: &PendingJob, fleets: &[FleetView], multi: bool) -> String {
    let named: Vec<&FleetView> = match &job.fleets {
        Some(names) => fleets.iter().filter(|f| names.contains(&f.name)).collect(),
        None => fleets.iter().collect(),
    };
    let detail = if let (Some(names), true) = (&job.fleets, named.is_empty()) {
        format!("none of {} exists", names.join(", "))
    } else if named.is_empty() {
        "create one with `flotilla apply -f fleet.yml`".to_string()
    } else if named.iter().all(|f| f.terminating) {
        "every fleet the run may use is being deleted".to_string()
    } else if multi {
        "a multi-node run needs a `placement: cluster` fleet".to_string()
    } else {
        "no fleet the run may use".to_string()
    };
    format!("no fleets: {detail}")
}

/// Why a job waits when the hosts that would fit lack what its environment needs:
/// `waiting for a host with a running Docker engine (the job runs in a container): local/local-0 has none`.
pub(super) fn lacking_software(job: &PendingJob, hosts: &[String]) -> String {
    let what = job.terms.host_need.describe();
    let (shown, more) = hosts.split_at(hosts.len().min(NAMED_BUSY));
    let mut list = shown.join(", ");
    if !more.is_empty() {
        list.push_str(&format!(" and {} more", more.len()));
    }
    let verb = if hosts.len() == 1 { "has" } else { "have" };
    format!(
        "waiting for a host with {what} (the job runs in a container or a Python environment): {list} {verb} none; start Docker there (or install uv for `python`): the daemon looks again every 6 health intervals (30 s by default)"
    )
}

/// The message when every candidate fleet is full for sure: `no fleets: no room in ...`.
pub(super) fn no_room(full: &[String]) -> String {
    format!("no fleets: no room in {}", fleet_list(full))
}

/// Why one fleet has no room, for [`no_room`]: `a (nodes.max 2, 2 busy)`.
pub(super) fn fleet_full(fleet: &str, max: Option<u32>, busy: u32, idle_blocks: u32) -> String {
    match max {
        Some(max) => format!("{fleet} (nodes.max {max}, {busy} busy)"),
        None => format!("{fleet} ({idle_blocks} idle blocks)"),
    }
}

/// Why new instances were no way out either, for [`no_offers`].
pub(super) enum NoNewInstance {
    /// Only fleets of existing hosts.
    HostsOnly,
    /// `creation_policy: reuse`.
    ReuseOnly,
    /// These fleets are at `nodes.max`; the others had no fitting backend offer.
    AtMax(Vec<String>),
}

/// The message when fleets exist but nothing fits: `no offers: ...`.
pub(super) fn no_offers(job: &PendingJob, fleets: &[String], why: NoNewInstance) -> String {
    let mut text = format!(
        "no offers: no instance in {} fits {}",
        fleet_list(fleets),
        job.requirements
    );
    if let Some(max) = job.max_price {
        text.push_str(&format!(" at ${max}/h or less"));
    }
    match why {
        NoNewInstance::HostsOnly => {}
        NoNewInstance::ReuseOnly => {
            text.push_str(" (creation_policy: reuse, so no new instance)");
        }
        NoNewInstance::AtMax(at_max) if !at_max.is_empty() => text.push_str(&format!(
            "; {} cannot grow (nodes.max reached)",
            fleet_list(&at_max)
        )),
        NoNewInstance::AtMax(_) => text.push_str(" and no backend offer does"),
    }
    text
}

/// Why a non-master job of a multi-node replica waits.
pub(super) fn waiting_for_master(job: &PendingJob) -> String {
    let master = match job.label.rsplit_once('/') {
        Some((replica, _)) => format!("{replica}/0"),
        None => format!("{}/{}/0", job.key.run_id, job.key.replica_num),
    };
    format!("waiting for the master job {master} to be placed")
}
