//! `type: fleet`: a set of machines, provisioned (`nodes`) or existing hosts over SSH (`ssh_config`).

use super::common::decode_resource_name;
use super::decode::{item, Decoder, Fields};
use super::env::{decode_env, Env};
use super::limits::{MAX_BLOCKS, MAX_NODES, MAX_SSH_HOSTS};
use super::profile::{
    decode_profile, InstanceProfile, DEFAULT_FLEET_IDLE_DURATION, PROFILE_FIELDS,
};
use super::resources::{decode_resources, parse_count_range, ResourcesSpec};
use super::yaml::Node;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetConfig {
    pub name: Option<String>,
    /// How many instances; `None` for SSH fleets (their hosts are the instances).
    pub nodes: Option<FleetNodes>,
    pub placement: Placement,
    pub blocks: Blocks,
    pub resources: ResourcesSpec,
    pub ssh_config: Option<SshConfig>,
    pub env: Env,
    /// Where the fleet's instances come from and how they are kept (shared with runs).
    #[serde(flatten)]
    pub profile: InstanceProfile,
}

/// `min <= target <= max`; `max: None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetNodes {
    pub min: u32,
    /// How many to provision when the fleet is applied.
    pub target: u32,
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    #[default]
    Any,
    /// All instances in one network cluster (needed for multi-node tasks).
    Cluster,
}

/// Each host's GPUs, CPUs and memory split into equal blocks; `auto` = as many as possible.
/// Serializes as a number or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    Count(u32),
    Auto,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks::Count(1)
    }
}

impl Serialize for Blocks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Blocks::Count(n) => serializer.serialize_u32(*n),
            Blocks::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Blocks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Count(u32),
            Word(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Count(n) if n >= 1 => Ok(Blocks::Count(n)),
            Repr::Word(word) if word == "auto" => Ok(Blocks::Auto),
            _ => Err(serde::de::Error::custom(
                "blocks: expected a number from 1 or \"auto\"",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshConfig {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub proxy_jump: Option<SshProxyJump>,
    pub hosts: Vec<SshHost>,
    /// The hosts' cluster network, `<ip>/<prefix>`.
    pub network: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshProxyJump {
    pub hostname: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<String>,
}

/// One existing host; unset fields fall back to the `ssh_config` ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshHost {
    pub hostname: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<String>,
    pub blocks: Option<Blocks>,
    pub internal_ip: Option<String>,
    pub proxy_jump: Option<SshProxyJump>,
}

const FLEET_FIELDS: &[&str] = &[
    "type",
    "name",
    "nodes",
    "placement",
    "blocks",
    "resources",
    "ssh_config",
    "env",
];
/// The profile fields that make sense for a fleet.
const FLEET_PROFILE_FIELDS: &[&str] = &[
    "backends",
    "regions",
    "availability_zones",
    "instance_types",
    "reservation",
    "spot_policy",
    "retry",
    "max_price",
    "idle_duration",
    "tags",
    "backend_options",
];

pub(crate) fn fleet_fields() -> &'static [&'static str] {
    static FIELDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        debug_assert!(FLEET_PROFILE_FIELDS
            .iter()
            .all(|f| PROFILE_FIELDS.contains(f)));
        [FLEET_FIELDS, FLEET_PROFILE_FIELDS].concat()
    })
}

pub(crate) fn decode_fleet(d: &mut Decoder<'_>, fields: &Fields<'_>) -> FleetConfig {
    let name = fields.with(d, "name", decode_resource_name);
    let nodes = fields.with(d, "nodes", decode_fleet_nodes);
    let placement = fields
        .with(d, "placement", |d, node, path| {
            d.choice(
                node,
                path,
                &[("any", Placement::Any), ("cluster", Placement::Cluster)],
            )
        })
        .unwrap_or_default();
    let blocks = fields.with(d, "blocks", decode_blocks).unwrap_or_default();
    let resources = fields
        .get("resources")
        .map(|node| decode_resources(d, node, &fields.path_of("resources")))
        .unwrap_or_default();
    let ssh_config = fields.with(d, "ssh_config", decode_ssh_config);
    match (fields.key("nodes"), fields.key("ssh_config")) {
        (Some(key), Some(_)) => d.error(
            key,
            &fields.path_of("nodes"),
            "`nodes` and `ssh_config` are mutually exclusive: an SSH fleet's instances are its hosts",
        ),
        (None, None) => d.error(
            fields.node(),
            fields.path(),
            "a fleet needs `nodes` (machines to provision) or `ssh_config` (existing hosts)",
        ),
        _ => {}
    }
    let env = fields
        .get("env")
        .map(|node| decode_env(d, node, &fields.path_of("env")))
        .unwrap_or_default();
    let (profile, _run_only) = decode_profile(d, fields, DEFAULT_FLEET_IDLE_DURATION);
    FleetConfig {
        name,
        nodes,
        placement,
        blocks,
        resources,
        ssh_config,
        env,
        profile,
    }
}

