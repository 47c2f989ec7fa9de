//! `type: service`: a long-running app behind a port, with replicas, scaling, probes and a model.

use super::common::{
    check_image_sources, decode_port, decode_python, decode_run_common, PortMapping, RunCommon,
    RUN_COMMON_FIELDS,
};
use super::decode::{item, parse_bool, Decoder, Fields};
use super::duration::decode_duration;
use super::limits::MAX_REPLICAS;
use super::profile::{decode_spot_policy, SpotPolicy, PROFILE_FIELDS};
use super::resources::{decode_count_range, decode_resources, Range, ResourcesSpec};
use super::yaml::Node;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    #[serde(flatten)]
    pub common: RunCommon,
    /// Empty when `replicas` lists groups (each group has its own).
    pub commands: Vec<String>,
    /// The port the app listens on (`container`); `8000` maps 8000 to 8000.
    pub port: Option<PortMapping>,
    /// How many replicas in total (the sum over groups when `replica_groups` is set).
    pub replicas: Range<u32>,
    /// `replicas` written as a list of groups, each with its own commands, resources and scaling.
    pub replica_groups: Option<Vec<ReplicaGroup>>,
    /// Required when `replicas` is a range.
    pub scaling: Option<ScalingSpec>,
    pub auth: bool,
    pub model: Option<ModelSpec>,
    /// `None`: not given (a default probe may apply when `model` is set).
    pub probes: Option<Vec<ProbeSpec>>,
    pub gateway: Option<GatewayChoice>,
    /// `Some(true)` by default; `None` is `https: auto` (decided by the gateway).
    pub https: Option<bool>,
    pub strip_prefix: bool,
    pub rate_limits: Vec<RateLimit>,
    /// The in-service router (`{type: sglang, policy, pd_disaggregation}`), carried as written.
    pub router: Option<serde_json::Value>,
}

/// `gateway: false` (none), `true` (the default one) or a gateway's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GatewayChoice {
    Enabled(bool),
    Name(String),
}

/// How replicas scale: towards `target` requests per second per replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingSpec {
    /// Only `rps`.
    pub metric: String,
    pub target: f64,
    /// Seconds over which `rps` is measured.
    pub window: Option<u64>,
    pub scale_up_delay: u64,
    pub scale_down_delay: u64,
}

/// The OpenAI-compatible model the service exposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    /// `openai` or `tgi`.
    pub format: String,
    /// For `openai`: the path prefix of the API (`/v1`).
    pub prefix: Option<String>,
    pub chat_template: Option<String>,
    pub eos_token: Option<String>,
}

/// An HTTP health probe, defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub url: String,
    pub method: String,
    pub headers: Vec<HttpHeader>,
    pub body: Option<String>,
    /// Seconds.
    pub timeout: u64,
    /// Seconds.
    pub interval: u64,
    pub ready_after: u32,
    pub until_ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub prefix: String,
    /// Partition by client IP (`None`) or by this header.
    pub header: Option<String>,
    pub rps: f64,
    pub burst: u64,
}

/// One group of `replicas:` written as a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaGroup {
    /// Given, or the group's index (`0`, `1`, ...).
    pub name: String,
    pub count: Range<u32>,
    pub scaling: Option<ScalingSpec>,
    pub resources: ResourcesSpec,
    pub commands: Vec<String>,
    pub image: Option<String>,
    pub python: Option<String>,
    pub nvcc: Option<bool>,
    pub docker: Option<bool>,
    pub privileged: Option<bool>,
    pub spot_policy: Option<SpotPolicy>,
    pub reservation: Option<String>,
    pub router: Option<serde_json::Value>,
}

/// dstack's name of the one replica group of a service whose `replicas` is not a list.
pub const DEFAULT_REPLICA_GROUP: &str = "0";

/// One replica group as its scaler sees it: its name, its count and its `scaling`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupScale<'a> {
    pub name: &'a str,
    pub count: Range<u32>,
    pub scaling: Option<&'a ScalingSpec>,
}

