#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (tests, CI): munged, a private MariaDB,
# slurmdbd (real accounting, so `sacct` and submitit job states are real), slurmctld, slurmd.
#
#   slurm/local-cluster.sh up              install what is missing, start everything, wait for an idle node
#   slurm/local-cluster.sh down [--purge]  stop exactly what `up` started (by recorded PIDs); --purge also
#                                          removes the work dir (DB, state) and the /etc/slurm files it wrote
#   slurm/local-cluster.sh status          daemons + sinfo; exit 0 if the node is idle/alloc/mix, else 1
#
# Needs root (writes /etc/slurm/*.conf, runs the daemons). No systemd, no cgroups needed.
# Environment:
#   ZPPO_SLURM_DIR      work dir (DB, state, spool, logs, PIDs)   default /var/tmp/zppo-slurm
#   ZPPO_SLURM_DB_PORT  MariaDB port on 127.0.0.1                 default: the port recorded in the work dir,
#                                                                 else 3306, else the next free one
#   ZPPO_SLURM_NODE     node name                                 default zppo-node
#   ZPPO_SLURM_CLUSTER  cluster name                              default zppo
# Facts behind the choices: /work/shared/ops/slurm-local-cluster.md (if present) and slurm/README.md.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

WORK=${ZPPO_SLURM_DIR:-/var/tmp/zppo-slurm}
NODE=${ZPPO_SLURM_NODE:-zppo-node}
CLUSTER=${ZPPO_SLURM_CLUSTER:-zppo}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARKER="# written by zppo slurm/local-cluster.sh"
UP_TIMEOUT=60

# work dir layout
PIDS=$WORK/pids            # PIDs of the daemons this script started (and only those)
RUN=$WORK/run              # pid files the slurm daemons write themselves
LOGS=$WORK/log
DB_DATA=$WORK/db           # MariaDB datadir (owned by mysql)
DB_RUN=$WORK/mysqld        # MariaDB socket + pid (owned by mysql)
DB_SOCK=$DB_RUN/mysqld.sock
DB_ERR=$DB_DATA/mariadbd.err
STATE=$WORK/state          # slurmctld StateSaveLocation (kept with the DB: no CLUSTER ID MISMATCH)
SPOOL=$WORK/spool

DAEMONS_STOP_ORDER=(slurmd slurmctld slurmdbd mariadbd munged)
DAEMONS_START_ORDER=(munged mariadbd slurmdbd slurmctld slurmd)

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { printf '[local-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $EUID -eq 0 ]] || die "must run as root (it writes /etc/slurm and starts system daemons)"; }

# --- process helpers -------------------------------------------------------------------------------
# alive PID COMM: the process exists, is not a zombie, and its command name is COMM (guards PID reuse)
alive() {
  local pid=$1 comm=$2 st
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
  st=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $st != Z && $st != X ]]
}
recorded_pid() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
ours_running() { alive "$(recorded_pid "$1")" "$1"; }
record_pid() { mkdir -p "$PIDS"; echo "$2" >"$PIDS/$1.pid"; }
# live (non-zombie) processes with this exact command name, ours or not: PIDs, space separated
live_pids() {
  local p out=""
  for p in $(pgrep -x "$1" || true); do alive "$p" "$1" && out+="$p "; done
  echo "${out% }"
}
any_running() { [[ -n $(live_pids "$1") ]]; }

# wait_pidfile FILE COMM SECONDS -> echoes the PID once FILE names a live COMM process
wait_pidfile() {
  local f=$1 comm=$2 t=$3 pid i
  for ((i = 0; i < t * 10; i++)); do
    pid=$(cat "$f" 2>/dev/null || true)
    if alive "$pid" "$comm"; then echo "$pid"; return 0; fi
    sleep 0.1
  done
  return 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- install -------------------------------------------------------------------------------------
install_if_missing() {
  local missing=() b
  for b in slurmctld slurmd slurmdbd sacctmgr sbatch munged mungekey mariadbd mariadb-install-db mariadb; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing packages (missing: ${missing[*]})"
  # keep the packages' init scripts from starting system-wide daemons (a system MariaDB on 3306, ...)
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge slurmdbd mariadb-server >/dev/null; } || rc=$?
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install failed (rc=$rc)"
  for b in "${missing[@]}"; do command -v "$b" >/dev/null 2>&1 || die "still missing after install: $b"; done
}

