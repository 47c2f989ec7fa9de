//! Profile fields: where and how instances may be provisioned, retried and kept (runs and fleets).

use super::decode::{item, Decoder, Fields};
use super::duration::{decode_duration, decode_off_duration};
use super::yaml::{Kind, Node};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seconds a run may stay idle on a new instance, and a stop's grace, unless configured.
pub const DEFAULT_RUN_IDLE_DURATION: u64 = 300;
pub const DEFAULT_FLEET_IDLE_DURATION: u64 = 3 * 24 * 3600;
pub const DEFAULT_STOP_DURATION: u64 = 300;
pub const DEFAULT_RETRY_DURATION: u64 = 3600;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotPolicy {
    Spot,
    #[default]
    OnDemand,
    Auto,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreationPolicy {
    /// Only existing idle instances.
    Reuse,
    #[default]
    ReuseOrCreate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryEvent {
    NoCapacity,
    Interruption,
    Error,
}

impl RetryEvent {
    pub const ALL: [RetryEvent; 3] = [
        RetryEvent::NoCapacity,
        RetryEvent::Interruption,
        RetryEvent::Error,
    ];
}

/// When to resubmit a failed run, and for how long (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySpec {
    pub on_events: Vec<RetryEvent>,
    pub duration: u64,
}

/// Stop a run whose GPUs stay below `min_gpu_utilization` percent for `time_window` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtilizationPolicy {
    pub min_gpu_utilization: u32,
    pub time_window: u64,
}

/// Start the run at these times (cron expressions, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub cron: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartupOrder {
    Any,
    MasterFirst,
    WorkersFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopCriteria {
    AllDone,
    MasterDone,
}

/// One existing fleet instance a run may be placed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InstanceSelector {
    Name { name: String },
    Hostname { hostname: String },
    FleetInstance { fleet: String, instance: u32 },
}

/// Where a run's or a fleet's instances come from and how they are kept: the profile fields
/// that runs and fleets share, written once and flattened into both (`#[serde(flatten)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceProfile {
    pub backends: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    pub availability_zones: Option<Vec<String>>,
    pub instance_types: Option<Vec<String>>,
    pub reservation: Option<String>,
    pub spot_policy: SpotPolicy,
    pub retry: Option<RetrySpec>,
    /// $ per hour.
    pub max_price: Option<f64>,
    /// Seconds an instance may stay idle; `None` = forever.
    pub idle_duration: Option<u64>,
    pub tags: BTreeMap<String, String>,
    /// Backend-specific options, carried as written.
    pub backend_options: Option<serde_json::Value>,
}

impl InstanceProfile {
    /// What a file that sets none of these fields gets, with the kind's idle default.
    pub fn with_idle_default(idle_duration: u64) -> Self {
        InstanceProfile {
            backends: None,
            regions: None,
            availability_zones: None,
            instance_types: None,
            reservation: None,
            spot_policy: SpotPolicy::default(),
            retry: None,
            max_price: None,
            idle_duration: Some(idle_duration),
            tags: BTreeMap::new(),
            backend_options: None,
        }
    }
}

impl Default for InstanceProfile {
    /// A run's defaults.
    fn default() -> Self {
        InstanceProfile::with_idle_default(DEFAULT_RUN_IDLE_DURATION)
    }
}

/// The profile fields only runs have: how long a run may last, how it stops, and which existing
/// fleets and instances it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunPolicy {
    /// Seconds; `None` = no limit.
    pub max_duration: Option<u64>,
    /// Seconds of grace for a stop; `None` = wait forever.
    pub stop_duration: Option<u64>,
    pub creation_policy: CreationPolicy,
    pub utilization_policy: Option<UtilizationPolicy>,
    pub startup_order: Option<StartupOrder>,
    pub stop_criteria: Option<StopCriteria>,
    pub schedule: Option<Schedule>,
    pub fleets: Option<Vec<String>>,
    pub instances: Option<Vec<InstanceSelector>>,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            max_duration: None,
            stop_duration: Some(DEFAULT_STOP_DURATION),
            creation_policy: CreationPolicy::default(),
            utilization_policy: None,
            startup_order: None,
            stop_criteria: None,
            schedule: None,
            fleets: None,
            instances: None,
        }
    }
}

/// The profile fields of every kind that has them; a kind reads the ones its field list allows.
pub(crate) const PROFILE_FIELDS: &[&str] = &[
    "backends",
    "regions",
    "availability_zones",
    "instance_types",
    "reservation",
    "spot_policy",
    "retry",
    "max_duration",
    "stop_duration",
    "max_price",
    "creation_policy",
    "idle_duration",
    "utilization_policy",
    "startup_order",
    "stop_criteria",
    "schedule",
    "fleets",
    "instances",
    "tags",
    "backend_options",
];