impl ServiceConfig {
    /// The replica groups (dstack's `replica_groups`): the listed ones, or one group named `0`
    /// with the service's `replicas` and `scaling`.
    pub fn scale_groups(&self) -> Vec<GroupScale<'_>> {
        match &self.replica_groups {
            Some(groups) => groups
                .iter()
                .map(|g| GroupScale {
                    name: &g.name,
                    count: g.count,
                    scaling: g.scaling.as_ref(),
                })
                .collect(),
            None => vec![GroupScale {
                name: DEFAULT_REPLICA_GROUP,
                count: self.replicas,
                scaling: self.scaling.as_ref(),
            }],
        }
    }

    /// The listed replica group named `name`.
    pub fn replica_group(&self, name: &str) -> Option<&ReplicaGroup> {
        self.replica_groups
            .as_ref()?
            .iter()
            .find(|g| g.name == name)
    }
}

const SERVICE_FIELDS: &[&str] = &[
    "commands",
    "port",
    "replicas",
    "scaling",
    "auth",
    "model",
    "probes",
    "gateway",
    "https",
    "strip_prefix",
    "rate_limits",
    "router",
];

pub(crate) fn service_fields() -> &'static [&'static str] {
    static FIELDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FIELDS.get_or_init(|| [RUN_COMMON_FIELDS, PROFILE_FIELDS, SERVICE_FIELDS].concat())
}

pub(crate) fn decode_service(d: &mut Decoder<'_>, fields: &Fields<'_>) -> ServiceConfig {
    let common = decode_run_common(d, fields);
    let given_commands = fields.with(d, "commands", Decoder::strings);
    let malformed_commands = fields.has("commands") && given_commands.is_none();
    let commands = given_commands.unwrap_or_default();
    let port = fields.with(d, "port", decode_port);
    let scaling = fields.with(d, "scaling", decode_scaling);
    let (replicas, replica_groups) = match fields.get("replicas") {
        None => (Range::exact(1), None),
        Some(node) if node.scalar().is_some() => {
            let replicas = decode_replica_count(d, node, &fields.path_of("replicas"))
                .unwrap_or(Range::exact(1));
            check_scaling(d, fields, "replicas", &replicas, scaling.is_some());
            (replicas, None)
        }
        Some(node) => {
            let groups =
                decode_replica_groups(d, node, &fields.path_of("replicas"), fields, &common);
            let sum = |bound: fn(&Range<u32>) -> Option<u32>| -> u64 {
                groups
                    .iter()
                    .map(|g| u64::from(bound(&g.count).unwrap_or(0)))
                    .sum()
            };
            let (min, max) = (sum(|r| r.min), sum(|r| r.max));
            let unit = "replicas (the sum over the replica groups)";
            let path = fields.path_of("replicas");
            let max = if d.within(node, &path, max, MAX_REPLICAS.into(), unit) {
                max
            } else {
                MAX_REPLICAS.into()
            };
            let total = Range {
                min: Some(u32::try_from(min.min(max)).unwrap_or(MAX_REPLICAS)),
                max: Some(u32::try_from(max).unwrap_or(MAX_REPLICAS)),
            };
            (total, Some(groups))
        }
    };
    if replica_groups.is_none()
        && commands.is_empty()
        && !malformed_commands
        && common.image.is_none()
    {
        d.error(
            fields.node(),
            &fields.path_of("commands"),
            "either `commands` or `image` must be set",
        );
    }
    let https = match fields.get("https") {
        None => Some(true),
        Some(node) if node.scalar() == Some("auto") => None,
        Some(node) => d.bool(node, &fields.path_of("https")).or(Some(true)),
    };
    ServiceConfig {
        common,
        commands,
        port,
        replicas,
        replica_groups,
        scaling,
        auth: fields.with(d, "auth", Decoder::bool).unwrap_or(true),
        model: fields.with(d, "model", decode_model),
        probes: fields.with(d, "probes", decode_probes),
        gateway: fields.with(d, "gateway", |d, node, path| match node.scalar() {
            Some(text) => Some(match parse_bool(text) {
                Some(enabled) => GatewayChoice::Enabled(enabled),
                None => GatewayChoice::Name(d.string(node, path)?),
            }),
            None => d.string(node, path).map(GatewayChoice::Name),
        }),
        https,
        strip_prefix: fields
            .with(d, "strip_prefix", Decoder::bool)
            .unwrap_or(true),
        rate_limits: fields
            .with(d, "rate_limits", decode_rate_limits)
            .unwrap_or_default(),
        router: fields.with(d, "router", decode_router),
    }
}