# --- work dir ------------------------------------------------------------------------------------
make_workdir() {
  [[ $WORK == /* ]] || die "ZPPO_SLURM_DIR must be an absolute path (got '$WORK')"
  case "$WORK/" in
    /root/*) die "ZPPO_SLURM_DIR must not be under /root (the mysql user cannot traverse it): $WORK" ;;
  esac
  [[ $WORK != / ]] || die "ZPPO_SLURM_DIR must not be /"
  mkdir -p "$WORK" "$PIDS" "$RUN" "$LOGS" "$STATE" "$SPOOL" "$DB_DATA" "$DB_RUN"
  touch "$WORK/.zppo-slurm"
  # the mysql user must be able to traverse the work dir and every parent
  local d=$WORK
  while [[ $d != / ]]; do
    [[ $(stat -c %A "$d") == ?????????[xt] ]] || chmod o+x "$d"
    d=$(dirname "$d")
  done
  chmod 755 "$WORK"
  chown mysql:mysql "$DB_DATA" "$DB_RUN"
  [[ -s $WORK/db.pass ]] || { (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$WORK/db.pass"); }
  chmod 600 "$WORK/db.pass"
}

choose_db_port() {
  local p
  if ours_running mariadbd && [[ -s $WORK/db.port ]]; then cat "$WORK/db.port"; return; fi
  if [[ -n ${ZPPO_SLURM_DB_PORT:-} ]]; then
    port_busy "$ZPPO_SLURM_DB_PORT" && die "ZPPO_SLURM_DB_PORT=$ZPPO_SLURM_DB_PORT is in use on 127.0.0.1; pick another"
    echo "$ZPPO_SLURM_DB_PORT"; return
  fi
  p=$(cat "$WORK/db.port" 2>/dev/null || echo 3306)
  while port_busy "$p"; do
    log "port $p busy, trying $((p + 1)) for MariaDB"
    p=$((p + 1))
    ((p < 3400)) || die "no free MariaDB port in 3306..3399; set ZPPO_SLURM_DB_PORT"
  done
  echo "$p"
}

# --- config --------------------------------------------------------------------------------------
write_confs() {
  local db_port=$1 hw
  # hardware line from slurmd -C, minus NodeName= and the UpTime line
  hw=$(slurmd -C 2>/dev/null | head -n1 | sed -E 's/^NodeName=[^ ]+ ?//')
  [[ $hw == *CPUs=* ]] || die "could not read hardware from 'slurmd -C' (got: '$hw')"
  mkdir -p /etc/slurm
  local tmp
  tmp=$(mktemp /etc/slurm/.slurm.conf.XXXXXX)
  cat >"$tmp" <<EOF
$MARKER -- regenerated on every \`up\`; do not edit
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups here
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=300
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  chmod 644 "$tmp"
  mv -f "$tmp" "$CONF"

  tmp=$(mktemp /etc/slurm/.slurmdbd.conf.XXXXXX)
  cat >"$tmp" <<EOF
$MARKER -- regenerated on every \`up\`; do not edit
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$(cat "$WORK/db.pass")
StorageLoc=slurm_acct_db
EOF
  chown root:root "$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$DBD_CONF"
}

# --- daemons -------------------------------------------------------------------------------------
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munged() {
  if ours_running munged; then return; fi
  if munge_works; then log "munged: already running (not started by this script; left alone)"; return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 755 /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  rm -f /run/munge/munged.pid
  # as root munged refuses ("Logfile is insecure"); --force lets it replace a stale socket of a dead munged
  runuser -u munge -- munged --force </dev/null >>"$LOGS/munged.out" 2>&1 \
    || die "munged failed to start; read /var/log/munge/munged.log and $LOGS/munged.out"
  local pid
  pid=$(wait_pidfile /run/munge/munged.pid munged 10) \
    || die "munged did not come up; read /var/log/munge/munged.log"
  record_pid munged "$pid"
  for _ in $(seq 50); do munge_works && break; sleep 0.1; done
  munge_works || die "munge credential round trip fails; read /var/log/munge/munged.log"
  log "munged: started (pid $pid)"
}

db() { mariadb --no-defaults -S "$DB_SOCK" -u root "$@"; }

start_mariadb() {
  local port=$1
  if ours_running mariadbd; then return; fi
  if [[ ! -d $DB_DATA/mysql ]]; then
    log "mariadb: initialising datadir $DB_DATA"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DATA" --skip-test-db \
      >>"$LOGS/mariadb-install-db.out" 2>&1 \
      || die "mariadb-install-db failed; read $LOGS/mariadb-install-db.out"
  fi
  chown -R mysql:mysql "$DB_DATA" "$DB_RUN"
  rm -f "$DB_RUN/mysqld.pid"
  # mariadbd cannot daemonize: background it, detached from our stdio
  setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DATA" --socket="$DB_SOCK" \
    --pid-file="$DB_RUN/mysqld.pid" --log-error="$DB_ERR" \
    --bind-address=127.0.0.1 --port="$port" --skip-name-resolve \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=32M --innodb-lock-wait-timeout=900 \
    --innodb-log-buffer-size=2M --key-buffer-size=1M --aria-pagecache-buffer-size=8M \
    </dev/null >>"$LOGS/mariadbd.out" 2>&1 &
  local pid
  pid=$(wait_pidfile "$DB_RUN/mysqld.pid" mariadbd 30) \
    || die "mariadbd did not come up within 30 s; read $DB_ERR"
  record_pid mariadbd "$pid"
  echo "$port" >"$WORK/db.port"
  local ok=0
  for _ in $(seq 300); do
    if db -e 'SELECT 1' >/dev/null 2>&1; then ok=1; break; fi
    alive "$pid" mariadbd || break
    sleep 0.1
  done
  ((ok)) || die "mariadbd does not answer on $DB_SOCK; read $DB_ERR"
  log "mariadb: started (pid $pid, 127.0.0.1:$port)"
}

ensure_db_user() {
  local pass
  pass=$(cat "$WORK/db.pass")
  db <<EOF || die "creating the accounting DB/user failed; read $DB_ERR"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

# start_slurm_daemon NAME PIDFILE LOG CMD...  (the daemon forks and writes PIDFILE itself)
start_slurm_daemon() {
  local name=$1 pidfile=$2 logf=$3 pid
  shift 3
  if ours_running "$name"; then return; fi
  if any_running "$name"; then
    die "a $name not started by this script is running (pid $(live_pids "$name")); stop it first"
  fi
  rm -f "$pidfile"
  "$@" </dev/null >>"$LOGS/$name.out" 2>&1 || die "$name failed to start; read $logf and $LOGS/$name.out"
  pid=$(wait_pidfile "$pidfile" "$name" 15) || die "$name did not come up within 15 s; read $logf"
  record_pid "$name" "$pid"
  log "$name: started (pid $pid)"
}

wait_accounting() {
  local i
  for ((i = 0; i < 300; i++)); do
    if timeout 10 sacctmgr -n list cluster >/dev/null 2>&1; then return 0; fi
    ours_running slurmdbd || die "slurmdbd exited; read $LOGS/slurmdbd.log"
    sleep 0.2
  done
  die "slurmdbd not answering after 60 s (sacctmgr -n list cluster fails); read $LOGS/slurmdbd.log"
}

ensure_cluster() {
  if timeout 10 sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then return; fi
  log "sacctmgr: adding cluster $CLUSTER"
  timeout 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed; read $LOGS/slurmdbd.log"
}

node_state() { timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1 || true; }

wait_idle() {
  local t0=$SECONDS st=""
  while ((SECONDS - t0 < UP_TIMEOUT)); do
    st=$(node_state)
    case $st in idle | mix | alloc) return 0 ;; esac
    ours_running slurmctld || die "slurmctld exited; read $LOGS/slurmctld.log"
    ours_running slurmd || die "slurmd exited; read $LOGS/slurmd.log"
    sleep 0.5
  done
  sinfo -R 2>/dev/null >&2 || true
  die "node $NODE is '${st:-unknown}', not idle, after ${UP_TIMEOUT} s; read $LOGS/slurmctld.log and $LOGS/slurmd.log"
}

# --- commands ------------------------------------------------------------------------------------
all_up() {
  local d
  for d in slurmdbd slurmctld slurmd mariadbd; do ours_running "$d" || return 1; done
  ours_running munged || munge_works || return 1
  case $(node_state) in idle | mix | alloc) return 0 ;; *) return 1 ;; esac
}

cmd_status() {
  local d pid rc=1 st
  for d in "${DAEMONS_START_ORDER[@]}"; do
    pid=$(recorded_pid "$d")
    if alive "$pid" "$d"; then
      printf '%-10s running (pid %s)\n' "$d" "$pid"
    elif [[ $d == munged ]] && munge_works; then
      printf '%-10s running (not started by this script)\n' "$d"
    else
      printf '%-10s stopped\n' "$d"
    fi
  done
  echo "work dir:  $WORK"
  if ours_running slurmctld; then
    timeout 10 sinfo || true
    st=$(node_state)
    case $st in idle | mix | alloc) rc=0 ;; esac
    echo "node $NODE: ${st:-unknown}"
  else
    echo "slurmctld not running: no sinfo"
  fi
  return $rc
}

cmd_up() {
  need_root
  local t0=$SECONDS
  if [[ -d $WORK/pids ]] && all_up; then
    log "already up"
    cmd_status
    return 0
  fi
  install_if_missing
  make_workdir
  local port
  port=$(choose_db_port)
  write_confs "$port"
  start_munged
  start_mariadb "$port"
  ensure_db_user
  start_slurm_daemon slurmdbd "$RUN/slurmdbd.pid" "$LOGS/slurmdbd.log" slurmdbd
  wait_accounting
  ensure_cluster
  start_slurm_daemon slurmctld "$RUN/slurmctld.pid" "$LOGS/slurmctld.log" slurmctld
  start_slurm_daemon slurmd "$RUN/slurmd.pid" "$LOGS/slurmd.log" slurmd -N "$NODE"
  wait_idle
  log "up in $((SECONDS - t0)) s (node $NODE idle; logs in $LOGS)"
  cmd_status
}

stop_one() {
  local name=$1 pid i
  pid=$(recorded_pid "$name")
  if ! alive "$pid" "$name"; then rm -f "$PIDS/$name.pid"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    alive "$pid" "$name" || break
    sleep 0.1
  done
  if alive "$pid" "$name"; then
    log "$name (pid $pid) still running after 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" "$name" || break; sleep 0.1; done
  fi
  rm -f "$PIDS/$name.pid"
  log "$name: stopped (pid $pid)"
}

# Jobs still running when slurmd stops keep running (slurmstepd is not slurmd's child once started).
# Cancel them first while slurmctld and slurmd can still do it cleanly, and wait for their step daemons.
cancel_jobs() {
  ours_running slurmctld && ours_running slurmd || return 0
  local jobs i
  jobs=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ' || true)
  [[ -n ${jobs// /} ]] || return 0
  log "cancelling jobs still queued/running: $jobs"
  # shellcheck disable=SC2086
  timeout 10 scancel $jobs 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    [[ -z $(timeout 10 squeue -h -o %i 2>/dev/null) && -z $(live_pids slurmstepd) ]] && return 0
    sleep 0.1
  done
  log "WARNING: jobs/steps still present 30 s after scancel"
}

cmd_down() {
  need_root
  local purge=0 d
  [[ ${1:-} == --purge ]] && purge=1
  [[ -n ${1:-} && $purge -eq 0 ]] && die "usage: $0 down [--purge]"
  if [[ -d $PIDS ]]; then
    cancel_jobs
    for d in "${DAEMONS_STOP_ORDER[@]}"; do stop_one "$d"; done
    # a job's slurmstepd outlives slurmd; say so rather than kill by name
    local left
    left=$(live_pids slurmstepd)
    [[ -z $left ]] || log "WARNING: slurmstepd still running (pid $left): a job step survived; kill those PIDs by hand"
  else
    log "nothing recorded in $PIDS: nothing to stop"
  fi
  if ((purge)); then
    if [[ -e $WORK && ! -e $WORK/.zppo-slurm ]]; then
      die "$WORK has no .zppo-slurm marker: refusing to remove it"
    fi
    rm -rf "$WORK"
    local f
    for f in "$CONF" "$DBD_CONF"; do
      if [[ -f $f ]] && head -n1 "$f" | grep -qF "$MARKER"; then rm -f "$f"; fi
    done
    log "purged $WORK and the slurm config files it wrote"
  fi
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) echo "usage: $0 up | down [--purge] | status" >&2; exit 2 ;;
esac
