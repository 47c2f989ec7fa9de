//! The run kinds: `task` (with node groups), `dev-environment`, and [`RunConfiguration`] over all three.

use super::common::{decode_ports, decode_run_common, PortMapping, RunCommon, RUN_COMMON_FIELDS};
use super::decode::{item, Decoder, Fields};
use super::duration::decode_off_duration;
use super::limits::MAX_NODES;
use super::profile::PROFILE_FIELDS;
use super::resources::{decode_resources, Range, ResourcesSpec};
use super::service::{decode_group_name, ServiceConfig};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    #[serde(flatten)]
    pub common: RunCommon,
    /// Empty when `groups` is set (each group has its own).
    pub commands: Vec<String>,
    /// How many nodes in total (the sum over groups when `groups` is set); 1 by default.
    pub nodes: u32,
    /// Heterogeneous multi-node tasks: groups of nodes, each with its own commands and resources.
    pub groups: Option<Vec<NodeGroup>>,
}

/// One group of a multi-node task's `groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeGroup {
    /// Given, or the group's index (`0`, `1`, ...).
    pub name: String,
    pub nodes: u32,
    pub resources: ResourcesSpec,
    pub commands: Vec<String>,
    pub ports: Vec<PortMapping>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevEnvironmentConfig {
    #[serde(flatten)]
    pub common: RunCommon,
    /// `vscode`, `cursor`, `windsurf`, `zed`, or `None` (SSH only).
    pub ide: Option<String>,
    pub version: Option<String>,
    /// Commands run before the IDE attaches.
    pub init: Vec<String>,
    /// Stop after this many seconds without an SSH connection; `None` = never.
    pub inactivity_duration: Option<u64>,
}

/// What a run stores: one of the three run kinds, tagged by `type` in JSON.
// The kinds differ in size by a few hundred bytes; a run holds one, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RunConfiguration {
    Task(TaskConfig),
    Service(ServiceConfig),
    DevEnvironment(DevEnvironmentConfig),
}

impl RunConfiguration {
    pub fn common(&self) -> &RunCommon {
        match self {
            RunConfiguration::Task(task) => &task.common,
            RunConfiguration::Service(service) => &service.common,
            RunConfiguration::DevEnvironment(dev) => &dev.common,
        }
    }

    pub fn common_mut(&mut self) -> &mut RunCommon {
        match self {
            RunConfiguration::Task(task) => &mut task.common,
            RunConfiguration::Service(service) => &mut service.common,
            RunConfiguration::DevEnvironment(dev) => &mut dev.common,
        }
    }