/// `2` or `"1..4"`; a range needs its maximum, the minimum defaults to 0.
fn decode_replica_count(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Range<u32>> {
    let range = decode_count_range(d, node, path)?;
    if range.max.is_none() {
        d.error(
            node,
            path,
            "the maximum number of replicas is required (`1..4`)",
        );
        return None;
    }
    let max = range.max.unwrap_or(0);
    if !d.within(node, path, max.into(), MAX_REPLICAS.into(), "replicas") {
        return None;
    }
    Some(Range {
        min: Some(range.min.unwrap_or(0)),
        max: range.max,
    })
}

/// A range of replicas needs `scaling`; a fixed number must not have it.
fn check_scaling(
    d: &mut Decoder<'_>,
    fields: &Fields<'_>,
    count_name: &str,
    count: &Range<u32>,
    has_scaling: bool,
) {
    if count.min != count.max && !has_scaling {
        if let Some(node) = fields.get(count_name) {
            let message = format!(
                "a range of {count_name} needs `scaling` ({{metric: rps, target: N}}) to choose between {} and {}",
                count.min.unwrap_or(0),
                count.max.unwrap_or(0)
            );
            d.error(node, &fields.path_of(count_name), message);
        }
    }
    if count.min == count.max && has_scaling {
        if let Some(key) = fields.key("scaling") {
            let message = format!("`scaling` needs `{count_name}` to be a range (`1..4`)");
            d.error(key, &fields.path_of("scaling"), message);
        }
    }
}

/// dstack's `SERVICE_SCALING_WINDOWS`: the windows (seconds) `rps` may be measured over.
const SCALING_WINDOWS: [u64; 3] = [30, 60, 300];

fn decode_scaling(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ScalingSpec> {
    let fields = d.fields(
        node,
        path,
        &[
            "metric",
            "target",
            "window",
            "scale_up_delay",
            "scale_down_delay",
        ],
    )?;
    let metric = match fields.get("metric") {
        Some(value) => d.choice(value, &fields.path_of("metric"), &[("rps", "rps")])?,
        None => {
            fields.missing(d, "metric");
            return None;
        }
    };
    let target = match fields.get("target") {
        Some(value) => {
            let target_path = fields.path_of("target");
            let target = d.number(value, &target_path)?;
            if target <= 0.0 {
                d.error(value, &target_path, "`target` must be above 0");
                return None;
            }
            target
        }
        None => {
            fields.missing(d, "target");
            return None;
        }
    };
    let window = fields.with(d, "window", decode_duration);
    if let (Some(w), Some(node)) = (window, fields.get("window")) {
        if !SCALING_WINDOWS.contains(&w) {
            d.error(
                node,
                &fields.path_of("window"),
                "`window` must be one of `30s`, `60s`, `300s` (the windows requests are counted over)",
            );
        }
    }
    Some(ScalingSpec {
        metric: metric.to_string(),
        target,
        window,
        scale_up_delay: fields
            .with(d, "scale_up_delay", decode_duration)
            .unwrap_or(300),
        scale_down_delay: fields
            .with(d, "scale_down_delay", decode_duration)
            .unwrap_or(600),
    })
}

const REPLICA_GROUP_FIELDS: &[&str] = &[
    "name",
    "count",
    "scaling",
    "resources",
    "commands",
    "image",
    "python",
    "nvcc",
    "docker",
    "privileged",
    "spot_policy",
    "reservation",
    "router",
];

fn decode_replica_groups(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
    service: &Fields<'_>,
    common: &RunCommon,
) -> Vec<ReplicaGroup> {
    let Some(entries) = d.list(node, path) else {
        return Vec::new();
    };
    if entries.is_empty() {
        d.error(node, path, "`replicas` cannot be an empty list");
    }
    for name in ["scaling", "commands"] {
        if let Some(key) = service.key(name) {
            let message = format!(
                "top-level `{name}` is not allowed when `replicas` is a list; set it in each replica group"
            );
            d.error(key, &service.path_of(name), message);
        }
    }
    let mut groups: Vec<ReplicaGroup> = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let Some(fields) = d.fields(entry, &entry_path, REPLICA_GROUP_FIELDS) else {
            continue;
        };
        let Some(group) = decode_replica_group(d, &fields, i, common) else {
            continue;
        };
        if !names.insert(group.name.clone()) {
            let message = format!("replica group name `{}` is used twice", group.name);
            d.error(entry, &entry_path, message);
        }
        groups.push(group);
    }
    let routers = groups.iter().filter(|g| g.router.is_some()).count();
    if routers > 1 {
        d.error(node, path, "at most one replica group may have a `router`");
    }
    groups
}

fn decode_replica_group(
    d: &mut Decoder<'_>,
    fields: &Fields<'_>,
    index: usize,
    common: &RunCommon,
) -> Option<ReplicaGroup> {
    let name = match fields.get("name") {
        Some(node) => decode_group_name(d, node, &fields.path_of("name"))?,
        None => index.to_string(),
    };
    let count = match fields.get("count") {
        Some(node) => decode_replica_count(d, node, &fields.path_of("count"))?,
        None => {
            fields.missing(d, "count");
            return None;
        }
    };
    let scaling = fields.with(d, "scaling", decode_scaling);
    check_scaling(d, fields, "count", &count, scaling.is_some());
    let image = fields.with(d, "image", Decoder::string);
    let python = fields.with(d, "python", decode_python);
    let nvcc = fields.with(d, "nvcc", Decoder::bool);
    let docker = fields.with(d, "docker", Decoder::bool);
    check_image_sources(d, fields, image.is_some(), python.is_some(), nvcc, docker);
    let service_level = [
        ("image", common.image.is_some()),
        ("python", common.python.is_some()),
        ("nvcc", common.nvcc == Some(true)),
        ("docker", common.docker == Some(true)),
    ];
    for (field, set_above) in service_level {
        if let (true, Some(key)) = (set_above, fields.key(field)) {
            let message = format!(
                "`{field}` is set both for the service and in this replica group; set it in one place"
            );
            d.error(key, &fields.path_of(field), message);
        }
    }
    let commands = fields
        .with(d, "commands", Decoder::strings)
        .unwrap_or_default();
    if commands.is_empty() && image.is_none() && common.image.is_none() {
        let message = format!(
            "replica group `{name}` needs `commands`, or an `image` in the group or the service"
        );
        d.error(fields.node(), fields.path(), message);
    }
    let router = fields.with(d, "router", decode_router);
    if router.is_some() && count != Range::exact(1) {
        if let Some(key) = fields.key("router") {
            d.error(
                key,
                &fields.path_of("router"),
                "a replica group with a `router` must have `count: 1`",
            );
        }
    }
    Some(ReplicaGroup {
        name,
        count,
        scaling,
        resources: fields
            .get("resources")
            .map(|node| decode_resources(d, node, &fields.path_of("resources")))
            .unwrap_or_default(),
        commands,
        image,
        python,
        nvcc,
        docker,
        privileged: fields.with(d, "privileged", Decoder::bool),
        spot_policy: fields.with(d, "spot_policy", decode_spot_policy),
        reservation: fields.with(d, "reservation", Decoder::string),
        router,
    })
}

/// A replica or node group name: lowercase letters, digits and `-`, up to 40.
pub(crate) fn decode_group_name(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let name = d.string(node, path)?;
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        let message = format!(
            "{name:?} is not a valid group name: use up to 40 lowercase letters, digits and `-`"
        );
        d.error(node, path, message);
        return None;
    }
    Some(name)
}

