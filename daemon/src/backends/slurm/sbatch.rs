//! The batch script of one replica (pure): `#SBATCH` options from the job's resources, then
//! each rank running under flotilla's supervisor contract (pid, log and exit code in the rank's
//! job directory), one rank per node, ranks in node order. Also the reading of the `queue`
//! verb's answer.

use crate::hosts::sh_quote;

/// One rank of the replica: where its files live and where it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rank {
    pub job_dir: String,
    pub workdir: String,
}

/// What goes into `sbatch`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    /// `flotilla-<submission id of rank 0>`: how a restarted daemon finds a job it submitted.
    pub name: String,
    pub partitions: Vec<String>,
    pub cpus_per_task: u32,
    pub memory_mb: u64,
    pub gpus_per_node: u32,
    /// `max_duration`, rounded up to minutes.
    pub time_minutes: Option<u64>,
    /// `default`: bash when present, else sh.
    pub shell: String,
    /// Rank 0 first; `--nodes` is their number.
    pub ranks: Vec<Rank>,
}

/// `#SBATCH --time` from `max_duration` seconds (whole minutes, at least 1).
pub fn time_minutes(max_duration_secs: Option<u64>) -> Option<u64> {
    max_duration_secs.map(|s| s.div_ceil(60).max(1))
}

/// The batch script. Run by sbatch on the first node; with several nodes it starts itself once
/// per node through `srun` (`--rank`), from the copy in rank 0's job directory.
pub fn batch_script(spec: &BatchSpec) -> String {
    let nodes = spec.ranks.len().max(1);
    let mut s = String::from("#!/bin/sh\n");
    let mut opt = |o: String| s.push_str(&format!("#SBATCH {o}\n"));
    opt(format!("--job-name={}", spec.name));
    if !spec.partitions.is_empty() {
        opt(format!("--partition={}", spec.partitions.join(",")));
    }
    opt(format!("--nodes={nodes}"));
    opt("--ntasks-per-node=1".into());
    opt(format!("--cpus-per-task={}", spec.cpus_per_task.max(1)));
    opt(format!("--mem={}M", spec.memory_mb.max(1)));
    if spec.gpus_per_node > 0 {
        opt(format!("--gres=gpu:{}", spec.gpus_per_node));
    }
    if let Some(t) = spec.time_minutes {
        opt(format!("--time={t}"));
    }
    opt("--output=/dev/null".into());
    opt("--no-requeue".into());
    s.push_str("# written by flotillad: each rank runs under the supervisor's contract\n");
    // The submitter's umask, for the job; every rank (srun starts them with this script's 077)
    // takes it from the environment.
    s.push_str(
        "set -u\njob_mask=${FLOTILLA_JOB_MASK:-$(umask)}\nexport FLOTILLA_JOB_MASK=\"$job_mask\"\numask 077\n",
    );
    s.push_str(&format!("shell={}\n", sh_quote(&spec.shell)));
    let case = |pick: &dyn Fn(&Rank) -> &str| {
        let mut c = String::from("  case $1 in\n");
        for (i, r) in spec.ranks.iter().enumerate() {
            c.push_str(&format!("    {i}) echo {} ;;\n", sh_quote(pick(r))));
        }
        c.push_str("  esac\n");
        c
    };
    s.push_str(&format!("rank_dir() {{\n{}}}\n", case(&|r| &r.job_dir)));
    s.push_str(&format!("rank_workdir() {{\n{}}}\n", case(&|r| &r.workdir)));
    s.push_str(RANK_MAIN);
    s.push_str(&format!(
        "if [ \"${{1:-}}\" = --rank ]; then run_rank \"${{SLURM_NODEID:-0}}\"; exit $?; fi\n{NODE_ADDRESSES}"
    ));
    if nodes > 1 {
        s.push_str(&format!(
            "trap ':' TERM\nsrun --ntasks-per-node=1 --kill-on-bad-exit=0 sh {} --rank &\ns=$!\n\
             while :; do wait \"$s\"; c=$?; kill -0 \"$s\" 2>/dev/null || break; done\nexit \"$c\"\n",
            sh_quote(&format!("{}/batch.sh", spec.ranks[0].job_dir))
        ));
    } else {
        s.push_str("run_rank 0\n");
    }
    s
}

