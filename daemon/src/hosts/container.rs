//! Bottom layer. A job in a Docker container, under the supervisor's contract: the daemon
//! writes a launcher (a POSIX sh script) that the supervisor runs as the job's process, exactly
//! as it runs a host job's script. The launcher creates the container, attaches to it (its
//! output is the job's log), records a Docker-level failure in `container_error`, removes the
//! container and exits with the container's exit code; the supervisor writes `exit_code` as
//! for any job. So a container survives a daemon restart as a host job does.
//!
//! Nothing secret reaches a command line: the job's environment is exported in the launcher
//! (0600, in the job's private directory) and handed over with `-e NAME`, and registry
//! credentials reach only `pull`'s standard input.

use super::supervisor::unexpected;
use super::{sh_quote, Host, HostError};
use flotilla_protocol::model::PublishedPort;

/// The GPUs a container gets, by vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuPin {
    None,
    /// `--gpus '"device=0,1"'`.
    Nvidia(Vec<u32>),
    /// `/dev/kfd` and the render node of each GPU (`/dev/dri/renderD128` is GPU 0).
    Amd(Vec<u32>),
}

/// A host directory mounted into the container (an instance volume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: String,
    pub container: String,
    /// A missing host path is skipped instead of failing the job.
    pub optional: bool,
}

/// How the container is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// The host's network (multi-node jobs: the nodes reach each other at the hosts' addresses).
    Host,
    /// Docker's bridge; each port is published on the host's 127.0.0.1 at a free port, written
    /// to the job's `ports` file (`docker port` lines), so replicas on one host never collide.
    Bridge { ports: Vec<u16> },
}

/// What runs in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The job's commands as a script, run by `shell` (mounted at [`SCRIPT_IN_CONTAINER`]).
    Script { shell: String, script: String },
    /// dstack's `entrypoint` (split like a shell would) followed by the commands as arguments.
    Entrypoint {
        entrypoint: Vec<String>,
        args: Vec<String>,
    },
    /// The image's own entrypoint and command.
    ImageDefault,
}

/// Where the job's script appears inside its container.
pub const SCRIPT_IN_CONTAINER: &str = "/.flotilla/job.sh";

/// Everything the launcher needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// `flotilla-<submission id>`.
    pub name: String,
    pub image: String,
    pub user: Option<String>,
    pub privileged: bool,
    pub shm_size_bytes: Option<u64>,
    pub gpus: GpuPin,
    pub mounts: Vec<Mount>,
    pub workdir: Option<String>,
    /// Exported in the launcher and passed with `-e NAME` (values never on a command line).
    pub env: Vec<(String, String)>,
    pub network: Network,
    pub command: Command,
    /// The run's MPI hostfile (dstack's `DSTACK_MPI_HOSTFILE`): written in the job's directory
    /// and mounted read-only at [`MPI_HOSTFILE_IN_CONTAINER`].
    pub mpi_hostfile: Option<String>,
}

/// Where the MPI hostfile appears inside a container (where dstack's runner puts it).
pub const MPI_HOSTFILE_IN_CONTAINER: &str = "/dstack/mpi/hostfile";

/// The container's name for a job submission: its id and a digest of its job directory, so
/// that two daemons sharing a Docker engine never meet on a name.
pub fn container_name(submission_id: u64, job_dir: &str) -> String {
    format!("flotilla-{submission_id}-{:08x}", fnv(job_dir) as u32)
}

