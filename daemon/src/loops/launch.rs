//! Driver layer, pure: how a job starts on its host. The job's environment variables, then
//! either a script the supervisor runs on the host (as the job's user, optionally in a `uv`
//! virtual environment) or a container spec (see [`crate::hosts::container`]).

use crate::hosts::container::{self, Command, ContainerSpec, GpuPin, Mount, Network};
use crate::hosts::sh_quote;
use crate::loops::launch_files;
use crate::ops::runs_interpolation::group_addresses;
use flotilla_protocol::config::{GpuVendor, JobEnvironment, RunConfiguration, VolumeMount};
use flotilla_protocol::model::{HostSoftware, Job, Run};
use std::collections::BTreeMap;

/// dstack's working directory of pre-0.20 configurations: a relative `working_dir` is under it.
const LEGACY_REPO_DIR: &str = "/workflow";

/// After a dev environment's `init`, the job stays up until it is stopped (a stop, `max_duration`
/// or `inactivity_duration`), as dstack keeps a dev environment up for an IDE.
const STAY_UP: &str = "while :; do sleep 3600; done\n";

/// What the runner asks the supervisor to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// A script run on the host by `shell` (`default`: bash, else sh) in `workdir`.
    Host {
        script: String,
        shell: String,
        workdir: String,
    },
    /// A container: pull `spec.image` (with the registry's credentials, if any), then run the
    /// launcher.
    Container {
        spec: Box<ContainerSpec>,
        registry_auth: Option<(String, String)>,
    },
}

/// What a launch depends on besides the run and the job.
pub struct LaunchContext<'a> {
    pub fleet_env: &'a BTreeMap<String, String>,
    pub node_ips: &'a [String],
    /// How many GPUs each node of the replica holds, master first (the MPI hostfile's slots);
    /// empty when unknown (every node then counts as this job's).
    pub node_gpus: &'a [usize],
    /// Where the `ssh` that reaches the run's other nodes is (see `cluster.rs`), put first on
    /// the PATH of a host job; `None` when the run has no such key installed on this host.
    pub ssh_bin: Option<&'a str>,
    pub job_dir: &'a str,
    pub software: HostSoftware,
    pub gpu_vendor: Option<GpuVendor>,
    /// The daemon's `base_image` (overrides dstack's base image).
    pub base_image: Option<&'a str>,
    /// The registry password, opened from its sealed form.
    pub registry_password: Option<String>,
}

