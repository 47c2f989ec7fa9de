#!/bin/sh
# flotilla's verbs for a Slurm login node: the same contract as supervisor.sh (pid, log and
# exit code in each job's directory), but a job runs inside a Slurm allocation, so whether it
# lives is Slurm's answer (`scontrol show job`), not `kill -0` on the login node. POSIX sh; run as
#   FLOTILLA_ROOT=... FLOTILLA_SUPERVISOR=.../supervisor-HASH.sh sh slurm.sh VERB ARGS...
# Verbs:
#   cluster                         the partitions' nodes (one `sinfo` call), then `pyxis=0|1`
#   write JOBDIR NAME               stdin into JOBDIR/NAME (0600, atomically)
#   submit JOBDIR                   `sbatch --parsable JOBDIR/batch.sh` once: prints the Slurm job id
#                                   (idempotent: an id already recorded, or a queued job of the
#                                   same name, is taken instead of submitting again)
#   queue JOBDIR                    `STATE|REASON|EXIT|STARTED` of the job's Slurm job: STARTED is 1
#                                   once its pid file exists; STATE `gone` when Slurm forgot it
#   follow JOBDIR OFFSET            as the supervisor's; at the end `exit_code=N`, or the Slurm
#                                   state as `slurm=STATE|REASON|EXIT` then `lost` on stderr
#   status JOBDIR                   `running PID`, `exited CODE`, `lost` or `absent`
#   signal JOBDIR SIGNAL            TERM: `scancel --signal=TERM --full`; KILL: cancel at once
#   cancel JOBDIR                   `scancel` (a queued job)
# Every other verb (gc, metrics, inventory, revoke_keys) is the supervisor's.
set -u
# The umask the job runs with (sbatch hands it to the job); everything made here is private.
job_umask=$(umask)
umask 077

die() { echo "slurm: $*" >&2; exit 2; }

job_id() { [ -f "$1/slurm_job_id" ] && cat "$1/slurm_job_id" 2>/dev/null; }

# `STATE|REASON|EXIT` of Slurm job $1 from one `scontrol show job -o`; `gone||` when Slurm
# no longer knows it (and accounting has no record), `error|MESSAGE|` when Slurm cannot be asked.
slurm_state() {
  out=$(scontrol show job -o "$1" 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    case $out in
      *"Invalid job id"*)
        # Purged from slurmctld's memory: accounting, where it exists, still knows it.
        acct=$(sacct -n -X -P -j "$1" -o State,ExitCode 2>/dev/null | head -n 1)
        if [ -n "$acct" ]; then
          st=${acct%%|*}; ec=${acct#*|}
          echo "${st%% *}|accounting|${ec%%:*}"
        else
          echo "gone||"
        fi ;;
      *) echo "error|$(printf '%s' "$out" | tr '\n|' '  ')|" ;;
    esac
    return 0
  fi
  printf '%s\n' "$out" | awk '{
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^JobState=/) { st = substr($i, 10) }
      else if ($i ~ /^Reason=/) { r = substr($i, 8) }
      else if ($i ~ /^ExitCode=/) { e = substr($i, 10); sub(/:.*/, "", e) }
    }
    print st "|" r "|" e; exit }'
}

write() {
  dir=$1 name=$2
  mkdir -p "$dir" || die "cannot create $dir"
  chmod 700 "$dir" || die "cannot make $dir private"
  cat > "$dir/$name.tmp" || die "cannot write $dir/$name"
  mv "$dir/$name.tmp" "$dir/$name" || die "cannot write $dir/$name"
}

submit() {
  dir=$1
  id=$(job_id "$dir")
  if [ -n "$id" ]; then echo "$id"; return 0; fi
  [ -f "$dir/batch.sh" ] || die "no batch script in $dir"
  command -v sbatch >/dev/null 2>&1 || die "sbatch not found on the login node (is Slurm's client installed and on PATH?)"
  name=$(sed -n 's/^#SBATCH --job-name=//p' "$dir/batch.sh" | head -n 1)
  # A daemon that died between sbatch and recording the id finds its job by name.
  if [ -n "$name" ]; then
    id=$(squeue -h -u "$(id -un)" -n "$name" -o %i 2>/dev/null | head -n 1)
  fi
  if [ -z "$id" ]; then
    out=$(umask "$job_umask" && sbatch --parsable "$dir/batch.sh" 2>&1) || die "sbatch refused the job: $out"
    id=${out%%;*}
  fi
  case $id in ''|*[!0-9_]*) die "sbatch printed no job id: $id" ;; esac
  printf '%s\n' "$id" > "$dir/slurm_job_id.tmp" && mv "$dir/slurm_job_id.tmp" "$dir/slurm_job_id" ||
    die "cannot record Slurm job $id in $dir"
  echo "$id"
}