/// `model: NAME` (OpenAI format at `/v1`) or `{name, format: openai|tgi, prefix, ...}`.
fn decode_model(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ModelSpec> {
    if node.scalar().is_some() {
        return d.string(node, path).map(|name| ModelSpec {
            name,
            format: "openai".to_string(),
            prefix: Some("/v1".to_string()),
            chat_template: None,
            eos_token: None,
        });
    }
    let fields = d.fields(
        node,
        path,
        &[
            "type",
            "name",
            "format",
            "prefix",
            "chat_template",
            "eos_token",
        ],
    )?;
    if let Some(kind) = fields.get("type") {
        d.choice(kind, &fields.path_of("type"), &[("chat", ())]);
    }
    let name = fields.with(d, "name", Decoder::string);
    if name.is_none() && !fields.has("name") {
        fields.missing(d, "name");
    }
    let format = match fields.get("format") {
        Some(value) => d.choice(
            value,
            &fields.path_of("format"),
            &[("openai", "openai"), ("tgi", "tgi")],
        ),
        None => {
            fields.missing(d, "format");
            None
        }
    };
    let prefix = fields.with(d, "prefix", Decoder::string);
    let format = format?;
    let (prefix, tgi_only) = if format == "openai" {
        (Some(prefix.unwrap_or_else(|| "/v1".to_string())), false)
    } else {
        (None, true)
    };
    for (field, allowed) in [
        ("prefix", !tgi_only),
        ("chat_template", tgi_only),
        ("eos_token", tgi_only),
    ] {
        if let (false, Some(key)) = (allowed, fields.key(field)) {
            let message = format!("`{field}` does not apply to the `{format}` format");
            d.error(key, &fields.path_of(field), message);
        }
    }
    Some(ModelSpec {
        name: name?,
        format: format.to_string(),
        prefix,
        chat_template: fields.with(d, "chat_template", Decoder::string),
        eos_token: fields.with(d, "eos_token", Decoder::string),
    })
}

const PROBE_FIELDS: &[&str] = &[
    "type",
    "url",
    "method",
    "headers",
    "body",
    "timeout",
    "interval",
    "ready_after",
    "until_ready",
];

fn decode_probes(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<ProbeSpec>> {
    let entries = d.list(node, path)?;
    let mut probes: Vec<ProbeSpec> = Vec::new();
    let mut seen = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let Some(probe) = decode_probe(d, entry, &entry_path) else {
            continue;
        };
        if !seen.insert(probe.clone()) {
            d.error(entry, &entry_path, "this probe is listed twice");
        }
        probes.push(probe);
    }
    Some(probes)
}

fn decode_probe(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<ProbeSpec> {
    let fields = d.fields(node, path, PROBE_FIELDS)?;
    match fields.get("type") {
        Some(kind) => {
            d.choice(kind, &fields.path_of("type"), &[("http", ())])?;
        }
        None => {
            fields.missing(d, "type");
            return None;
        }
    }
    let url = fields.with(d, "url", |d, node, path| {
        let url = d.string(node, path)?;
        if !url.starts_with('/') {
            d.error(node, path, format!("{url:?} must start with `/`"));
            return None;
        }
        Some(url)
    });
    let method = fields.with(d, "method", |d, node, path| {
        let methods = ["get", "post", "put", "delete", "patch", "head"].map(|m| (m, m));
        d.choice(node, path, &methods)
    });
    let method = method.unwrap_or("get").to_string();
    let body = fields.with(d, "body", Decoder::string);
    if body.is_some() && (method == "get" || method == "head") {
        if let Some(key) = fields.key("body") {
            d.error(
                key,
                &fields.path_of("body"),
                format!("a `{method}` probe cannot have a body"),
            );
        }
    }
    let positive = |d: &mut Decoder<'_>, name: &str, default: u64| {
        let value = fields.with(d, name, decode_duration);
        if value == Some(0) {
            if let Some(node) = fields.get(name) {
                d.error(
                    node,
                    &fields.path_of(name),
                    format!("`{name}` must be at least 1s"),
                );
            }
        }
        value.filter(|v| *v > 0).unwrap_or(default)
    };
    let timeout = positive(d, "timeout", 10);
    let interval = positive(d, "interval", 15);
    let ready_after = fields
        .with(d, "ready_after", Decoder::uint::<u32>)
        .unwrap_or(1)
        .max(1);
    Some(ProbeSpec {
        url: url.unwrap_or_else(|| "/".to_string()),
        method,
        headers: fields
            .with(d, "headers", decode_headers)
            .unwrap_or_default(),
        body,
        timeout,
        interval,
        ready_after,
        until_ready: fields
            .with(d, "until_ready", Decoder::bool)
            .unwrap_or(false),
    })
}

fn decode_headers(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<HttpHeader>> {
    let entries = d.list(node, path)?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let Some(fields) = d.fields(entry, &entry_path, &["name", "value"]) else {
            continue;
        };
        let name = fields.with(d, "name", Decoder::string);
        let value = fields.with(d, "value", Decoder::string);
        match (name, value) {
            (Some(name), Some(value)) => out.push(HttpHeader { name, value }),
            (name, value) => {
                if name.is_none() && !fields.has("name") {
                    fields.missing(d, "name");
                }
                if value.is_none() && !fields.has("value") {
                    fields.missing(d, "value");
                }
            }
        }
    }
    Some(out)
}

fn decode_rate_limits(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<RateLimit>> {
    let entries = d.list(node, path)?;
    let mut out: Vec<RateLimit> = Vec::new();
    let mut prefixes = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let Some(fields) = d.fields(entry, &entry_path, &["prefix", "key", "rps", "burst"]) else {
            continue;
        };
        let prefix = fields
            .with(d, "prefix", Decoder::string)
            .unwrap_or_else(|| "/".to_string());
        let header = fields.with(d, "key", decode_rate_limit_key).flatten();
        let Some(rps) = fields.with(d, "rps", Decoder::number) else {
            if !fields.has("rps") {
                fields.missing(d, "rps");
            }
            continue;
        };
        if rps <= 0.0 {
            if let Some(value) = fields.get("rps") {
                d.error(value, &fields.path_of("rps"), "`rps` must be above 0");
            }
        }
        if !prefixes.insert(prefix.clone()) {
            d.error(
                entry,
                &entry_path,
                format!("prefix {prefix:?} has two rate limits"),
            );
        }
        out.push(RateLimit {
            prefix,
            header,
            rps,
            burst: fields.with(d, "burst", Decoder::uint::<u64>).unwrap_or(0),
        });
    }
    Some(out)
}

/// `{type: ip_address}` (`None`) or `{type: header, header: NAME}`.
fn decode_rate_limit_key(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Option<String>> {
    let fields = d.fields(node, path, &["type", "header"])?;
    let kind = match fields.get("type") {
        Some(value) => d.choice(
            value,
            &fields.path_of("type"),
            &[("ip_address", false), ("header", true)],
        )?,
        None => false,
    };
    if !kind {
        return Some(None);
    }
    let header = fields.with(d, "header", Decoder::string);
    if header.is_none() && !fields.has("header") {
        fields.missing(d, "header");
    }
    Some(header)
}

/// A router, kept as written once its field names are known.
fn decode_router(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<serde_json::Value> {
    let fields = d.fields(node, path, &["type", "policy", "pd_disaggregation"])?;
    if !fields.has("type") {
        fields.missing(d, "type");
    }
    Some(d.json(node, path))
}
