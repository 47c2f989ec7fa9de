#!/bin/sh
# flotilla host supervisor: runs jobs detached from the daemon, keeps pid, log and exit code
# in each job's directory, and reports the host's inventory. POSIX sh; run as
#   sh supervisor.sh VERB ARGS...
# Verbs:
#   inventory                       key=value lines: arch, cpus, memory_kib, disk_kib, docker, uv,
#                                   then one `nvidia=NAME, MEMORY_MIB` / `amd=NAME, MEMORY_MB` line per GPU
#   software                        `docker=0|1` and `uv=0|1` (a Docker engine that answers, uv)
#   start JOBDIR SHELL WORKDIR      the job script on stdin; starts it detached (setsid),
#                                   under SHELL (`default`: bash when present, else sh);
#                                   prints its pid; idempotent (an existing job is left alone)
#   upload JOBDIR NAME              stdin into JOBDIR/uploads/NAME (a run's `files` or repo
#                                   archive), written before `start`; the file is 0644 in a
#                                   0755 directory inside the 0700 job directory, so that a
#                                   container's own user reads it through its mount
#   follow JOBDIR OFFSET            log bytes from OFFSET on stdout until the job has ended and
#                                   all is read, then `exit_code=N` (or `lost`) on stderr
#   status JOBDIR                   `running PID`, `exited CODE`, `lost` or `absent`
#   signal JOBDIR SIGNAL            signal the job's process group (TERM, KILL, ...); for a job
#                                   in a container, every process in it (`docker kill`)
#   pull IMAGE                      pulls IMAGE unless present (`present` / `pulled`); optional
#                                   `username` and `password` lines on stdin log in first
#   ports JOBDIR                    a container job's published ports (`docker port` lines)
#   container_started JOBDIR        `yes` once a container job's container runs (or has ended)
#   container_error JOBDIR          why a container job's container could not be created or run
#   metrics                         one `gpu=INDEX, UTIL%, MEM_USED_MIB, MEM_TOTAL_MIB` line per GPU
#   gc SECONDS                      remove the finished job directories of this host whose
#                                   exit code is older than SECONDS (by the file's mtime)
#   gc JOBDIR                       remove a finished job's directory
#   revoke_keys                     public keys on stdin, one a line: removes every line of
#                                   ~/.ssh/authorized_keys that holds one of them (by key blob)
# Job directories are 0700 and their files 0600 (the job itself runs with the caller's umask);
# a root of `$HOME/.flotilla` (SSH hosts) is kept 0700.
set -u

# The umask the job runs with; everything the supervisor itself makes is private.
job_umask=$(umask)
umask 077

die() { echo "supervisor: $*" >&2; exit 2; }

# A root in the user's home (SSH hosts) is private to them; a root daemon's shared local root
# (0711, so that users reach their own job directories) is left as it is.
private_root() {
  r=${FLOTILLA_ROOT:-$HOME/.flotilla}
  if [ "$r" = "$HOME/.flotilla" ] && [ -d "$r" ]; then
    chmod 700 "$r" 2>/dev/null
    [ -d "$r/jobs" ] && chmod 700 "$r/jobs" 2>/dev/null
  fi
  return 0
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

job_pid() { [ -f "$1/pid" ] && cat "$1/pid" 2>/dev/null; }

# What jobs may use beyond resources: a Docker engine that answers, and uv.
software() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo "docker=1"; else echo "docker=0"; fi
  if command -v uv >/dev/null 2>&1; then echo "uv=1"; else echo "uv=0"; fi
}

inventory() {
  echo "arch=$(uname -m)"
  c=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 1)
  echo "cpus=$c"
  m=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)
  echo "memory_kib=${m:-0}"
  root=${FLOTILLA_ROOT:-$HOME/.flotilla}
  mkdir -p "$root" 2>/dev/null
  private_root
  d=$(df -Pk "$root" 2>/dev/null | awk 'NR==2 {print $2}')
  echo "disk_kib=${d:-0}"
  software
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null | sed 's/^/nvidia=/'
  fi
  if command -v amd-smi >/dev/null 2>&1; then
    # `MARKET_NAME: AMD Instinct MI300X` under ASIC, then `SIZE: 196592 MB` under VRAM, per GPU
    amd-smi static --asic --vram 2>/dev/null | awk -F': *' '
      /^ *MARKET_NAME:/ { name = $2 }
      /^ *VRAM:/ { vram = 1 }
      /^ *SIZE:/ && vram && name != "" { s = $2; sub(/ *MB$/, "", s); print "amd=" name ", " s; name = ""; vram = 0 }'
  fi
}