/// One rank: the job in a session of its own (a TERM from `scancel --signal` reaches it, the
/// wrapper stays to record the exit code), its output appended to the log.
const RANK_MAIN: &str = r#"run_rank() {
  rank=$1
  dir=$(rank_dir "$rank")
  workdir=$(rank_workdir "$rank")
  [ -n "$dir" ] || { echo "flotilla: no rank $rank in this replica" >&2; return 2; }
  : >> "$dir/log"
  sh_=$shell
  if [ "$sh_" = default ]; then
    if command -v bash >/dev/null 2>&1; then sh_=bash; else sh_=sh; fi
  fi
  { mkdir -p "$workdir" && cd "$workdir"; } 2>>"$dir/log" || {
    echo 127 > "$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"; return 0; }
  export FLOTILLA_RANK="$rank"
  if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then export FLOTILLA_SLURM_CUDA="$CUDA_VISIBLE_DEVICES"; fi
  (umask "$job_mask" && exec setsid "$sh_" "$dir/script") </dev/null >>"$dir/log" 2>&1 &
  j=$!
  trap 'kill -TERM -- "-$j" 2>/dev/null || kill -TERM "$j" 2>/dev/null' TERM
  echo "$j" > "$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"
  while :; do wait "$j"; c=$?; kill -0 "$j" 2>/dev/null || break; done
  echo "$c" > "$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"
  return "$c"
}
"#;

/// The nodes' addresses in node order (`scontrol show hostnames`; each node's `NodeAddr`, else
/// what `getent hosts` finds, else its name), for every rank.
const NODE_ADDRESSES: &str = r#"hosts=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null)
[ -n "$hosts" ] || hosts=$(hostname)
ips=
for h in $hosts; do
  ip=$(scontrol show node -o "$h" 2>/dev/null | tr ' ' '\n' | sed -n 's/^NodeAddr=//p' | head -n 1)
  [ -n "$ip" ] && [ "$ip" != "$h" ] || ip=$(getent hosts "$h" 2>/dev/null | awk '{print $1; exit}')
  ips="$ips${ips:+
}${ip:-$h}"
done
export FLOTILLA_NODES_IPS="$ips"
FLOTILLA_MASTER_NODE_IP=$(printf '%s\n' "$ips" | head -n 1)
export FLOTILLA_MASTER_NODE_IP
"#;

/// What the job script sets from the allocation, after flotilla's own exports (which know no
/// nodes): the rank, the nodes and their addresses, the GPUs Slurm gave, and the MPI hostfile
/// written again from them.
pub const ALLOCATION_ENV: &str = r#"export DSTACK_NODE_RANK="${FLOTILLA_RANK:-0}"
export DSTACK_NODES_NUM="${SLURM_JOB_NUM_NODES:-1}"
export DSTACK_MASTER_NODE_IP="${FLOTILLA_MASTER_NODE_IP:-127.0.0.1}"
export DSTACK_NODES_IPS="${FLOTILLA_NODES_IPS:-127.0.0.1}"
export DSTACK_GPUS_PER_NODE="${SLURM_GPUS_ON_NODE:-0}"
export DSTACK_GPUS_NUM="$((DSTACK_GPUS_PER_NODE * DSTACK_NODES_NUM))"
if [ -n "${FLOTILLA_SLURM_CUDA+x}" ]; then export CUDA_VISIBLE_DEVICES="$FLOTILLA_SLURM_CUDA"; else unset CUDA_VISIBLE_DEVICES; fi
if [ -n "${DSTACK_MPI_HOSTFILE:-}" ]; then printf '%s\n' "$DSTACK_NODES_IPS" | awk -v g="$DSTACK_GPUS_PER_NODE" 'NF { if (g > 0) print $1 " slots=" g; else print $1 }' > "$DSTACK_MPI_HOSTFILE"; fi
"#;

/// The job script for a Slurm rank: flotilla's script (its `export` lines, `set -e`, the
/// commands) with [`ALLOCATION_ENV`] put before the `set -e` line that ends the exports (the
/// first one outside a quoted value), so the allocation's values win.
pub fn with_allocation_env(script: &str) -> Result<String, String> {
    let (mut in_quote, mut escaped, mut line_start) = (false, false, true);
    for (i, c) in script.char_indices() {
        if !in_quote && !escaped && line_start && script[i..].starts_with("set -e\n") {
            return Ok(format!("{}{ALLOCATION_ENV}{}", &script[..i], &script[i..]));
        }
        if escaped {
            escaped = false;
        } else if c == '\\' && !in_quote {
            escaped = true;
        } else if c == '\'' {
            in_quote = !in_quote;
        }
        line_start = c == '\n';
    }
    Err("the job script has no `set -e` line after its environment".into())
}