/// How the job starts on a host with `ctx.software`.
pub fn plan(run: &Run, job: &Job, ctx: LaunchContext<'_>) -> Result<Launch, String> {
    // A service's replica group runs its own commands, image and resources.
    let configuration = run
        .configuration
        .for_replica_group(job.replica_group.as_deref());
    let common = configuration.common();
    let dev = matches!(run.configuration, RunConfiguration::DevEnvironment(_));
    let environment = JobEnvironment::of(common);
    let in_container = match &environment {
        JobEnvironment::Host => false,
        JobEnvironment::BaseImage {
            venv_fallback: true,
            ..
        } => ctx.software.docker,
        _ => true,
    };
    if in_container && !ctx.software.docker {
        return Err(
            "the job runs in a container, and its host has no running Docker engine".into(),
        );
    }
    if !in_container {
        let python = match &environment {
            JobEnvironment::BaseImage { python, .. } => python.clone(),
            _ => None,
        };
        if python.is_some() && !ctx.software.uv {
            return Err(
                "`python` needs Docker or uv on the host, and this host has neither".into(),
            );
        }
        let hostfile = format!("{}/mpi/hostfile", ctx.job_dir);
        let env = job_env(run, job, &ctx, &hostfile, true)?;
        let mut script = String::from("# written by flotillad\n");
        for (k, v) in &env {
            script.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        script.push_str(&format!(
            "mkdir -p {dir} && printf '%s' {content} > {file}\n",
            dir = sh_quote(&format!("{}/mpi", ctx.job_dir)),
            content = sh_quote(&mpi_hostfile(ctx.node_ips, ctx.node_gpus, job)),
            file = sh_quote(&hostfile),
        ));
        if let Some(bin) = ctx.ssh_bin {
            script.push_str(&format!("PATH={}:\"$PATH\"; export PATH\n", sh_quote(bin)));
        }
        if let Some(py) = python {
            script.push_str(&host_venv(&py, ctx.job_dir));
        }
        script.push_str(&launch_files::prelude(
            &run.configuration,
            &run.archives,
            &launch_files::host_uploads_dir(ctx.job_dir),
        )?);
        script.push_str("set -e\n");
        for c in job_commands(&configuration, job, ctx.node_ips)? {
            script.push_str(&c);
            script.push('\n');
        }
        if dev {
            script.push_str(STAY_UP);
        }
        let workdir = match &common.working_dir {
            Some(w) if w.starts_with('/') => w.clone(),
            Some(w) => format!("{}/work/{w}", ctx.job_dir),
            None => format!("{}/work", ctx.job_dir),
        };
        return Ok(Launch::Host {
            script,
            shell: common.shell.clone().unwrap_or_else(|| "default".into()),
            workdir,
        });
    }
    let image = environment
        .image(ctx.base_image)
        .ok_or("the job has no image")?;
    let env = job_env(run, job, &ctx, container::MPI_HOSTFILE_IN_CONTAINER, false)?;
    let commands = job_commands(&configuration, job, ctx.node_ips)?;
    let custom_image = matches!(environment, JobEnvironment::Image(_));
    let command = if let Some(entrypoint) = &common.entrypoint {
        let entrypoint = shlex::split(entrypoint)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                format!("entrypoint: {entrypoint:?} is not a command line (unbalanced quotes?)")
            })?;
        Command::Entrypoint {
            entrypoint,
            args: commands,
        }
    } else if commands.is_empty() && custom_image && !dev {
        Command::ImageDefault
    } else {
        let mut script = String::from("# written by flotillad\n");
        match &environment {
            JobEnvironment::DockerInDocker => script.push_str("start-dockerd\n"),
            JobEnvironment::BaseImage {
                python: Some(py), ..
            } => script.push_str(&container_venv(py)),
            _ => {}
        }
        script.push_str(&launch_files::prelude(
            &run.configuration,
            &run.archives,
            launch_files::CONTAINER_UPLOADS_DIR,
        )?);
        script.push_str("set -e\n");
        for c in &commands {
            script.push_str(c);
            script.push('\n');
        }
        if dev {
            script.push_str(STAY_UP);
        }
        Command::Script {
            shell: container_shell(common.shell.as_deref(), custom_image),
            script,
        }
    };
    if launch_files::has_any(&run.configuration) && !matches!(command, Command::Script { .. }) {
        return Err(
            "`files` and `repos` are put in place by the job's script: they need `commands` and no `entrypoint`"
                .into(),
        );
    }
    let uploads = (!run.archives.is_empty()).then(|| Mount {
        host: launch_files::host_uploads_dir(ctx.job_dir),
        container: launch_files::CONTAINER_UPLOADS_DIR.into(),
        optional: false,
    });
    let mounts = common
        .volumes
        .iter()
        .filter_map(|v| match v {
            VolumeMount::Instance {
                instance_path,
                path,
                optional,
            } => Some(Mount {
                host: instance_path.clone(),
                container: path.clone(),
                optional: *optional,
            }),
            VolumeMount::Network { .. } => None,
        })
        .chain(uploads)
        .collect();
    let gpus = match (ctx.gpu_vendor, job.current.gpus.is_empty()) {
        (_, true) => GpuPin::None,
        (Some(GpuVendor::Amd), false) => GpuPin::Amd(job.current.gpus.clone()),
        (_, false) => GpuPin::Nvidia(job.current.gpus.clone()),
    };
    let network = if run.configuration.nodes() > 1 {
        Network::Host
    } else {
        Network::Bridge {
            ports: job_ports(&run.configuration, job.job_num),
        }
    };
    let workdir = common.working_dir.as_ref().map(|w| {
        if w.starts_with('/') {
            w.clone()
        } else {
            format!("{LEGACY_REPO_DIR}/{w}")
        }
    });
    let registry_auth = match (&common.registry_auth, ctx.registry_password) {
        (Some(auth), Some(password)) => Some((auth.username.clone(), password)),
        _ => None,
    };
    Ok(Launch::Container {
        spec: Box::new(ContainerSpec {
            name: container::container_name(job.current.id, ctx.job_dir),
            image,
            user: common.user.clone(),
            privileged: common.privileged || environment == JobEnvironment::DockerInDocker,
            shm_size_bytes: run
                .configuration
                .job_resources(job.job_num)
                .shm_size
                .map(|gb| (gb * 1024.0 * 1024.0 * 1024.0) as u64),
            gpus,
            mounts,
            workdir,
            env,
            network,
            command,
            mpi_hostfile: Some(mpi_hostfile(ctx.node_ips, ctx.node_gpus, job)),
        }),
        registry_auth,
    })
}

