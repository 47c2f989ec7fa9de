//! [`RunCommon`]: the fields every run kind shares (image, env, resources, ports, ...) and the
//! profile fields, read and checked together (`image` excludes `python`, `nvcc` and `docker`).

use super::decode::{item, Decoder, Fields};
use super::env::{decode_env, Env};
use super::mounts::{
    decode_files, decode_repos, decode_volumes, FileMapping, RepoSpec, VolumeMount,
};
use super::profile::{decode_profile, InstanceProfile, RunPolicy, DEFAULT_RUN_IDLE_DURATION};
use super::resources::{decode_resources, ResourcesSpec};
use super::yaml::{parse_yaml_int, Node};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// The fields of `task`, `service` and `dev-environment` that SPEC section 1 calls common,
/// plus the profile fields, with defaults resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCommon {
    pub name: Option<String>,
    pub image: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
    pub entrypoint: Option<String>,
    pub working_dir: Option<String>,
    pub registry_auth: Option<RegistryAuth>,
    /// `3.9` .. `3.14`; only without `image`.
    pub python: Option<String>,
    pub nvcc: Option<bool>,
    /// Docker inside the job (privileged); only without `image`, `python` and `nvcc`.
    pub docker: Option<bool>,
    /// Make the server reachable inside the run.
    pub dstack: bool,
    pub single_branch: Option<bool>,
    pub env: Env,
    pub shell: Option<String>,
    pub resources: ResourcesSpec,
    /// 0..=100, higher first.
    pub priority: u32,
    pub volumes: Vec<VolumeMount>,
    /// Tasks and dev environments only (a service has `port`).
    pub ports: Vec<PortMapping>,
    pub files: Vec<FileMapping>,
    pub repos: Vec<RepoSpec>,
    /// Deprecated: dev environments run it before `init`; tasks and services ignore it.
    pub setup: Vec<String>,

    /// Where instances come from and how they are kept (shared with fleets).
    #[serde(flatten)]
    pub profile: InstanceProfile,
    /// How long the run may last, how it stops, which fleets it may use.
    #[serde(flatten)]
    pub policy: RunPolicy,
}

impl Default for RunCommon {
    /// What a configuration that sets none of these fields gets.
    fn default() -> Self {
        RunCommon {
            name: None,
            image: None,
            user: None,
            privileged: false,
            entrypoint: None,
            working_dir: None,
            registry_auth: None,
            python: None,
            nvcc: None,
            docker: None,
            dstack: false,
            single_branch: None,
            env: Env::default(),
            shell: None,
            resources: ResourcesSpec::default(),
            priority: 0,
            volumes: Vec::new(),
            ports: Vec::new(),
            files: Vec::new(),
            repos: Vec::new(),
            setup: Vec::new(),
            profile: InstanceProfile::default(),
            policy: RunPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// `local:container`; `local` is `None` for `*:80` (any free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub local: Option<u16>,
    pub container: u16,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local {
            Some(local) => write!(f, "{local}:{}", self.container),
            None => write!(f, "*:{}", self.container),
        }
    }
}

impl PortMapping {
    /// `8080` (the same port on both sides), `"8080:80"` (local:container), `"*:80"`.
    pub fn parse(s: &str) -> Result<PortMapping, String> {
        let port = |text: &str| {
            parse_yaml_int(text.trim())
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("{s:?} is not a port mapping; write PORT, \"LOCAL:CONTAINER\" or \"*:CONTAINER\" with ports 1-65535")
                })
        };
        match s.split_once(':') {
            None => port(s).map(|p| PortMapping {
                local: Some(p),
                container: p,
            }),
            Some((local, container)) => {
                let local = if local.trim() == "*" {
                    None
                } else {
                    Some(port(local)?)
                };
                Ok(PortMapping {
                    local,
                    container: port(container)?,
                })
            }
        }
    }
}

pub(crate) const RUN_COMMON_FIELDS: &[&str] = &[
    "type",
    "name",
    "image",
    "user",
    "privileged",
    "entrypoint",
    "working_dir",
    "home_dir",
    "registry_auth",
    "python",
    "nvcc",
    "docker",
    "dstack",
    "single_branch",
    "env",
    "shell",
    "resources",
    "priority",
    "volumes",
    "files",
    "repos",
    "setup",
];