impl ContainerSpec {
    /// The launcher the supervisor runs (under `sh`) as the job's process.
    pub fn launcher(&self, job_dir: &str) -> String {
        let q = sh_quote;
        let mut s = String::from("# written by flotillad: the job in a Docker container\n");
        s.push_str(&format!("dir={}\nname={}\n", q(job_dir), q(&self.name)));
        for (k, v) in &self.env {
            s.push_str(&format!("export {k}={}\n", q(v)));
        }
        s.push_str(
            "fail() { printf '%s\\n' \"$1\" > \"$dir/container_error\"; exit 125; }\n\
             set --\n\
             printf '%s\\n' \"$name\" > \"$dir/container\"\n",
        );
        let mut args: Vec<String> = vec![
            "--label".into(),
            format!("flotilla.job={}", self.name),
            "--log-driver".into(),
            "none".into(),
        ];
        if let Command::Script { script, .. } = &self.command {
            let delimiter = format!("FLOTILLA_JOB_SCRIPT_{:016x}", fnv(script));
            s.push_str(&format!(
                "cat > \"$dir/container.sh\" <<'{delimiter}'\n{script}{}{delimiter}\n\
                 chmod 644 \"$dir/container.sh\" || fail \"cannot write the job's script in $dir\"\n",
                if script.ends_with('\n') { "" } else { "\n" }
            ));
            args.push("-v".into());
            args.push(format!("$dir/container.sh:{SCRIPT_IN_CONTAINER}:ro"));
        }
        if let Some(hostfile) = &self.mpi_hostfile {
            s.push_str(&format!(
                "printf '%s' {} > \"$dir/mpi_hostfile\" || fail \"cannot write the MPI hostfile in $dir\"\n\
                 chmod 644 \"$dir/mpi_hostfile\"\n",
                q(hostfile)
            ));
            args.push("-v".into());
            args.push(format!("$dir/mpi_hostfile:{MPI_HOSTFILE_IN_CONTAINER}:ro"));
        }
        for m in &self.mounts {
            let check = if m.optional {
                format!(
                    "if [ -e {host} ]; then set -- \"$@\" -v {spec}; fi\n",
                    host = q(&m.host),
                    spec = q(&format!("{}:{}", m.host, m.container))
                )
            } else {
                format!(
                    "[ -e {host} ] || fail {msg}\nset -- \"$@\" -v {spec}\n",
                    host = q(&m.host),
                    msg = q(&format!(
                        "volume {}: {} does not exist on this host; create it, or mark the volume `optional: true`",
                        m.container, m.host
                    )),
                    spec = q(&format!("{}:{}", m.host, m.container))
                )
            };
            s.push_str(&check);
        }
        if let Some(user) = &self.user {
            args.extend(["--user".into(), user.clone()]);
        }
        if self.privileged {
            args.push("--privileged".into());
        }
        if let Some(bytes) = self.shm_size_bytes {
            args.extend(["--shm-size".into(), format!("{bytes}b")]);
        }
        match &self.gpus {
            GpuPin::None => {}
            GpuPin::Nvidia(ids) => {
                let list: Vec<String> = ids.iter().map(u32::to_string).collect();
                args.extend(["--gpus".into(), format!("\"device={}\"", list.join(","))]);
            }
            GpuPin::Amd(ids) => {
                args.extend(["--device".into(), "/dev/kfd".into()]);
                for i in ids {
                    args.extend(["--device".into(), format!("/dev/dri/renderD{}", 128 + i)]);
                }
                args.extend(["--group-add".into(), "video".into()]);
            }
        }
        match &self.network {
            Network::Host => args.extend(["--network".into(), "host".into()]),
            Network::Bridge { ports } => {
                for p in ports {
                    args.extend(["-p".into(), format!("127.0.0.1::{p}")]);
                }
            }
        }
        if let Some(w) = &self.workdir {
            args.extend(["-w".into(), w.clone()]);
        }
        for (k, _) in &self.env {
            args.extend(["-e".into(), k.clone()]);
        }
        let mut tail: Vec<String> = Vec::new();
        match &self.command {
            Command::Script { shell, .. } => {
                args.extend(["--entrypoint".into(), shell.clone()]);
                tail.push(SCRIPT_IN_CONTAINER.into());
            }
            Command::Entrypoint {
                entrypoint,
                args: rest,
            } => {
                if let Some((first, more)) = entrypoint.split_first() {
                    args.extend(["--entrypoint".into(), first.clone()]);
                    tail.extend(more.iter().cloned());
                }
                tail.extend(rest.iter().cloned());
            }
            Command::ImageDefault => {}
        }
        // `$dir` in the script's mount is expanded by the shell; everything else is quoted.
        let render = |a: &String| {
            if a.starts_with("$dir/") {
                format!("\"{a}\"")
            } else {
                q(a)
            }
        };
        let create: Vec<String> = args.iter().map(render).collect();
        let tail: Vec<String> = tail.iter().map(|a| q(a)).collect();
        s.push_str(&format!(
            "[ -f \"$dir/stop_requested\" ] && exit 143\n\
             docker rm -f \"$name\" >/dev/null 2>&1\n\
             docker create --name \"$name\" {} \"$@\" {} {} >/dev/null 2>\"$dir/create.err\" || fail \"$(cat \"$dir/create.err\")\"\n\
             rm -f \"$dir/create.err\"\n\
             if [ -f \"$dir/stop_requested\" ]; then docker rm -f \"$name\" >/dev/null 2>&1; exit 143; fi\n",
            create.join(" "),
            q(&self.image),
            tail.join(" ")
        ));
        s.push_str(
            "docker start -a \"$name\" &\n\
             attached=$!\n\
             until [ \"$(docker inspect -f '{{.State.Running}}' \"$name\" 2>/dev/null)\" = true ]; do\n\
             \x20 kill -0 $attached 2>/dev/null || break\n\
             \x20 sleep 0.05\n\
             done\n\
             : > \"$dir/started\"\n",
        );
        if matches!(&self.network, Network::Bridge { ports } if !ports.is_empty()) {
            s.push_str(
                "i=0\n\
                 while [ $i -lt 100 ]; do\n\
                 \x20 docker port \"$name\" > \"$dir/ports.tmp\" 2>/dev/null && [ -s \"$dir/ports.tmp\" ] && break\n\
                 \x20 i=$((i + 1)); sleep 0.1\n\
                 done\n\
                 mv \"$dir/ports.tmp\" \"$dir/ports\" 2>/dev/null\n",
            );
        }
        s.push_str(
            "wait $attached\n\
             state=$(docker inspect -f '{{.State.Running}} {{.State.ExitCode}} {{.State.Error}}' \"$name\" 2>&1) || fail \"the container vanished: $state\"\n\
             running=${state%% *}; rest=${state#* }; code=${rest%% *}; error=${rest#* }\n\
             [ \"$error\" = \"$rest\" ] && error=\n\
             if [ \"$running\" = true ]; then code=$(docker wait \"$name\" 2>/dev/null || echo 137); fi\n\
             docker rm -f \"$name\" >/dev/null 2>&1\n\
             [ -n \"$error\" ] && fail \"$error\"\n\
             exit \"$code\"\n",
        );
        s
    }
}

fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Registry credentials for one pull.
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
}

/// How a pull ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    /// The image was already on the host.
    Present,
    Pulled,
}

/// Pulls `image` on the host as the job's user unless it is there; credentials go through
/// standard input into a throw-away Docker config removed after the pull.
pub async fn pull(
    host: &Host,
    owner: u32,
    image: &str,
    credentials: Option<Credentials<'_>>,
) -> Result<Pulled, HostError> {
    let stdin = match &credentials {
        Some(c) => format!("{}\n{}\n", c.username, c.password),
        None => String::new(),
    };
    let out = host
        .run_for(Some(owner), &["pull", image], Some(stdin.as_bytes()))
        .await?;
    match out.trim() {
        "present" => Ok(Pulled::Present),
        "pulled" => Ok(Pulled::Pulled),
        other => Err(unexpected(host, "pull", other)),
    }
}

/// Whether the job's container has started (or already ended): the launcher marks it.
pub async fn started(host: &Host, job_dir: &str) -> Result<bool, HostError> {
    let out = host.run(&["container_started", job_dir], None).await?;
    Ok(out.trim() == "yes")
}

/// Why the container of a job could not be created or started (`container_error` in its
/// directory), if it could not.
pub async fn container_error(host: &Host, job_dir: &str) -> Result<Option<String>, HostError> {
    let out = host.run(&["container_error", job_dir], None).await?;
    let text = out.trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// The ports the container's launcher found published (`docker port` lines in `ports`), empty
/// until the container runs.
pub async fn published_ports(host: &Host, job_dir: &str) -> Result<Vec<PublishedPort>, HostError> {
    let out = host.run(&["ports", job_dir], None).await?;
    Ok(parse_ports(&out))
}

/// `8000/tcp -> 127.0.0.1:32768` lines (IPv6 lines `[::1]:32768` too), TCP only.
pub fn parse_ports(text: &str) -> Vec<PublishedPort> {
    let mut ports: Vec<PublishedPort> = text
        .lines()
        .filter_map(|line| {
            let (inner, outer) = line.split_once(" -> ")?;
            let container = inner.trim().strip_suffix("/tcp")?.parse().ok()?;
            let host = outer.trim().rsplit_once(':')?.1.parse().ok()?;
            Some(PublishedPort { container, host })
        })
        .collect();
    ports.sort_by_key(|p| p.container);
    ports.dedup_by_key(|p| p.container);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_port_lines_become_published_ports() {
        let text = "8000/tcp -> 127.0.0.1:32768\n9000/udp -> 127.0.0.1:1\n80/tcp -> [::1]:40001\ngarbage\n";
        assert_eq!(
            parse_ports(text),
            vec![
                PublishedPort {
                    container: 80,
                    host: 40001
                },
                PublishedPort {
                    container: 8000,
                    host: 32768
                },
            ]
        );
    }

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: container_name(42, "/j/42"),
            image: "registry.local:5000/team/train:1".into(),
            user: Some("1000:1000".into()),
            privileged: true,
            shm_size_bytes: Some(1 << 30),
            gpus: GpuPin::Nvidia(vec![2, 3]),
            mounts: vec![
                Mount {
                    host: "/data".into(),
                    container: "/data".into(),
                    optional: false,
                },
                Mount {
                    host: "/cache".into(),
                    container: "/root/.cache".into(),
                    optional: true,
                },
            ],
            workdir: Some("/workflow".into()),
            env: vec![("HF_TOKEN".into(), "s3cr3t'x".into())],
            network: Network::Bridge { ports: vec![8000] },
            command: Command::Script {
                shell: "/bin/sh".into(),
                script: "set -e\necho hi\n".into(),
            },
            mpi_hostfile: Some("10.0.0.1 slots=2\n10.0.0.2 slots=2\n".into()),
        }
    }

    #[test]
    fn the_launcher_passes_every_setting_and_keeps_values_off_the_command_line() {
        let l = spec().launcher("/j/42");
        let create = l
            .lines()
            .find(|line| line.starts_with("docker create"))
            .expect("a create line");
        for want in [
            "'--user' '1000:1000'",
            "'--privileged'",
            "'--shm-size' '1073741824b'",
            "'--gpus' '\"device=2,3\"'",
            "'-p' '127.0.0.1::8000'",
            "'-w' '/workflow'",
            "'-e' 'HF_TOKEN'",
            "'--entrypoint' '/bin/sh'",
            "\"$dir/container.sh:/.flotilla/job.sh:ro\"",
            "'registry.local:5000/team/train:1' '/.flotilla/job.sh'",
        ] {
            assert!(create.contains(want), "{want} missing from {create}");
        }
        // The value is exported in the launcher only, never in an argument.
        assert!(!create.contains("s3cr3t"));
        assert!(l.contains("export HF_TOKEN='s3cr3t'\\''x'\n"));
        // A required volume is checked, an optional one skipped when missing.
        assert!(l.contains("[ -e '/data' ] || fail 'volume /data: /data does not exist"));
        assert!(l.contains("if [ -e '/cache' ]; then set -- \"$@\" -v '/cache:/root/.cache'; fi"));
        assert!(l.contains("echo hi\nFLOTILLA_JOB_SCRIPT_"));
        // The MPI hostfile is written beside the launcher and mounted where dstack puts it.
        assert!(l.contains(
            "printf '%s' '10.0.0.1 slots=2\n10.0.0.2 slots=2\n' > \"$dir/mpi_hostfile\""
        ));
        assert!(
            create.contains("\"$dir/mpi_hostfile:/dstack/mpi/hostfile:ro\""),
            "{create}"
        );
    }

    #[test]
    fn entrypoint_host_network_and_amd_gpus() {
        let mut s = spec();
        s.command = Command::Entrypoint {
            entrypoint: vec!["python".into(), "-m".into(), "http.server".into()],
            args: vec!["8000".into()],
        };
        s.network = Network::Host;
        s.gpus = GpuPin::Amd(vec![1]);
        let l = s.launcher("/j/42");
        let create = l
            .lines()
            .find(|line| line.starts_with("docker create"))
            .expect("a create line");
        assert!(create.contains("'--entrypoint' 'python'"), "{create}");
        assert!(create.ends_with("'-m' 'http.server' '8000' >/dev/null 2>\"$dir/create.err\" || fail \"$(cat \"$dir/create.err\")\""), "{create}");
        assert!(create.contains("'--network' 'host'"));
        assert!(create.contains("'--device' '/dev/kfd' '--device' '/dev/dri/renderD129'"));
        assert!(!l.contains("docker port"));
        s.command = Command::ImageDefault;
        let l = s.launcher("/j/42");
        assert!(!l.contains("--entrypoint"));
    }
}