    /// `task`, `service` or `dev-environment`.
    pub fn type_name(&self) -> &'static str {
        match self {
            RunConfiguration::Task(_) => "task",
            RunConfiguration::Service(_) => "service",
            RunConfiguration::DevEnvironment(_) => "dev-environment",
        }
    }

    /// The commands the job runs: `commands` of a task or service; a dev environment's
    /// (deprecated) `setup` followed by `init`.
    pub fn commands(&self) -> Vec<String> {
        match self {
            RunConfiguration::Task(task) => task.commands.clone(),
            RunConfiguration::Service(service) => service.commands.clone(),
            RunConfiguration::DevEnvironment(dev) => {
                dev.common.setup.iter().chain(&dev.init).cloned().collect()
            }
        }
    }

    /// The commands job `job_num` runs: its node group's `commands` when the task has `groups`,
    /// else [`RunConfiguration::commands`].
    pub fn job_commands(&self, job_num: u32) -> Vec<String> {
        match self {
            RunConfiguration::Task(task) => match task.group_of(job_num) {
                Some(slot) => slot.group.commands.clone(),
                None if task.groups.is_some() => Vec::new(),
                None => task.commands.clone(),
            },
            _ => self.commands(),
        }
    }

    /// The resources job `job_num` asks for: its node group's `resources` (which replace the
    /// task's, as dstack does) or the run's.
    pub fn job_resources(&self, job_num: u32) -> &ResourcesSpec {
        match self {
            RunConfiguration::Task(task) => match task.group_of(job_num) {
                Some(slot) => &slot.group.resources,
                None => &task.common.resources,
            },
            _ => &self.common().resources,
        }
    }

    /// The ports job `job_num` publishes: its node group's `ports` with `groups`, else the run's.
    pub fn job_ports(&self, job_num: u32) -> &[PortMapping] {
        match self {
            RunConfiguration::Task(task) => match task.group_of(job_num) {
                Some(slot) => &slot.group.ports,
                None => &task.common.ports,
            },
            _ => &self.common().ports,
        }
    }

    /// A task's node count; 1 for the other kinds.
    pub fn nodes(&self) -> u32 {
        match self {
            RunConfiguration::Task(task) => task.nodes,
            _ => 1,
        }
    }

    /// The configuration that a job of replica group `group` runs, as dstack builds a group's
    /// job spec: a listed group replaces the service's `commands` and `resources`, and its
    /// `image`, `python`, `nvcc`, `docker`, `privileged` and `spot_policy` apply when given.
    /// Other runs, and services without a list of groups, are returned as they are.
    pub fn for_replica_group(&self, group: Option<&str>) -> Cow<'_, RunConfiguration> {
        let (RunConfiguration::Service(service), Some(name)) = (self, group) else {
            return Cow::Borrowed(self);
        };
        let Some(g) = service.replica_group(name) else {
            return Cow::Borrowed(self);
        };
        let mut s = service.clone();
        s.commands = g.commands.clone();
        s.replica_groups = None;
        s.replicas = g.count;
        s.scaling = g.scaling.clone();
        let c = &mut s.common;
        c.resources = g.resources.clone();
        if g.image.is_some() {
            c.image = g.image.clone();
        }
        if g.python.is_some() {
            c.python = g.python.clone();
        }
        if g.nvcc.is_some() {
            c.nvcc = g.nvcc;
        }
        if g.docker.is_some() {
            c.docker = g.docker;
        }
        if let Some(privileged) = g.privileged {
            c.privileged = privileged;
        }
        if let Some(spot_policy) = g.spot_policy {
            c.profile.spot_policy = spot_policy;
        }
        Cow::Owned(RunConfiguration::Service(s))
    }

    /// A service's replica range; `1..1` for the other kinds.
    pub fn replicas(&self) -> Range<u32> {
        match self {
            RunConfiguration::Service(service) => service.replicas,
            _ => Range::exact(1),
        }
    }
}

/// Where one job of a multi-node task sits among its `groups`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSlot<'a> {
    /// The group's index in `groups`.
    pub index: usize,
    pub group: &'a NodeGroup,
    /// The job's index within its group.
    pub node: u32,
}

impl TaskConfig {
    /// The group of job `job_num` (groups take the job numbers in order: the first group's
    /// nodes are jobs `0..n0`, the next group's follow); `None` without `groups`.
    pub fn group_of(&self, job_num: u32) -> Option<GroupSlot<'_>> {
        let mut first = 0u32;
        for (index, group) in self.groups.as_ref()?.iter().enumerate() {
            if job_num < first.saturating_add(group.nodes) {
                return Some(GroupSlot {
                    index,
                    group,
                    node: job_num - first,
                });
            }
            first = first.saturating_add(group.nodes);
        }
        None
    }

    /// The job number of node `node` of group `index` (`None` out of range).
    pub fn job_of(&self, index: usize, node: u32) -> Option<u32> {
        let groups = self.groups.as_ref()?;
        let group = groups.get(index)?;
        if node >= group.nodes {
            return None;
        }
        let first: u32 = groups[..index].iter().map(|g| g.nodes).sum();
        Some(first + node)
    }
}