/// A run, fleet or volume name: lowercase letters, digits and `-`, starting with a letter.
pub(crate) fn decode_resource_name(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let name = d.string(node, path)?;
    let valid = name.len() >= 2
        && name.len() <= 41
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        let message = format!(
            "{name:?} is not a valid name: use 2-41 lowercase letters, digits and `-`, starting with a letter"
        );
        d.error(node, path, message);
        return None;
    }
    Some(name)
}

/// Reads the common and profile fields of a run configuration.
pub(crate) fn decode_run_common(d: &mut Decoder<'_>, fields: &Fields<'_>) -> RunCommon {
    let bool_field = |d: &mut Decoder<'_>, name: &str| fields.with(d, name, Decoder::bool);
    let string_field = |d: &mut Decoder<'_>, name: &str| fields.with(d, name, Decoder::string);
    let name = fields.with(d, "name", decode_resource_name);
    let image = string_field(d, "image");
    let user = string_field(d, "user");
    let privileged = bool_field(d, "privileged").unwrap_or(false);
    let entrypoint = string_field(d, "entrypoint");
    let working_dir = string_field(d, "working_dir");
    let registry_auth = fields.with(d, "registry_auth", decode_registry_auth);
    let python = fields.with(d, "python", decode_python);
    let nvcc = bool_field(d, "nvcc");
    let docker = bool_field(d, "docker");
    let dstack = bool_field(d, "dstack").unwrap_or(false);
    let single_branch = bool_field(d, "single_branch");
    let env = fields
        .get("env")
        .map(|node| decode_env(d, node, &fields.path_of("env")))
        .unwrap_or_default();
    let shell = fields.with(d, "shell", decode_shell);
    let resources = fields
        .get("resources")
        .map(|node| decode_resources(d, node, &fields.path_of("resources")))
        .unwrap_or_default();
    let priority = fields.with(d, "priority", decode_priority).unwrap_or(0);
    let volumes = fields
        .with(d, "volumes", decode_volumes)
        .unwrap_or_default();
    let ports = fields.with(d, "ports", decode_ports).unwrap_or_default();
    let files = fields.with(d, "files", decode_files).unwrap_or_default();
    let repos = fields.with(d, "repos", decode_repos).unwrap_or_default();
    let setup = fields
        .with(d, "setup", Decoder::strings)
        .unwrap_or_default();
    let _deprecated_home_dir = string_field(d, "home_dir");

    check_image_sources(d, fields, image.is_some(), python.is_some(), nvcc, docker);

    let (profile, policy) = decode_profile(d, fields, DEFAULT_RUN_IDLE_DURATION);
    RunCommon {
        name,
        image,
        user,
        privileged,
        entrypoint,
        working_dir,
        registry_auth,
        python,
        nvcc,
        docker,
        dstack,
        single_branch,
        env,
        shell,
        resources,
        priority,
        volumes,
        ports,
        files,
        repos,
        setup,
        profile,
        policy,
    }
}

/// `image` brings its own environment: `python` and `nvcc` pick a default image, and `docker`
/// picks a Docker-in-Docker one, so at most one of them may be given.
pub(crate) fn check_image_sources(
    d: &mut Decoder<'_>,
    fields: &Fields<'_>,
    image: bool,
    python: bool,
    nvcc: Option<bool>,
    docker: Option<bool>,
) {
    let conflict = |d: &mut Decoder<'_>, name: &str, message: &str| {
        if let Some(key) = fields.key(name) {
            d.error(key, &fields.path_of(name), message);
        }
    };
    if image && python {
        conflict(
            d,
            "python",
            "`python` cannot be used together with `image` (the image brings its own Python); remove one of them",
        );
    }
    if image && nvcc == Some(true) {
        conflict(
            d,
            "nvcc",
            "`nvcc` cannot be used together with `image` (it selects a default image with the CUDA compiler); remove one of them",
        );
    }
    if docker == Some(true) && (image || python || nvcc == Some(true)) {
        conflict(
            d,
            "docker",
            "`docker: true` cannot be used together with `image`, `python` or `nvcc` (it selects the Docker-in-Docker image)",
        );
    }
}