start() {
  dir=$1 shell=$2 workdir=$3
  mkdir -p "$dir" || die "cannot create $dir"
  chmod 700 "$dir" || die "cannot make $dir private"
  private_root
  p=$(job_pid "$dir")
  if [ -n "$p" ]; then echo "$p"; return 0; fi
  cat > "$dir/script.tmp" || die "cannot write the job script"
  mv "$dir/script.tmp" "$dir/script"
  mkdir -p "$workdir" || die "cannot create working directory $workdir"
  printf '%s\n' "$workdir" > "$dir/workdir"
  command -v setsid >/dev/null 2>&1 || die "setsid not found on this host"
  setsid sh "$0" _wrap "$dir" "$shell" "$workdir" "$job_umask" </dev/null >/dev/null 2>&1 &
  i=0
  while [ ! -f "$dir/pid" ]; do
    i=$((i + 1)); [ $i -gt 500 ] && die "the job did not start within 5s"
    sleep 0.01
  done
  cat "$dir/pid"
}

upload() {
  dir=$1 name=$2
  case $name in ''|.*|*/*) die "upload: bad name $name" ;; esac
  mkdir -p "$dir" || die "cannot create $dir"
  chmod 700 "$dir" || die "cannot make $dir private"
  private_root
  mkdir -p "$dir/uploads" && chmod 755 "$dir/uploads" || die "cannot create $dir/uploads"
  cat > "$dir/uploads/$name.tmp" || die "cannot write $dir/uploads/$name (is the disk full?)"
  chmod 644 "$dir/uploads/$name.tmp" && mv "$dir/uploads/$name.tmp" "$dir/uploads/$name" \
    || die "cannot write $dir/uploads/$name"
}

# The job's parent: it is its own session, the job gets another one (so that a signal to the
# job's process group spares this wrapper, which records the exit code).
_wrap() {
  dir=$1 shell=$2 workdir=$3 mask=${4:-022}
  : >> "$dir/log"
  if [ "$shell" = default ]; then
    if command -v bash >/dev/null 2>&1; then shell=bash; else shell=sh; fi
  fi
  cd "$workdir" || { echo 127 > "$dir/exit_code"; exit 0; }
  (umask "$mask" && exec setsid "$shell" "$dir/script") </dev/null >>"$dir/log" 2>&1 &
  j=$!
  echo "$j" > "$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"
  wait "$j"
  c=$?
  echo "$c" > "$dir/exit_code.tmp" && mv "$dir/exit_code.tmp" "$dir/exit_code"
}

follow() {
  dir=$1 off=$2
  [ -f "$dir/pid" ] || die "no job in $dir"
  pid=$(job_pid "$dir")
  while :; do
    ended=0
    if [ -f "$dir/exit_code" ]; then ended=1
    elif ! alive "$pid"; then
      # The job is gone; its wrapper writes the exit code right after: give it a moment.
      sleep 0.2
      [ -f "$dir/exit_code" ] && ended=1 || ended=2
    fi
    size=$(wc -c < "$dir/log" 2>/dev/null || echo 0)
    size=$((size + 0))
    if [ "$size" -gt "$off" ]; then
      tail -c +$((off + 1)) "$dir/log" | head -c $((size - off)) || exit 3
      off=$size
    fi
    case $ended in
      1) echo "exit_code=$(cat "$dir/exit_code")" >&2; return 0 ;;
      2) echo "lost" >&2; return 0 ;;
    esac
    sleep 0.05
  done
}

status() {
  dir=$1
  if [ -f "$dir/exit_code" ]; then echo "exited $(cat "$dir/exit_code")"; return 0; fi
  [ -f "$dir/pid" ] || { echo absent; return 0; }
  p=$(job_pid "$dir")
  if alive "$p"; then echo "running $p"; else echo lost; fi
}

signal() {
  dir=$1 sig=$2
  if [ -f "$dir/container" ]; then
    # A container job: TERM reaches every process of the container (as the process group of a
    # host job), KILL ends the container; a container not created yet is never started.
    : > "$dir/stop_requested"
    c=$(cat "$dir/container")
    if [ "$sig" = TERM ]; then
      docker exec "$c" sh -c 'kill -TERM -1' >/dev/null 2>&1
      docker kill -s TERM "$c" >/dev/null 2>&1
    else
      docker kill -s "$sig" "$c" >/dev/null 2>&1
    fi
    return 0
  fi
  p=$(job_pid "$dir")
  [ -n "$p" ] || die "no job in $dir"
  kill -s "$sig" -- "-$p" 2>/dev/null || kill -s "$sig" "$p" 2>/dev/null || true
}

# The registry of an image reference: its first part when that names a host.
registry_of() {
  case $1 in
    */*) first=${1%%/*} ;;
    *) first= ;;
  esac
  case $first in
    *.*|*:*|localhost) echo "$first" ;;
    *) echo "" ;;
  esac
}

# Pulls an image unless it is present; `username` and `password` lines on stdin (or nothing)
# log in to its registry in a throw-away Docker config that is removed after the pull.
pull() {
  image=$1
  if docker image inspect "$image" >/dev/null 2>&1; then cat >/dev/null; echo present; return 0; fi
  IFS= read -r user || user=
  IFS= read -r pass || pass=
  if [ -z "$user" ]; then
    err=$(docker pull "$image" 2>&1 >/dev/null) || { echo "cannot pull $image: $err" >&2; exit 1; }
    echo pulled; return 0
  fi
  cfg=$(mktemp -d) || die "cannot make a temporary Docker config"
  trap 'rm -rf "$cfg"' EXIT
  printf '%s' "$pass" | docker --config "$cfg" login --username "$user" --password-stdin $(registry_of "$image") >/dev/null 2>"$cfg/err" ||
    { echo "cannot log in to the registry of $image as $user: $(cat "$cfg/err")" >&2; exit 1; }
  docker --config "$cfg" pull "$image" >/dev/null 2>"$cfg/err" ||
    { echo "cannot pull $image: $(cat "$cfg/err")" >&2; exit 1; }
  echo pulled
}

ports() {
  [ -f "$1/ports" ] && cat "$1/ports"
  return 0
}

container_started() {
  if [ -f "$1/started" ] || [ -f "$1/exit_code" ]; then echo yes; else echo no; fi
}

container_error() {
  [ -f "$1/container_error" ] && cat "$1/container_error"
  return 0
}

metrics() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits 2>/dev/null | sed 's/^/gpu=/'
  fi
}

gc() {
  case $1 in
    ''|*[!0-9]*) ;;
    *) gc_older "$1"; return ;;
  esac
  dir=$1
  [ -f "$dir/exit_code" ] || [ ! -f "$dir/pid" ] || die "$dir is still running"
  rm -rf "$dir"
}

# Removes the job directories whose exit code was written more than $1 seconds ago; prints
# each removed directory.
gc_older() {
  root=${FLOTILLA_ROOT:-$HOME/.flotilla}
  [ -d "$root/jobs" ] || return 0
  mins=$(( $1 / 60 ))
  find "$root/jobs" -mindepth 2 -maxdepth 2 -type f -name exit_code -mmin +"$mins" 2>/dev/null |
    while IFS= read -r f; do
      d=${f%/exit_code}
      rm -rf "$d" && echo "$d"
    done
}

revoke_keys() {
  a="$HOME/.ssh/authorized_keys"
  [ -f "$a" ] || { cat >/dev/null; return 0; }
  while IFS= read -r k; do
    blob=$(printf '%s\n' "$k" | awk '{print $2}')
    [ -n "$blob" ] || continue
    awk -v b="$blob" '{ for (i = 1; i <= NF; i++) if ($i == b) next; print }' "$a" > "$a.tmp" &&
      cat "$a.tmp" > "$a" && rm -f "$a.tmp" || die "cannot rewrite $a"
  done
}

verb=${1:-}
[ -n "$verb" ] || die "usage: supervisor.sh VERB ARGS..."
shift
case $verb in
  inventory) inventory ;;
  software) software ;;
  start) [ $# -eq 3 ] || die "usage: start JOBDIR SHELL WORKDIR"; start "$@" ;;
  upload) [ $# -eq 2 ] || die "usage: upload JOBDIR NAME"; upload "$@" ;;
  _wrap) _wrap "$@" ;;
  follow) [ $# -eq 2 ] || die "usage: follow JOBDIR OFFSET"; follow "$@" ;;
  status) [ $# -eq 1 ] || die "usage: status JOBDIR"; status "$@" ;;
  signal) [ $# -eq 2 ] || die "usage: signal JOBDIR SIGNAL"; signal "$@" ;;
  metrics) metrics ;;
  pull) [ $# -eq 1 ] || die "usage: pull IMAGE"; pull "$@" ;;
  ports) [ $# -eq 1 ] || die "usage: ports JOBDIR"; ports "$@" ;;
  container_started) [ $# -eq 1 ] || die "usage: container_started JOBDIR"; container_started "$@" ;;
  container_error) [ $# -eq 1 ] || die "usage: container_error JOBDIR"; container_error "$@" ;;
  revoke_keys) revoke_keys ;;
  gc) [ $# -eq 1 ] || die "usage: gc SECONDS | gc JOBDIR"; gc "$@" ;;
  *) die "unknown verb $verb" ;;
esac
