//! Where a run's commands run: on the host, in a container of an image, or in a virtual
//! environment on the host. One home for the rule, used by the scheduler (which hosts can take
//! the job) and the daemon's runner (how it starts the job).
//!
//! dstack runs every job in a container; flotilla runs a job on the host unless the
//! configuration asks for an environment: `image`, `python`, `nvcc`, `docker: true`, or a field
//! only a container can honour (`user`, `privileged`, `entrypoint`, `shm_size`, instance
//! volumes). Without `image`, `python`/`nvcc` select dstack's base image on hosts with Docker;
//! `python` alone may also run in a `uv` virtual environment on a host without Docker.

use super::common::RunCommon;
use super::mounts::VolumeMount;

/// dstack's base image (`dstackai/base:<version>-<base|devel>-ubuntu<version>`), as dstack 0.19
/// names it; `python` selects the virtual environment made inside it with `uv`.
pub const DSTACK_BASE_IMAGE: &str = "dstackai/base";
pub const DSTACK_BASE_IMAGE_VERSION: &str = "0.15";
pub const DSTACK_BASE_IMAGE_UBUNTU: &str = "24.04";
/// dstack's Docker-in-Docker image (`docker: true`).
pub const DSTACK_DIND_IMAGE: &str = "dstackai/dind";

/// How a job's environment is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnvironment {
    /// The host's own environment (the job runs as a process of its user).
    Host,
    /// A container of the image the configuration names.
    Image(String),
    /// dstack's base image (`nvcc` selects its `devel` variant); `python` is the version of the
    /// virtual environment made in it. `venv_fallback`: on a host without Docker the job may run
    /// on the host in a `uv` virtual environment instead (no container-only field is set).
    BaseImage {
        python: Option<String>,
        nvcc: bool,
        venv_fallback: bool,
    },
    /// Docker-in-Docker (`docker: true`): dstack's dind image, privileged, `start-dockerd` first.
    DockerInDocker,
}

impl JobEnvironment {
    /// The environment a configuration asks for.
    pub fn of(common: &RunCommon) -> JobEnvironment {
        if common.docker == Some(true) {
            return JobEnvironment::DockerInDocker;
        }
        if let Some(image) = &common.image {
            return JobEnvironment::Image(image.clone());
        }
        let container_only = container_only_fields(common);
        if common.python.is_some() || common.nvcc == Some(true) || !container_only.is_empty() {
            return JobEnvironment::BaseImage {
                python: common.python.clone(),
                nvcc: common.nvcc == Some(true),
                venv_fallback: container_only.is_empty() && common.nvcc != Some(true),
            };
        }
        JobEnvironment::Host
    }

    /// Whether the job needs a container (a host with Docker), or may run in a `uv` virtual
    /// environment on a host without one.
    pub fn needs(&self) -> HostNeed {
        match self {
            JobEnvironment::Host => HostNeed::Nothing,
            JobEnvironment::BaseImage {
                venv_fallback: true,
                ..
            } => HostNeed::DockerOrUv,
            _ => HostNeed::Docker,
        }
    }

    /// The image a container of this environment runs; `base_image` overrides dstack's base
    /// image (a mirror, an offline site).
    pub fn image(&self, base_image: Option<&str>) -> Option<String> {
        match self {
            JobEnvironment::Host => None,
            JobEnvironment::Image(image) => Some(image.clone()),
            JobEnvironment::BaseImage { nvcc, .. } => Some(match base_image {
                Some(image) => image.to_string(),
                None => format!(
                    "{DSTACK_BASE_IMAGE}:{DSTACK_BASE_IMAGE_VERSION}-{}-ubuntu{DSTACK_BASE_IMAGE_UBUNTU}",
                    if *nvcc { "devel" } else { "base" }
                ),
            }),
            JobEnvironment::DockerInDocker => Some(DSTACK_DIND_IMAGE.to_string()),
        }
    }
}