fn decode_registry_auth(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RegistryAuth> {
    let fields = d.fields(node, path, &["username", "password"])?;
    let username = fields.with(d, "username", Decoder::string);
    let password = fields.with(d, "password", Decoder::string);
    for (name, value) in [("username", &username), ("password", &password)] {
        if value.is_none() && !fields.has(name) {
            fields.missing(d, name);
        }
    }
    Some(RegistryAuth {
        username: username?,
        password: password?,
    })
}

pub(crate) fn decode_python(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    const VERSIONS: &[&str] = &["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"];
    let text = d.string(node, path)?;
    // A YAML float reads `3.10` as 3.1; dstack users write it unquoted.
    let version = if text == "3.1" {
        "3.10".to_string()
    } else {
        text
    };
    if VERSIONS.contains(&version.as_str()) {
        Some(version)
    } else {
        let message = format!(
            "unsupported Python version {version:?}; expected one of {}",
            VERSIONS.join(", ")
        );
        d.error(node, path, message);
        None
    }
}

fn decode_shell(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<String> {
    let shell = d.string(node, path)?;
    if shell == "sh" || shell == "bash" || shell.starts_with('/') {
        Some(shell)
    } else {
        d.error(
            node,
            path,
            format!("{shell:?} is not a shell: use `sh`, `bash` or an absolute path"),
        );
        None
    }
}

fn decode_priority(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<u32> {
    let priority = node
        .scalar()
        .and_then(|text| parse_yaml_int(text.trim()))
        .filter(|p| (0..=100).contains(p));
    if priority.is_none() {
        let message = format!(
            "priority must be a whole number from 0 to 100, found {}",
            node.describe()
        );
        d.error(node, path, message);
    }
    priority.and_then(|p| u32::try_from(p).ok())
}

pub(crate) fn decode_port(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<PortMapping> {
    let Some(text) = node.scalar() else {
        d.error(
            node,
            path,
            format!(
                "expected a port or \"LOCAL:CONTAINER\", found {}",
                node.describe()
            ),
        );
        return None;
    };
    PortMapping::parse(text)
        .map_err(|e| d.error(node, path, e))
        .ok()
}

pub(crate) fn decode_ports(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<Vec<PortMapping>> {
    let entries = d.list(node, path)?;
    let mut ports: Vec<PortMapping> = Vec::new();
    let mut containers = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let port = if entry.scalar().is_some() {
            decode_port(d, entry, &entry_path)
        } else {
            decode_port_fields(d, entry, &entry_path)
        };
        let Some(port) = port else { continue };
        if !containers.insert(port.container) {
            d.error(
                entry,
                &entry_path,
                format!("container port {} is listed twice", port.container),
            );
        } else {
            ports.push(port);
        }
    }
    Some(ports)
}

/// `{local_port, container_port}`, as dstack serializes a mapping.
fn decode_port_fields(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<PortMapping> {
    let fields = d.fields(node, path, &["local_port", "container_port"])?;
    let local = fields.with(d, "local_port", Decoder::uint::<u16>);
    let Some(container) = fields.with(d, "container_port", Decoder::uint::<u16>) else {
        if !fields.has("container_port") {
            fields.missing(d, "container_port");
        }
        return None;
    };
    Some(PortMapping { local, container })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_read_local_then_container() {
        let both = |p: u16| PortMapping {
            local: Some(p),
            container: p,
        };
        assert_eq!(PortMapping::parse("8080"), Ok(both(8080)));
        assert_eq!(
            PortMapping::parse("8080:80"),
            Ok(PortMapping {
                local: Some(8080),
                container: 80
            })
        );
        assert_eq!(
            PortMapping::parse("*:80"),
            Ok(PortMapping {
                local: None,
                container: 80
            })
        );
        assert!(PortMapping::parse("0").is_err());
        assert!(PortMapping::parse("70000").is_err());
        assert!(PortMapping::parse("a:b").is_err());
    }
}
