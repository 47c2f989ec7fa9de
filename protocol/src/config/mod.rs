//! dstack configuration files (`.dstack.yml`) parsed and validated into typed specs.
//!
//! [`parse_configuration`] reads one YAML document, picks the kind from `type:` and returns a
//! [`Configuration`] with every default resolved, or every problem in the file at once, each
//! with its line, column and field path ([`ConfigErrors`]).

mod common;
pub mod cron;
mod decode;
mod duration;
mod encoding;
mod env;
pub mod environment;
mod error;
mod fleet;
pub mod groups_ref;
pub mod interpolate;
pub mod limits;
mod mounts;
mod profile;
pub mod resources;
mod run;
mod service;
pub mod sites;
mod volume;
mod yaml;

pub use common::{PortMapping, RegistryAuth, RunCommon};
pub use duration::{format_duration, parse_duration};
pub use encoding::decode_utf8;
pub use env::Env;
pub use environment::{HostNeed, JobEnvironment};
pub use error::{ConfigError, ConfigErrors};
pub use fleet::{Blocks, FleetConfig, FleetNodes, Placement, SshConfig, SshHost, SshProxyJump};
pub use mounts::{FileMapping, RepoExistsAction, RepoSpec, VolumeMount};
pub use profile::{
    CreationPolicy, InstanceProfile, InstanceSelector, RetryEvent, RetrySpec, RunPolicy, Schedule,
    SpotPolicy, StartupOrder, StopCriteria, UtilizationPolicy, DEFAULT_FLEET_IDLE_DURATION,
    DEFAULT_RETRY_DURATION, DEFAULT_RUN_IDLE_DURATION, DEFAULT_STOP_DURATION,
};
pub use resources::{
    parse_count_range, parse_size, parse_size_range, CpuArch, CpuSpec, DiskSpec, GpuSpec,
    GpuVendor, Range, ResourcesSpec,
};
pub use run::{DevEnvironmentConfig, GroupSlot, NodeGroup, RunConfiguration, TaskConfig};
pub use service::{
    GatewayChoice, GroupScale, HttpHeader, ModelSpec, ProbeSpec, RateLimit, ReplicaGroup,
    ScalingSpec, ServiceConfig, DEFAULT_REPLICA_GROUP,
};
pub use volume::VolumeConfig;

use decode::{edit_distance, Decoder};
use serde::{Deserialize, Serialize};
use yaml::{Kind, Node};

/// Any configuration file `flotilla apply` takes, tagged by `type` in JSON.
#[allow(clippy::large_enum_variant)] // one per parsed file; see `RunConfiguration`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Configuration {
    Task(TaskConfig),
    Service(ServiceConfig),
    DevEnvironment(DevEnvironmentConfig),
    Fleet(FleetConfig),
    Volume(VolumeConfig),
}

impl Configuration {
    /// `task`, `service`, `dev-environment`, `fleet` or `volume`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Configuration::Task(_) => "task",
            Configuration::Service(_) => "service",
            Configuration::DevEnvironment(_) => "dev-environment",
            Configuration::Fleet(_) => "fleet",
            Configuration::Volume(_) => "volume",
        }
    }

    /// The `name:` given in the file, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Configuration::Task(c) => c.common.name.as_deref(),
            Configuration::Service(c) => c.common.name.as_deref(),
            Configuration::DevEnvironment(c) => c.common.name.as_deref(),
            Configuration::Fleet(c) => c.name.as_deref(),
            Configuration::Volume(c) => c.name.as_deref(),
        }
    }

    /// Every field with its resolved value (`null` where absent), plus `type`.
    pub fn to_normalized_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The run kinds as a [`RunConfiguration`]; `None` for fleets and volumes.
    pub fn as_run(&self) -> Option<RunConfiguration> {
        match self {
            Configuration::Task(c) => Some(RunConfiguration::Task(c.clone())),
            Configuration::Service(c) => Some(RunConfiguration::Service(c.clone())),
            Configuration::DevEnvironment(c) => Some(RunConfiguration::DevEnvironment(c.clone())),
            Configuration::Fleet(_) | Configuration::Volume(_) => None,
        }
    }
}

impl RunConfiguration {
    /// Every field with its resolved value, plus `type`; `serde_json::from_value` reads it back.
    pub fn to_normalized_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

const KINDS: &[&str] = &["task", "service", "dev-environment", "fleet", "volume"];

/// The top-level fields the parser accepts for a configuration `type` (`task`, `service`,
/// `dev-environment`, `fleet`, `volume`); `None` for another type.
pub fn field_names(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "task" => Some(run::task_fields()),
        "service" => Some(service::service_fields()),
        "dev-environment" => Some(run::dev_environment_fields()),
        "fleet" => Some(fleet::fleet_fields()),
        "volume" => Some(volume::VOLUME_FIELDS),
        _ => None,
    }
}