queue() {
  dir=$1
  id=$(job_id "$dir")
  [ -n "$id" ] || { echo "absent|||0"; return 0; }
  started=0
  [ -f "$dir/pid" ] && started=1
  [ -f "$dir/exit_code" ] && started=1
  echo "$(slurm_state "$id")|$started"
}

ended_state() {
  case $1 in
    PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED|REQUEUE_HOLD|REQUEUE_FED|RESIZING|SIGNALING|STAGE_OUT|STOPPED|error) return 1 ;;
    *) return 0 ;;
  esac
}

follow() {
  dir=$1 off=$2
  id=$(job_id "$dir")
  [ -n "$id" ] || die "no Slurm job in $dir"
  i=0 final=
  while :; do
    ended=0
    if [ -f "$dir/exit_code" ]; then ended=1
    elif [ $((i % 20)) -eq 0 ]; then
      # Slurm is asked once a second, not at every look at the log.
      s=$(slurm_state "$id")
      if ended_state "${s%%|*}"; then
        # The job is over; a shared home may show its exit code a moment later.
        sleep 1
        if [ -f "$dir/exit_code" ]; then ended=1; else ended=2; final=$s; fi
      fi
    fi
    i=$((i + 1))
    size=$(wc -c < "$dir/log" 2>/dev/null || echo 0)
    size=$((size + 0))
    if [ "$size" -gt "$off" ]; then
      tail -c +$((off + 1)) "$dir/log" | head -c $((size - off)) || exit 3
      off=$size
    fi
    case $ended in
      1) echo "exit_code=$(cat "$dir/exit_code")" >&2; return 0 ;;
      2) echo "slurm=$final" >&2; echo "lost" >&2; return 0 ;;
    esac
    sleep 0.05
  done
}

status() {
  dir=$1
  if [ -f "$dir/exit_code" ]; then echo "exited $(cat "$dir/exit_code")"; return 0; fi
  id=$(job_id "$dir")
  [ -n "$id" ] || { echo absent; return 0; }
  s=$(slurm_state "$id")
  if ended_state "${s%%|*}"; then echo lost; return 0; fi
  p=0
  [ -f "$dir/pid" ] && p=$(cat "$dir/pid" 2>/dev/null)
  echo "running ${p:-0}"
}

signal() {
  dir=$1 sig=$2
  id=$(job_id "$dir")
  [ -n "$id" ] || die "no Slurm job in $dir"
  case $sig in
    KILL|9)
      scancel --signal=KILL --full "$id" 2>/dev/null
      out=$(scancel "$id" 2>&1) || case $out in *"already completing or completed"*|*"Invalid job id"*) ;; *) die "scancel $id: $out" ;; esac ;;
    *)
      out=$(scancel --signal="$sig" --full "$id" 2>&1) || case $out in *"already completing or completed"*|*"Invalid job id"*) ;; *) die "scancel --signal=$sig $id: $out" ;; esac ;;
  esac
  return 0
}

cancel() {
  id=$(job_id "$1")
  [ -n "$id" ] || return 0
  out=$(scancel "$id" 2>&1) || case $out in *"already completing or completed"*|*"Invalid job id"*) ;; *) die "scancel $id: $out" ;; esac
  return 0
}

cluster() {
  command -v sinfo >/dev/null 2>&1 || die "sinfo not found on the login node (is Slurm's client installed and on PATH?)"
  sinfo -h -N -o '%P|%N|%c|%m|%G|%T|%a' || die "sinfo failed"
  if srun --help 2>/dev/null | grep -q -- '--container-image'; then echo "pyxis=1"; else echo "pyxis=0"; fi
}

verb=${1:-}
[ -n "$verb" ] || die "usage: slurm.sh VERB ARGS..."
shift
case $verb in
  cluster) cluster ;;
  write) [ $# -eq 2 ] || die "usage: write JOBDIR NAME"; write "$@" ;;
  submit) [ $# -eq 1 ] || die "usage: submit JOBDIR"; submit "$@" ;;
  queue) [ $# -eq 1 ] || die "usage: queue JOBDIR"; queue "$@" ;;
  follow) [ $# -eq 2 ] || die "usage: follow JOBDIR OFFSET"; follow "$@" ;;
  status) [ $# -eq 1 ] || die "usage: status JOBDIR"; status "$@" ;;
  signal) [ $# -eq 2 ] || die "usage: signal JOBDIR SIGNAL"; signal "$@" ;;
  cancel) [ $# -eq 1 ] || die "usage: cancel JOBDIR"; cancel "$@" ;;
  *) [ -n "${FLOTILLA_SUPERVISOR:-}" ] || die "unknown verb $verb"
     exec sh "$FLOTILLA_SUPERVISOR" "$verb" "$@" ;;
esac
