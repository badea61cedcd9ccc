# Shared helpers for the infra scripts (sourced, not run).
fs_say() { printf '[flashsale] %s\n' "$*" >&2; }
fs_die() { printf '[flashsale] error: %s\n' "$*" >&2; exit 1; }

# A port is taken if any socket uses it locally (listening, or an outgoing connection's
# ephemeral port), which a connect probe cannot see. free_port P: P or the next free one.
port_taken() { ss -Htan "( sport = :$1 )" 2>/dev/null | grep -q .; }
# port_listened P: something listens on P (what a server about to bind it needs to know).
port_listened() { ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .; }
free_port() { local p=$1; while port_taken "$p"; do p=$((p + 1)); done; echo "$p"; }
# pick_port NAME BASE: exports NAME as the first port >= BASE that is free and not one of
# FS_PICKED_PORTS (" 29092 29093 ... "), and adds it there. free_port alone reserves nothing:
# two calls with adjacent bases give the same port when the first base is taken.
FS_PICKED_PORTS=" "
pick_port() {
  local p=$2
  while port_taken "$p" || [[ "$FS_PICKED_PORTS" == *" $p "* ]]; do p=$((p + 1)); done
  FS_PICKED_PORTS+="$p "
  export "$1=$p"
}
# free_range P N: the first port >= P such that it and the N-1 after it are all free.
free_range() {
  local p=$1 n=$2 k
  while :; do
    for ((k = 0; k < n; k++)); do port_taken $((p + k)) && break; done
    [ "$k" -eq "$n" ] && { echo "$p"; return; }
    p=$((p + k + 1))
  done
}

# fs_supervised NAME PIDFILE SUPFILE LOG -- COMMAND...: COMMAND in the background under
# infra/supervise.sh (started again when it dies by a signal or an error). Its output and the
# supervisor's are appended to LOG, never sent to the caller's (a caller that reads a start's
# output to its end would wait for the service to end). PIDFILE names the service while it
# runs, SUPFILE the supervisor. Returns once PIDFILE is written, or after 2 s. Descriptor 9
# (a caller's lock: infra/edge.sh) is not passed on: the lock would live as long as they do.
fs_supervised() {
  local name=$1 pidfile=$2 supfile=$3 log=$4
  shift 5
  ( exec 9>&-; exec "$FS_ROOT/infra/supervise.sh" "$name" "$pidfile" -- "$@" ) </dev/null >>"$log" 2>&1 &
  echo $! >"$supfile"
  for _ in $(seq 100); do [ -f "$pidfile" ] && break; sleep 0.02; done
}
# fs_running PID: the process exists and is not a zombie.
fs_running() {
  local st
  case "$1" in '' | *[!0-9]*) return 1 ;; esac
  { read -r st </proc/"$1"/stat; } 2>/dev/null || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
# fs_started_by PID FILE: PID's process began no later than FILE was last written: a process
# whose number a pid file names, begun after that file was written, is another process that
# was given the number later (after a reboot, say). 10 s of slack for a small step of the
# wall clock (a larger forward step makes an unsupervised service's own file look stale).
fs_started_by() {
  local st boot hz mt
  local -a f
  { read -r st </proc/"$1"/stat; } 2>/dev/null || return 1
  read -r -a f <<<"${st##*) }" # the fields from the state on: the start time (22nd) is f[19]
  boot=$(awk '/^btime /{print $2}' /proc/stat) || return 1
  hz=$(getconf CLK_TCK) || return 1
  mt=$(stat -c %Y "$2" 2>/dev/null) || return 1
  [[ "${f[19]}" =~ ^[0-9]+$ ]] || return 1
  ((boot + f[19] / hz <= mt + 10))
}

# fs_read_pid FILE: prints the pid in FILE when that process runs and is the one FILE names.
# A pid file outlives a reboot or a container's restart, and its number may since name
# another process, so: a supervisor's (NAME.supervisor.pid, edge/supervisor.pid) must be
# running infra/supervise.sh; a supervised process's (NAME.pid, edge/master.pid), while its
# supervisor's file names a live supervisor, must be that supervisor's child, and without
# one (both files stale, or a process an older version started unsupervised) must have begun
# before its file was written (fs_started_by).
fs_read_pid() {
  local f=$1 p st cmd sf sp
  p=$(cat "$f" 2>/dev/null) || return 1
  fs_running "$p" || return 1
  case "$f" in
    *supervisor.pid)
      cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || return 1
      [[ "$cmd" == *supervise.sh* ]] || return 1 ;;
    *)
      sf=${f%.pid}.supervisor.pid
      [[ "$f" == */master.pid ]] && sf=${f%/master.pid}/supervisor.pid
      if sp=$(fs_read_pid "$sf"); then
        { read -r st </proc/"$p"/stat; } 2>/dev/null || return 1
        st=${st##*) }
        st=${st#* } # the fields from the parent's pid on
        [ "${st%% *}" = "$sp" ] || return 1
      else
        fs_started_by "$p" "$f" || return 1
      fi ;;
  esac
  echo "$p"
}

# Root of the repository and the cache directory for downloaded broker jars.
FS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FS_CACHE=${FLASHSALE_CACHE_DIR:-$HOME/.cache/flashsale}
KAFKA_VERSION=${FLASHSALE_KAFKA_VERSION:-3.9.1}
KAFKA_LIBS="$FS_CACHE/kafka-$KAFKA_VERSION/libs"