/// Parses and validates one configuration file. `file_name` only labels the errors.
pub fn parse_configuration(file_name: &str, text: &str) -> Result<Configuration, ConfigErrors> {
    let loaded = yaml::load(file_name, text)?;
    let Some(root) = loaded.root else {
        return Err(ConfigError {
            file: file_name.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the file is empty; a configuration needs at least `type:` (task, service, dev-environment, fleet or volume)".to_string(),
        }
        .into());
    };
    let mut d = Decoder::new(file_name);
    let configuration = decode_configuration(&mut d, &root);
    let mut errors = loaded.errors;
    errors.extend(d.errors);
    match configuration {
        Some(configuration) if errors.is_empty() => Ok(configuration),
        _ => Err(error::report(errors, loaded.more + d.more)),
    }
}

/// [`parse_configuration`] of a file's bytes as read from disk: a UTF-8 byte-order mark is
/// skipped, invalid UTF-8 is an error at its line and column.
pub fn parse_configuration_bytes(
    file_name: &str,
    bytes: &[u8],
) -> Result<Configuration, ConfigErrors> {
    parse_configuration(file_name, decode_utf8(bytes, file_name)?)
}

/// [`parse_configuration`] on tokio's blocking pool, for async callers: parsing a large file
/// then holds up no async worker (nor the other clients it serves). Must be called within a
/// tokio runtime.
pub async fn parse_configuration_async(
    file_name: String,
    text: String,
) -> Result<Configuration, ConfigErrors> {
    let label = file_name.clone();
    match tokio::task::spawn_blocking(move || parse_configuration(&file_name, &text)).await {
        Ok(parsed) => parsed,
        Err(error) => Err(ConfigError {
            file: label,
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("the configuration parser stopped: {error}"),
        }
        .into()),
    }
}

/// Plain YAML to JSON (for flotilla's own configuration file); `null` for an empty file.
/// Plain scalars are typed by the YAML 1.2 core schema (`8` a number, `true` a boolean).
pub fn yaml_to_json(file_name: &str, text: &str) -> Result<serde_json::Value, ConfigErrors> {
    let loaded = yaml::load(file_name, text)?;
    let Some(root) = loaded.root else {
        return Ok(serde_json::Value::Null);
    };
    let mut errors = loaded.errors;
    let value = root.to_json(file_name, "", &mut errors);
    if errors.is_empty() && loaded.more == 0 {
        Ok(value)
    } else {
        Err(error::report(errors, loaded.more))
    }
}

fn decode_configuration(d: &mut Decoder<'_>, root: &Node) -> Option<Configuration> {
    let Kind::Map(entries) = &root.kind else {
        let message = format!(
            "expected a mapping of fields starting with `type:`, found {}",
            root.describe()
        );
        d.error(root, "", message);
        return None;
    };
    let kind_node = entries
        .iter()
        .find(|(key, _)| key.scalar() == Some("type"))
        .map(|(_, value)| value);
    let Some(kind_node) = kind_node.filter(|node| !node.is_null()) else {
        let message = format!("missing field `type`; expected one of {}", KINDS.join(", "));
        d.error(root, "type", message);
        return None;
    };
    let Some(kind) = kind_node.scalar() else {
        let message = format!(
            "expected one of {}, found {}",
            KINDS.join(", "),
            kind_node.describe()
        );
        d.error(kind_node, "type", message);
        return None;
    };
    let configuration = match kind {
        "task" => {
            let fields = d.fields(root, "", run::task_fields())?;
            Configuration::Task(run::decode_task(d, &fields))
        }
        "service" => {
            let fields = d.fields(root, "", service::service_fields())?;
            Configuration::Service(service::decode_service(d, &fields))
        }
        "dev-environment" => {
            let fields = d.fields(root, "", run::dev_environment_fields())?;
            Configuration::DevEnvironment(run::decode_dev_environment(d, &fields))
        }
        "fleet" => {
            let fields = d.fields(root, "", fleet::fleet_fields())?;
            Configuration::Fleet(fleet::decode_fleet(d, &fields))
        }
        "volume" => {
            let fields = d.fields(root, "", volume::VOLUME_FIELDS)?;
            Configuration::Volume(volume::decode_volume(d, &fields))
        }
        "gateway" => {
            d.error(kind_node, "type", "gateways are not supported yet");
            return None;
        }
        _ => {
            let suggestion = KINDS
                .iter()
                .map(|k| (edit_distance(kind, k), *k))
                .min()
                .filter(|(distance, _)| *distance <= 3)
                .map(|(_, k)| format!(", did you mean `{k}`?"))
                .unwrap_or_else(|| format!("; expected one of {}", KINDS.join(", ")));
            let message = format!(
                "unknown configuration type {}{suggestion}",
                kind_node.describe()
            );
            d.error(kind_node, "type", message);
            return None;
        }
    };
    Some(configuration)
}