/// `N`, `"min..max"`, or `{min, target, max}`.
fn decode_fleet_nodes(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<FleetNodes> {
    let (min, target, max) = match node.scalar() {
        Some(text) => {
            let range = parse_count_range(text)
                .map_err(|e| d.error(node, path, e))
                .ok()?;
            let min = range.min.unwrap_or(0);
            (min, min, range.max)
        }
        None => {
            let fields = d.fields(node, path, &["min", "target", "max"])?;
            let min = fields.with(d, "min", Decoder::uint::<u32>).unwrap_or(0);
            let target = fields
                .with(d, "target", Decoder::uint::<u32>)
                .unwrap_or(min);
            let max = fields.with(d, "max", Decoder::uint::<u32>);
            (min, target, max)
        }
    };
    let unit = "nodes per fleet";
    let limit = u64::from(MAX_NODES);
    let within = [Some(min), Some(target), max]
        .into_iter()
        .flatten()
        .max()
        .is_none_or(|largest| d.within(node, path, largest.into(), limit, unit));
    if !within {
        return None;
    }
    if target < min {
        d.error(
            node,
            path,
            format!("`target` ({target}) must not be below `min` ({min})"),
        );
        return None;
    }
    if let Some(max) = max {
        if max < target {
            d.error(
                node,
                path,
                format!("`max` ({max}) must not be below `min` and `target` ({target})"),
            );
            return None;
        }
    }
    Some(FleetNodes { min, target, max })
}

fn decode_blocks(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Blocks> {
    if node.scalar() == Some("auto") {
        return Some(Blocks::Auto);
    }
    let count = node
        .scalar()
        .and_then(|text| text.trim().parse::<u32>().ok());
    match count {
        Some(n) if n >= 1 => d
            .within(node, path, n.into(), MAX_BLOCKS.into(), "blocks per host")
            .then_some(Blocks::Count(n)),
        _ => {
            let message = format!(
                "expected a number of blocks from 1, or `auto`, found {}",
                node.describe()
            );
            d.error(node, path, message);
            None
        }
    }
}

fn decode_ssh_config(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<SshConfig> {
    let fields = d.fields(
        node,
        path,
        &[
            "user",
            "port",
            "identity_file",
            "proxy_jump",
            "hosts",
            "network",
        ],
    )?;
    let hosts = match fields.get("hosts") {
        Some(hosts) => decode_hosts(d, hosts, &fields.path_of("hosts")),
        None => {
            fields.missing(d, "hosts");
            Vec::new()
        }
    };
    Some(SshConfig {
        user: fields.with(d, "user", Decoder::string),
        port: fields.with(d, "port", decode_ssh_port),
        identity_file: fields.with(d, "identity_file", Decoder::string),
        proxy_jump: fields.with(d, "proxy_jump", decode_proxy_jump),
        hosts,
        network: fields.with(d, "network", Decoder::string),
    })
}

fn decode_ssh_port(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<u16> {
    let port = d.uint::<u16>(node, path)?;
    if port == 0 {
        d.error(node, path, "SSH port must be from 1 to 65535");
        return None;
    }
    Some(port)
}

fn decode_proxy_jump(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<SshProxyJump> {
    let fields = d.fields(node, path, &["hostname", "port", "user", "identity_file"])?;
    let hostname = fields.with(d, "hostname", Decoder::string);
    if hostname.is_none() && !fields.has("hostname") {
        fields.missing(d, "hostname");
    }
    Some(SshProxyJump {
        hostname: hostname?,
        port: fields.with(d, "port", decode_ssh_port),
        user: fields.with(d, "user", Decoder::string),
        identity_file: fields.with(d, "identity_file", Decoder::string),
    })
}

const HOST_FIELDS: &[&str] = &[
    "hostname",
    "port",
    "user",
    "identity_file",
    "blocks",
    "internal_ip",
    "proxy_jump",
];

/// Hosts: a hostname, or `{hostname, port, user, identity_file, blocks, internal_ip, proxy_jump}`.
fn decode_hosts(d: &mut Decoder<'_>, node: &Node, path: &str) -> Vec<SshHost> {
    let Some(entries) = d.list(node, path) else {
        return Vec::new();
    };
    if entries.is_empty() {
        d.error(node, path, "list at least one host");
    }
    let count = entries.len() as u64;
    if !d.within(node, path, count, MAX_SSH_HOSTS as u64, "hosts per fleet") {
        return Vec::new();
    }
    let mut hosts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        if entry.scalar().is_some() {
            if let Some(hostname) = d.string(entry, &entry_path) {
                hosts.push(SshHost {
                    hostname,
                    port: None,
                    user: None,
                    identity_file: None,
                    blocks: None,
                    internal_ip: None,
                    proxy_jump: None,
                });
            }
            continue;
        }
        let Some(fields) = d.fields(entry, &entry_path, HOST_FIELDS) else {
            continue;
        };
        let hostname = fields.with(d, "hostname", Decoder::string);
        if hostname.is_none() && !fields.has("hostname") {
            fields.missing(d, "hostname");
        }
        let internal_ip = fields.with(d, "internal_ip", |d, node, path| {
            let ip = d.string(node, path)?;
            if ip.parse::<std::net::IpAddr>().is_err() {
                d.error(node, path, format!("{ip:?} is not an IP address"));
                return None;
            }
            Some(ip)
        });
        let host = SshHost {
            hostname: hostname.unwrap_or_default(),
            port: fields.with(d, "port", decode_ssh_port),
            user: fields.with(d, "user", Decoder::string),
            identity_file: fields.with(d, "identity_file", Decoder::string),
            blocks: fields.with(d, "blocks", decode_blocks),
            internal_ip,
            proxy_jump: fields.with(d, "proxy_jump", decode_proxy_jump),
        };
        if !host.hostname.is_empty() {
            hosts.push(host);
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_serialize_as_number_or_auto() {
        assert_eq!(
            serde_json::to_value(Blocks::Count(4)).ok(),
            Some(serde_json::json!(4))
        );
        assert_eq!(
            serde_json::to_value(Blocks::Auto).ok(),
            Some(serde_json::json!("auto"))
        );
        let back: Result<Blocks, _> = serde_json::from_value(serde_json::json!("auto"));
        assert_eq!(back.ok(), Some(Blocks::Auto));
        let zero: Result<Blocks, _> = serde_json::from_value(serde_json::json!(0));
        assert!(zero.is_err());
    }
}