/// The commands of the job (its node group's, with `groups`), the nodes' addresses put in for
/// `${{ groups[i].nodes[j].IP_ADDRESS }}`.
/// The job's commands (its node group's, or its replica group's when `configuration` is the
/// group's), with the group addresses they name put in.
fn job_commands(
    configuration: &RunConfiguration,
    job: &Job,
    node_ips: &[String],
) -> Result<Vec<String>, String> {
    let commands = configuration.job_commands(job.job_num);
    group_addresses(configuration, commands, node_ips).map_err(|e| format!("commands: {e}"))
}

/// The ports the job listens on: the configuration's (or its node group's) `ports` and a
/// service's `port`.
fn job_ports(configuration: &RunConfiguration, job_num: u32) -> Vec<u16> {
    let mut ports: Vec<u16> = configuration
        .job_ports(job_num)
        .iter()
        .map(|p| p.container)
        .collect();
    if let RunConfiguration::Service(service) = configuration {
        if let Some(p) = service.port {
            ports.push(p.container);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// dstack's rule: `shell` as an absolute path or a name under `/bin`; by default bash in
/// dstack's images and sh in any other image.
fn container_shell(shell: Option<&str>, custom_image: bool) -> String {
    match shell {
        Some(s) if s.starts_with('/') => s.to_string(),
        Some(s) => format!("/bin/{s}"),
        None if custom_image => "/bin/sh".into(),
        None => "/bin/bash".into(),
    }
}

/// In dstack's base image: the virtual environment of that Python made by `uv`, as dstack does
/// (a `base_image` without uv must bring `pythonX.Y` itself).
fn container_venv(python: &str) -> String {
    let py = sh_quote(python);
    format!(
        "export DSTACK_VENV_DIR=/dstack/venv\n\
         if command -v uv >/dev/null 2>&1; then\n\
         \x20 mkdir -p \"$DSTACK_VENV_DIR\" && uv venv -q --prompt dstack -p {py} --seed \"$DSTACK_VENV_DIR\" && . \"$DSTACK_VENV_DIR/bin/activate\" || exit 1\n\
         elif ! command -v python{python} >/dev/null 2>&1; then\n\
         \x20 echo \"flotilla: the image has neither uv nor python{python} (python: {python})\" >&2; exit 127\n\
         fi\n"
    )
}

/// On a host without Docker: the virtual environment of that Python in the job's directory.
fn host_venv(python: &str, job_dir: &str) -> String {
    let venv = sh_quote(&format!("{job_dir}/venv"));
    format!(
        "uv venv -q --prompt dstack -p {} --seed {venv} || {{ echo \"flotilla: uv cannot make a Python {python} environment\" >&2; exit 127; }}\n\
         . {venv}/bin/activate\n",
        sh_quote(python)
    )
}

/// dstack's MPI hostfile: one line per node, master first, `<ip> slots=<gpus>` for a node
/// with GPUs and `<ip>` for a CPU node (MPI then counts its cores). Without the nodes'
/// addresses (a single local job), the one node is this machine.
pub fn mpi_hostfile(node_ips: &[String], node_gpus: &[usize], job: &Job) -> String {
    let local = ["127.0.0.1".to_string()];
    let ips = if node_ips.is_empty() {
        &local[..]
    } else {
        node_ips
    };
    let mut out = String::new();
    for (i, ip) in ips.iter().enumerate() {
        let gpus = match node_gpus.get(i) {
            Some(g) if node_gpus.len() == ips.len() => *g,
            _ => job.current.gpus.len(),
        };
        if gpus == 0 {
            out.push_str(&format!("{ip}\n"));
        } else {
            out.push_str(&format!("{ip} slots={gpus}\n"));
        }
    }
    out
}

/// The job's environment: dstack's variables, then the fleet's env, then the run's (which wins).
/// `CUDA_VISIBLE_DEVICES` pins a host job's GPUs (a container sees only its own).
/// `mpi_hostfile`: where the job finds the MPI hostfile.
fn job_env(
    run: &Run,
    job: &Job,
    ctx: &LaunchContext<'_>,
    mpi_hostfile: &str,
    on_host: bool,
) -> Result<Vec<(String, String)>, String> {
    let (fleet_env, node_ips) = (ctx.fleet_env, ctx.node_ips);
    let common = run.configuration.common();
    let env = common
        .env
        .resolve(&run.caller_env)
        .map_err(|e| format!("env: {e}"))?;
    let nodes = run.configuration.nodes();
    let gpus_per_node = job.current.gpus.len();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| out.push((k.to_string(), v));
    set("DSTACK_RUN_NAME", run.name.clone());
    set("DSTACK_NODE_RANK", job.job_num.to_string());
    set("DSTACK_NODES_NUM", nodes.to_string());
    set("DSTACK_GPUS_PER_NODE", gpus_per_node.to_string());
    // The sum over the nodes (node groups may differ); each node as this one when unknown.
    let gpus_num = if !ctx.node_gpus.is_empty() && ctx.node_gpus.len() == nodes as usize {
        ctx.node_gpus.iter().sum()
    } else {
        gpus_per_node * nodes as usize
    };
    set("DSTACK_GPUS_NUM", gpus_num.to_string());
    let master = node_ips.first().map(String::as_str).unwrap_or("127.0.0.1");
    set("DSTACK_MASTER_NODE_IP", master.to_string());
    set("DSTACK_NODES_IPS", node_ips.join("\n"));
    set("DSTACK_MPI_HOSTFILE", mpi_hostfile.to_string());
    if on_host {
        let visible: Vec<String> = job.current.gpus.iter().map(|g| g.to_string()).collect();
        set("CUDA_VISIBLE_DEVICES", visible.join(","));
    }
    for (k, v) in fleet_env.iter().chain(env.iter()) {
        if !is_env_name(k) {
            return Err(format!("env: {k:?} is not a valid variable name"));
        }
        out.retain(|(name, _)| name != k);
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

pub(crate) fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::new_submission;
    use flotilla_protocol::config::parse_configuration;
    use flotilla_protocol::model::RunStatus;
    use flotilla_protocol::Timestamp;
    use std::collections::BTreeMap;

    /// The host script of a job on a host without Docker or uv.
    fn job_script(
        run: &Run,
        job: &Job,
        fleet_env: &BTreeMap<String, String>,
        node_ips: &[String],
    ) -> Result<String, String> {
        let ctx = LaunchContext {
            fleet_env,
            node_ips,
            node_gpus: &[],
            ssh_bin: None,
            job_dir: "/j/1",
            software: HostSoftware::default(),
            gpu_vendor: None,
            base_image: None,
            registry_password: None,
        };
        match plan(run, job, ctx)? {
            Launch::Host { script, .. } => Ok(script),
            other => Err(format!("not a host launch: {other:?}")),
        }
    }

    fn run_of(yaml: &str) -> Run {
        let configuration = parse_configuration("t.yml", yaml)
            .expect("a valid task")
            .as_run()
            .expect("a run configuration");
        let nodes = configuration.nodes().max(1);
        Run {
            id: 1,
            name: "calm-owl-1".into(),
            user: "alice".into(),
            uid: 1000,
            status: RunStatus::Running,
            termination_reason: None,
            status_message: None,
            submitted_at: Timestamp(0),
            finished_at: None,
            configuration_type: "task".into(),
            configuration_path: None,
            configuration,
            caller_env: Default::default(),
            retry_window_started_at: None,
            service: None,
            next_triggered_at: None,
            archives: Vec::new(),
            cluster_key: None,
            deployment_num: 0,
            desired_replicas: Default::default(),
            last_scaled_at: None,
            jobs: (0..nodes)
                .map(|j| Job {
                    replica_num: 0,
                    job_num: j,
                    job_name: format!("calm-owl-1-{j}-0"),
                    replica_group: None,
                    deployment_num: 0,
                    current: new_submission(10 + u64::from(j), 0, Timestamp(0)),
                    previous_submissions: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_script_exports_the_job_environment_quoted_then_runs_the_commands() {
        let mut run = run_of(
            "type: task\nnodes: 2\nenv:\n  - GREETING=it's me\ncommands:\n  - echo \"$GREETING\"\n  - python train.py\n",
        );
        run.jobs[1].current.gpus = vec![2, 3];
        let fleet_env = BTreeMap::from([("FLEET_WIDE".to_string(), "yes".to_string())]);
        let ips = vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let script = job_script(&run, &run.jobs[1], &fleet_env, &ips).expect("a script");
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "# written by flotillad");
        for want in [
            "export DSTACK_RUN_NAME='calm-owl-1'",
            "export DSTACK_NODE_RANK='1'",
            "export DSTACK_NODES_NUM='2'",
            "export DSTACK_GPUS_PER_NODE='2'",
            "export DSTACK_GPUS_NUM='4'",
            "export DSTACK_MASTER_NODE_IP='10.0.0.1'",
            "export CUDA_VISIBLE_DEVICES='2,3'",
            "export FLEET_WIDE='yes'",
            "export GREETING='it'\\''s me'",
        ] {
            assert!(lines.contains(&want), "{want} missing from\n{script}");
        }
        assert!(script.contains("export DSTACK_NODES_IPS='10.0.0.1\n10.0.0.2'\n"));
        assert!(script.ends_with("set -e\necho \"$GREETING\"\npython train.py\n"));
        // The run's own env comes after the fleet's, so it wins.
        let fleet_at = script.find("FLEET_WIDE").expect("fleet env");
        let run_at = script.find("GREETING=").expect("run env");
        assert!(fleet_at < run_at);
    }

    #[test]
    fn each_group_runs_its_commands_with_the_hostfile_and_the_nodes_addresses() {
        let mut run = run_of(
            "type: task\ngroups:\n  - nodes: 1\n    commands:\n      - mpirun --hostfile $DSTACK_MPI_HOSTFILE -n $DSTACK_GPUS_NUM x\n  - nodes: 2\n    commands:\n      - echo ${{ groups[0].nodes[0].IP_ADDRESS }} ${{ groups[1].nodes[1].IP_ADDRESS }}\n",
        );
        run.jobs[1].current.gpus = vec![0, 1];
        let ips: Vec<String> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .map(String::from)
            .to_vec();
        let ctx = |gpus: &'static [usize]| LaunchContext {
            fleet_env: Box::leak(Box::default()),
            node_ips: Box::leak(ips.clone().into_boxed_slice()),
            node_gpus: gpus,
            ssh_bin: Some("/j/1/ssh/bin"),
            job_dir: "/j/1",
            software: HostSoftware::default(),
            gpu_vendor: None,
            base_image: None,
            registry_password: None,
        };
        let Ok(Launch::Host { script, .. }) = plan(&run, &run.jobs[0], ctx(&[0, 2, 2])) else {
            panic!("a host launch");
        };
        assert!(script.contains("export DSTACK_MPI_HOSTFILE='/j/1/mpi/hostfile'\n"));
        assert!(script.contains("export DSTACK_GPUS_NUM='4'\n"), "{script}");
        assert!(script.contains("printf '%s' '10.0.0.1\n10.0.0.2 slots=2\n10.0.0.3 slots=2\n' > '/j/1/mpi/hostfile'\n"), "{script}");
        assert!(script.contains("PATH='/j/1/ssh/bin':\"$PATH\"; export PATH\n"));
        assert!(script
            .ends_with("set -e\nmpirun --hostfile $DSTACK_MPI_HOSTFILE -n $DSTACK_GPUS_NUM x\n"));
        let Ok(Launch::Host { script, .. }) = plan(&run, &run.jobs[1], ctx(&[])) else {
            panic!("a host launch");
        };
        assert!(
            script.ends_with("set -e\necho 10.0.0.1 10.0.0.3\n"),
            "{script}"
        );
        // Without the nodes' GPUs, each node counts as this one.
        assert!(
            script.contains("10.0.0.1 slots=2\n10.0.0.2 slots=2\n"),
            "{script}"
        );
    }

    #[test]
    fn a_single_node_job_without_addresses_has_the_local_master() {
        let run = run_of("type: task\ncommands: [\"true\"]\n");
        let script = job_script(&run, &run.jobs[0], &BTreeMap::new(), &[]).expect("a script");
        assert!(script.contains("export DSTACK_MASTER_NODE_IP='127.0.0.1'\n"));
        assert!(script.contains("export CUDA_VISIBLE_DEVICES=''\n"));
    }

    #[test]
    fn a_bad_variable_name_is_an_error_that_names_it() {
        let run = run_of("type: task\ncommands: [\"true\"]\n");
        let fleet_env = BTreeMap::from([("1BAD".to_string(), "x".to_string())]);
        let err = job_script(&run, &run.jobs[0], &fleet_env, &[]).expect_err("refused");
        assert!(err.contains("\"1BAD\""), "{err}");
        assert!(is_env_name("_OK_1"));
        assert!(!is_env_name("") && !is_env_name("A-B"));
    }
}