/// What a job needs from its host beyond resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HostNeed {
    #[default]
    Nothing,
    Docker,
    DockerOrUv,
}

impl HostNeed {
    /// Whether a host with Docker (`docker`) and uv (`uv`) can take the job.
    pub fn met(self, docker: bool, uv: bool) -> bool {
        match self {
            HostNeed::Nothing => true,
            HostNeed::Docker => docker,
            HostNeed::DockerOrUv => docker || uv,
        }
    }

    /// What a host that cannot take the job lacks, for a waiting reason.
    pub fn describe(self) -> &'static str {
        match self {
            HostNeed::Nothing => "nothing",
            HostNeed::Docker => "a running Docker engine",
            HostNeed::DockerOrUv => "a running Docker engine or uv",
        }
    }
}

/// The fields set that only a container can honour.
pub fn container_only_fields(common: &RunCommon) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if common.user.is_some() {
        fields.push("user");
    }
    if common.privileged {
        fields.push("privileged");
    }
    if common.entrypoint.is_some() {
        fields.push("entrypoint");
    }
    if common.resources.shm_size.is_some() {
        fields.push("resources.shm_size");
    }
    if common
        .volumes
        .iter()
        .any(|v| matches!(v, VolumeMount::Instance { .. }))
    {
        fields.push("volumes");
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_configuration;

    fn env_of(yaml: &str) -> JobEnvironment {
        let config = parse_configuration("t.yml", yaml).expect("valid");
        let run = config.as_run().expect("a run");
        JobEnvironment::of(run.common())
    }

    #[test]
    fn each_configuration_gets_the_environment_dstack_gives_it() {
        assert_eq!(env_of("type: task\ncommands: [x]\n"), JobEnvironment::Host);
        assert_eq!(
            env_of("type: task\nimage: ubuntu:24.04\ncommands: [x]\n"),
            JobEnvironment::Image("ubuntu:24.04".into())
        );
        let py = env_of("type: task\npython: \"3.11\"\ncommands: [x]\n");
        assert_eq!(
            py,
            JobEnvironment::BaseImage {
                python: Some("3.11".into()),
                nvcc: false,
                venv_fallback: true
            }
        );
        assert_eq!(py.needs(), HostNeed::DockerOrUv);
        assert_eq!(
            py.image(None).as_deref(),
            Some("dstackai/base:0.15-base-ubuntu24.04")
        );
        assert_eq!(
            py.image(Some("mirror/base:1")).as_deref(),
            Some("mirror/base:1")
        );
        let nvcc = env_of("type: task\nnvcc: true\ncommands: [x]\n");
        assert_eq!(nvcc.needs(), HostNeed::Docker);
        assert_eq!(
            nvcc.image(None).as_deref(),
            Some("dstackai/base:0.15-devel-ubuntu24.04")
        );
        let dind = env_of("type: task\ndocker: true\ncommands: [x]\n");
        assert_eq!(dind, JobEnvironment::DockerInDocker);
        assert_eq!(dind.image(None).as_deref(), Some("dstackai/dind"));
        // A field only a container honours takes the job into the base image, with no venv.
        let user = env_of("type: task\npython: \"3.12\"\nuser: \"1000\"\ncommands: [x]\n");
        assert_eq!(user.needs(), HostNeed::Docker);
        let vol = env_of("type: task\nvolumes: [\"/data:/data\"]\ncommands: [x]\n");
        assert!(matches!(
            vol,
            JobEnvironment::BaseImage {
                venv_fallback: false,
                ..
            }
        ));
    }

    #[test]
    fn a_host_meets_a_need_by_what_it_runs() {
        assert!(HostNeed::Nothing.met(false, false));
        assert!(HostNeed::Docker.met(true, false) && !HostNeed::Docker.met(false, true));
        assert!(HostNeed::DockerOrUv.met(false, true) && !HostNeed::DockerOrUv.met(false, false));
    }
}