/// Reads the profile fields present in `fields`; `idle_default` is the run's or the fleet's.
pub(crate) fn decode_profile(
    d: &mut Decoder<'_>,
    fields: &Fields<'_>,
    idle_default: u64,
) -> (InstanceProfile, RunPolicy) {
    let strings = |d: &mut Decoder<'_>, name: &str| fields.with(d, name, Decoder::strings);
    let backends = strings(d, "backends");
    let regions = strings(d, "regions");
    let availability_zones = strings(d, "availability_zones");
    let instance_types = strings(d, "instance_types");
    let reservation = fields.with(d, "reservation", Decoder::string);
    let spot_policy = fields
        .with(d, "spot_policy", decode_spot_policy)
        .unwrap_or_default();
    let retry = fields
        .get("retry")
        .and_then(|node| decode_retry(d, node, &fields.path_of("retry")));
    let off_duration =
        |d: &mut Decoder<'_>, name: &str, default: Option<u64>, minus_one: bool| match fields
            .get(name)
        {
            Some(node) => decode_off_duration(d, node, &fields.path_of(name), default, minus_one),
            None => default,
        };
    let max_duration = off_duration(d, "max_duration", None, false);
    let stop_duration = off_duration(d, "stop_duration", Some(DEFAULT_STOP_DURATION), false);
    let idle_duration = off_duration(d, "idle_duration", Some(idle_default), true);
    let max_price = fields.with(d, "max_price", |d, node, path| {
        let price = d.number(node, path)?;
        if price <= 0.0 {
            d.error(node, path, "`max_price` must be above 0 ($ per hour)");
            return None;
        }
        Some(price)
    });
    let creation_policy = fields
        .with(d, "creation_policy", |d, node, path| {
            d.choice(
                node,
                path,
                &[
                    ("reuse", CreationPolicy::Reuse),
                    ("reuse-or-create", CreationPolicy::ReuseOrCreate),
                ],
            )
        })
        .unwrap_or_default();
    let utilization_policy = fields.with(d, "utilization_policy", decode_utilization_policy);
    let startup_order = fields.with(d, "startup_order", |d, node, path| {
        d.choice(
            node,
            path,
            &[
                ("any", StartupOrder::Any),
                ("master-first", StartupOrder::MasterFirst),
                ("workers-first", StartupOrder::WorkersFirst),
            ],
        )
    });
    let stop_criteria = fields.with(d, "stop_criteria", |d, node, path| {
        d.choice(
            node,
            path,
            &[
                ("all-done", StopCriteria::AllDone),
                ("master-done", StopCriteria::MasterDone),
            ],
        )
    });
    let schedule = fields.with(d, "schedule", decode_schedule);
    let fleets = fields.with(d, "fleets", decode_fleet_references);
    let instances = fields.with(d, "instances", decode_instances);
    let tags = fields
        .with(d, "tags", Decoder::string_map)
        .unwrap_or_default();
    let backend_options = fields
        .get("backend_options")
        .map(|node| d.json(node, &fields.path_of("backend_options")));
    let profile = InstanceProfile {
        backends,
        regions,
        availability_zones,
        instance_types,
        reservation,
        spot_policy,
        retry,
        max_price,
        idle_duration,
        tags,
        backend_options,
    };
    let policy = RunPolicy {
        max_duration,
        stop_duration,
        creation_policy,
        utilization_policy,
        startup_order,
        stop_criteria,
        schedule,
        fleets,
        instances,
    };
    (profile, policy)
}