const TASK_FIELDS: &[&str] = &["commands", "ports", "nodes", "groups"];
const DEV_ENVIRONMENT_FIELDS: &[&str] = &["ports", "ide", "version", "init", "inactivity_duration"];

pub(crate) fn task_fields() -> &'static [&'static str] {
    static FIELDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FIELDS.get_or_init(|| [RUN_COMMON_FIELDS, PROFILE_FIELDS, TASK_FIELDS].concat())
}

pub(crate) fn dev_environment_fields() -> &'static [&'static str] {
    static FIELDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    FIELDS.get_or_init(|| [RUN_COMMON_FIELDS, PROFILE_FIELDS, DEV_ENVIRONMENT_FIELDS].concat())
}

pub(crate) fn decode_task(d: &mut Decoder<'_>, fields: &Fields<'_>) -> TaskConfig {
    let common = decode_run_common(d, fields);
    let given_commands = fields.with(d, "commands", Decoder::strings);
    let malformed_commands = fields.has("commands") && given_commands.is_none();
    let commands = given_commands.unwrap_or_default();
    let nodes = fields.with(d, "nodes", |d, node, path| {
        let nodes = d.uint::<u32>(node, path)?;
        if nodes == 0 {
            d.error(node, path, "a task needs at least 1 node");
            return None;
        }
        d.within(node, path, nodes.into(), MAX_NODES.into(), "nodes per task")
            .then_some(nodes)
    });
    let groups = fields.get("groups").map(|node| {
        let path = fields.path_of("groups");
        decode_node_groups(d, node, &path, fields, &common)
    });
    if let (Some(_), Some(key)) = (&groups, fields.key("nodes")) {
        d.error(
            key,
            &fields.path_of("nodes"),
            "`nodes` and `groups` are mutually exclusive; give each group its `nodes`",
        );
    }
    if groups.is_none() && commands.is_empty() && !malformed_commands && common.image.is_none() {
        d.error(
            fields.node(),
            &fields.path_of("commands"),
            "either `commands` or `image` must be set",
        );
    }
    let nodes = match &groups {
        Some(groups) => {
            let total: u64 = groups.iter().map(|g| u64::from(g.nodes)).sum();
            let within = fields.get("groups").is_none_or(|node| {
                let unit = "nodes per task (the sum over `groups`)";
                d.within(
                    node,
                    &fields.path_of("groups"),
                    total,
                    MAX_NODES.into(),
                    unit,
                )
            });
            if within {
                u32::try_from(total).unwrap_or(MAX_NODES)
            } else {
                MAX_NODES
            }
        }
        None => nodes.unwrap_or(1),
    };
    TaskConfig {
        common,
        commands,
        nodes,
        groups,
    }
}

fn decode_node_groups(
    d: &mut Decoder<'_>,
    node: &super::yaml::Node,
    path: &str,
    task: &Fields<'_>,
    common: &RunCommon,
) -> Vec<NodeGroup> {
    let Some(entries) = d.list(node, path) else {
        return Vec::new();
    };
    if entries.is_empty() {
        d.error(node, path, "`groups` cannot be an empty list");
    }
    for name in ["commands", "ports", "entrypoint"] {
        if let Some(key) = task.key(name) {
            let message = format!("top-level `{name}` is not allowed when `groups` is set; set `commands` and `ports` in each group");
            d.error(key, &task.path_of(name), message);
        }
    }
    let mut groups: Vec<NodeGroup> = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let Some(fields) = d.fields(
            entry,
            &entry_path,
            &["name", "nodes", "resources", "commands", "ports"],
        ) else {
            continue;
        };
        let name = match fields.get("name") {
            Some(value) => decode_group_name(d, value, &fields.path_of("name")),
            None => Some(i.to_string()),
        };
        let nodes = fields.with(d, "nodes", |d, node, path| {
            let nodes = d.uint::<u32>(node, path)?;
            if nodes == 0 {
                d.error(node, path, "a group needs at least 1 node");
                return None;
            }
            d.within(node, path, nodes.into(), MAX_NODES.into(), "nodes per task")
                .then_some(nodes)
        });
        let commands = fields
            .with(d, "commands", Decoder::strings)
            .unwrap_or_default();
        if commands.is_empty() && common.image.is_none() {
            d.error(
                entry,
                &entry_path,
                "a node group needs `commands`, or the task an `image`",
            );
        }
        let Some(name) = name else { continue };
        if !names.insert(name.clone()) {
            d.error(
                entry,
                &entry_path,
                format!("node group name `{name}` is used twice"),
            );
        }
        groups.push(NodeGroup {
            name,
            nodes: nodes.unwrap_or(1),
            resources: fields
                .get("resources")
                .map(|node| decode_resources(d, node, &fields.path_of("resources")))
                .unwrap_or_default(),
            commands,
            ports: fields.with(d, "ports", decode_ports).unwrap_or_default(),
        });
    }
    groups
}