/// Where a Slurm job stands, from the `queue` verb.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueState {
    /// Slurm's state (`PENDING`, `RUNNING`, `COMPLETED`, ...), `gone` once Slurm forgot the
    /// job, `absent` before it was submitted, `error` when Slurm could not be asked.
    pub state: String,
    pub reason: String,
    pub exit: Option<i32>,
    /// Its pid file (or exit code) is on the login node.
    pub started: bool,
}

impl QueueState {
    pub fn is_waiting(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED"
        )
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.state.as_str(),
            "RUNNING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" | "RESIZING" | "STOPPED"
        )
    }
}

/// Reads `STATE|REASON|EXIT|STARTED`; a line that is not that is an error naming it.
pub fn parse_queue(line: &str) -> Result<QueueState, String> {
    let f: Vec<&str> = line.trim().split('|').collect();
    if f.len() != 4 {
        return Err(format!("unexpected answer about the Slurm job: {line:?}"));
    }
    Ok(QueueState {
        state: f[0].to_string(),
        reason: f[1].to_string(),
        exit: f[2].parse().ok(),
        started: f[3] == "1",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ranks: usize) -> BatchSpec {
        BatchSpec {
            name: "flotilla-12".into(),
            partitions: vec!["gpu".into(), "gpu-long".into()],
            cpus_per_task: 8,
            memory_mb: 16384,
            gpus_per_node: 2,
            time_minutes: time_minutes(Some(3601)),
            shell: "default".into(),
            ranks: (0..ranks)
                .map(|i| Rank {
                    job_dir: format!("/home/alice/.flotilla/jobs/{}", 12 + i),
                    workdir: format!("/home/alice/.flotilla/jobs/{}/work", 12 + i),
                })
                .collect(),
        }
    }

    /// The recorded script of a two-node replica (one machine has one node, so the multi-node
    /// path is checked here, line for line).
    #[test]
    fn a_multi_node_replica_is_one_sbatch_with_one_rank_per_node() {
        let got = batch_script(&spec(2));
        let want = include_str!("testdata/two_nodes.sbatch");
        assert_eq!(got, want, "the batch script changed:\n{got}");
        assert!(got.contains("#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n"));
        assert!(got.contains("#SBATCH --gres=gpu:2\n"));
        assert!(got.contains("#SBATCH --time=61\n"));
        assert!(got.contains("#SBATCH --partition=gpu,gpu-long\n"));
        assert!(got.contains("srun --ntasks-per-node=1 --kill-on-bad-exit=0 sh '/home/alice/.flotilla/jobs/12/batch.sh' --rank &"));
        assert!(got.contains("    1) echo '/home/alice/.flotilla/jobs/13' ;;\n"));
    }

    #[test]
    fn a_single_node_job_runs_its_rank_in_the_batch_step() {
        let mut s = spec(1);
        s.gpus_per_node = 0;
        s.time_minutes = None;
        let got = batch_script(&s);
        assert!(got.contains("#SBATCH --nodes=1\n"));
        assert!(!got.contains("--gres") && !got.contains("--time") && !got.contains("srun "));
        assert!(got.ends_with("run_rank 0\n"));
    }

    #[test]
    fn the_allocation_env_goes_after_the_exports_before_the_commands() {
        let base = "# written by flotillad\nexport DSTACK_NODE_RANK='0'\nexport TRICK='it'\\''s\nset -e\nb'\nset -e\necho hi\nset -e\n";
        let s = with_allocation_env(base).expect("fits");
        assert!(s.starts_with("# written by flotillad\nexport DSTACK_NODE_RANK='0'\nexport TRICK='it'\\''s\nset -e\nb'\nexport DSTACK_NODE_RANK=\"${FLOTILLA_RANK:-0}\"\n"));
        assert!(s.ends_with("fi\nset -e\necho hi\nset -e\n"));
        assert!(with_allocation_env("echo other\n").is_err());
    }

    #[test]
    fn queue_and_final_answers_are_read() {
        let q = parse_queue("PENDING|Resources||0\n").expect("reads");
        assert!(q.is_waiting() && !q.is_running() && q.exit.is_none());
        let q = parse_queue("RUNNING|None|0|1").expect("reads");
        assert!(q.is_running() && q.started);
        assert!(parse_queue("what").is_err());
        assert_eq!(time_minutes(Some(30)), Some(1));
    }
}