pub(crate) fn decode_spot_policy(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<SpotPolicy> {
    d.choice(
        node,
        path,
        &[
            ("spot", SpotPolicy::Spot),
            ("on-demand", SpotPolicy::OnDemand),
            ("auto", SpotPolicy::Auto),
        ],
    )
}

/// `retry: true` (every event for 1h), `false`, or `{on_events, duration}`.
fn decode_retry(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RetrySpec> {
    if node.scalar().is_some() {
        return d.bool(node, path)?.then(|| RetrySpec {
            on_events: RetryEvent::ALL.to_vec(),
            duration: DEFAULT_RETRY_DURATION,
        });
    }
    let fields = d.fields(node, path, &["on_events", "duration"])?;
    let on_events = match fields.get("on_events") {
        None => RetryEvent::ALL.to_vec(),
        Some(events) => {
            let events_path = fields.path_of("on_events");
            let mut out = Vec::new();
            for (i, event) in d
                .list(events, &events_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let choice = d.choice(
                    event,
                    &item(&events_path, i),
                    &[
                        ("no-capacity", RetryEvent::NoCapacity),
                        ("interruption", RetryEvent::Interruption),
                        ("error", RetryEvent::Error),
                    ],
                );
                if let Some(event) = choice.filter(|e| !out.contains(e)) {
                    out.push(event);
                }
            }
            if out.is_empty() && matches!(&events.kind, Kind::Seq(v) if v.is_empty()) {
                d.error(
                    events,
                    &events_path,
                    "`on_events` cannot be empty; leave it out to retry on every event",
                );
            }
            out
        }
    };
    let duration = fields
        .with(d, "duration", decode_duration)
        .unwrap_or(DEFAULT_RETRY_DURATION);
    Some(RetrySpec {
        on_events,
        duration,
    })
}

fn decode_utilization_policy(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<UtilizationPolicy> {
    let fields = d.fields(node, path, &["min_gpu_utilization", "time_window"])?;
    let min_gpu_utilization = match fields.get("min_gpu_utilization") {
        Some(value) => {
            let path = fields.path_of("min_gpu_utilization");
            let percent = d.uint::<u32>(value, &path)?;
            if percent > 100 {
                d.error(value, &path, "a percentage from 0 to 100");
                return None;
            }
            percent
        }
        None => {
            fields.missing(d, "min_gpu_utilization");
            return None;
        }
    };
    let time_window = match fields.get("time_window") {
        Some(value) => {
            let path = fields.path_of("time_window");
            let seconds = decode_duration(d, value, &path)?;
            if seconds < 300 {
                d.error(value, &path, "the time window must be at least 5m");
                return None;
            }
            seconds
        }
        None => {
            fields.missing(d, "time_window");
            return None;
        }
    };
    Some(UtilizationPolicy {
        min_gpu_utilization,
        time_window,
    })
}

fn decode_schedule(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Schedule> {
    let fields = d.fields(node, path, &["cron"])?;
    let Some(cron) = fields.get("cron") else {
        fields.missing(d, "cron");
        return None;
    };
    let cron_path = fields.path_of("cron");
    let expressions = match cron.scalar() {
        Some(_) => vec![d.string(cron, &cron_path)?],
        None => d.strings(cron, &cron_path)?,
    };
    if expressions.is_empty() {
        d.error(cron, &cron_path, "give at least one cron expression");
        return None;
    }
    for expression in &expressions {
        if let Err(message) = super::cron::Cron::parse(expression) {
            d.error(cron, &cron_path, message);
        }
    }
    Some(Schedule { cron: expressions })
}

/// Fleet names: `name`, `project/name`, or `{project, name}`.
fn decode_fleet_references(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<String>> {
    let entries = d.list(node, path)?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        if entry.scalar().is_some() {
            out.extend(d.string(entry, &entry_path));
            continue;
        }
        let Some(fields) = d.fields(entry, &entry_path, &["project", "name"]) else {
            continue;
        };
        let name = fields.with(d, "name", Decoder::string);
        let project = fields.with(d, "project", Decoder::string);
        match (project, name) {
            (Some(project), Some(name)) => out.push(format!("{project}/{name}")),
            (None, Some(name)) => out.push(name),
            (_, None) => fields.missing(d, "name"),
        }
    }
    Some(out)
}

/// `instances`: names, or `{name}`, `{hostname}`, `{fleet, instance}`.
fn decode_instances(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<InstanceSelector>> {
    let entries = d.list(node, path)?;
    if entries.is_empty() {
        d.error(
            node,
            path,
            "`instances` cannot be empty; leave it out to allow any instance",
        );
    }
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        if entry.scalar().is_some() {
            out.extend(
                d.string(entry, &entry_path)
                    .map(|name| InstanceSelector::Name { name }),
            );
            continue;
        }
        let Some(fields) = d.fields(
            entry,
            &entry_path,
            &["name", "hostname", "fleet", "instance"],
        ) else {
            continue;
        };
        let selector = if fields.has("fleet") || fields.has("instance") {
            let fleet = fields.with(d, "fleet", Decoder::string);
            let instance = fields.with(d, "instance", Decoder::uint::<u32>);
            if !fields.has("fleet") {
                fields.missing(d, "fleet");
            }
            if !fields.has("instance") {
                fields.missing(d, "instance");
            }
            fleet
                .zip(instance)
                .map(|(fleet, instance)| InstanceSelector::FleetInstance { fleet, instance })
        } else if fields.has("hostname") {
            fields
                .with(d, "hostname", Decoder::string)
                .map(|hostname| InstanceSelector::Hostname { hostname })
        } else if fields.has("name") {
            fields
                .with(d, "name", Decoder::string)
                .map(|name| InstanceSelector::Name { name })
        } else {
            d.error(
                entry,
                &entry_path,
                "give `name`, `hostname`, or `fleet` and `instance`",
            );
            None
        };
        out.extend(selector);
    }
    Some(out)
}