pub(crate) fn decode_dev_environment(
    d: &mut Decoder<'_>,
    fields: &Fields<'_>,
) -> DevEnvironmentConfig {
    let common = decode_run_common(d, fields);
    if let Some(key) = fields.key("entrypoint") {
        d.error(
            key,
            &fields.path_of("entrypoint"),
            "`entrypoint` is not supported for dev environments",
        );
    }
    let ide = fields.with(d, "ide", |d, node, path| {
        let ides = ["vscode", "cursor", "windsurf", "zed"].map(|ide| (ide, ide));
        d.choice(node, path, &ides).map(str::to_string)
    });
    let version = fields.with(d, "version", Decoder::string);
    if version.is_some() && ide.is_none() && !fields.has("ide") {
        if let Some(key) = fields.key("version") {
            d.error(key, &fields.path_of("version"), "`version` needs `ide`");
        }
    }
    let inactivity_duration = fields.get("inactivity_duration").and_then(|node| {
        decode_off_duration(d, node, &fields.path_of("inactivity_duration"), None, false)
    });
    if common.dstack && inactivity_duration.is_some() {
        if let Some(key) = fields.key("inactivity_duration") {
            d.error(
                key,
                &fields.path_of("inactivity_duration"),
                "`inactivity_duration` cannot be used with `dstack: true` (the server connection counts as activity)",
            );
        }
    }
    DevEnvironmentConfig {
        common,
        ide,
        version,
        init: fields.with(d, "init", Decoder::strings).unwrap_or_default(),
        inactivity_duration,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_configuration, RunConfiguration};

    #[test]
    fn groups_take_the_job_numbers_in_order_with_their_own_commands_and_resources() {
        let yaml = "type: task\ngroups:\n  - name: head\n    nodes: 1\n    commands: [head]\n    ports: [8265]\n  - nodes: 2\n    commands: [work]\n    resources:\n      gpu: H100:8\n";
        let Some(RunConfiguration::Task(task)) =
            parse_configuration("t.yml", yaml).expect("valid").as_run()
        else {
            panic!("a task");
        };
        let config = RunConfiguration::Task(task.clone());
        assert_eq!(config.nodes(), 3);
        let slot = task.group_of(2).expect("job 2");
        assert_eq!(
            (slot.index, slot.group.name.as_str(), slot.node),
            (1, "1", 1)
        );
        assert!(task.group_of(3).is_none());
        assert_eq!(task.job_of(1, 1), Some(2));
        assert_eq!(task.job_of(1, 2), None);
        assert_eq!(config.job_commands(0), vec!["head".to_string()]);
        assert_eq!(config.job_commands(1), vec!["work".to_string()]);
        assert_eq!(config.job_ports(0).len(), 1);
        assert!(config.job_ports(1).is_empty());
        assert_ne!(config.job_resources(0), config.job_resources(2));
        assert_eq!(config.job_resources(1), config.job_resources(2));
    }
}
