#!/usr/bin/env bash
# pg-local.sh - run a throwaway, loopback-only PostgreSQL cluster for the
# ProposalFlow test suite (used by CI and by developers).
#
#   deploy/postgres/pg-local.sh install   install Debian's PostgreSQL packages if missing
#   deploy/postgres/pg-local.sh start     init (once) + start the cluster, ensure role/db, print URL
#   deploy/postgres/pg-local.sh stop      stop the cluster (no-op if not running)
#   deploy/postgres/pg-local.sh status    exit 0 if accepting connections, 3 otherwise
#   deploy/postgres/pg-local.sh reset     stop + delete the data directory
#   deploy/postgres/pg-local.sh url       print the SQLAlchemy URL
#
# Environment:
#   PG_LOCAL_PORT           TCP port on 127.0.0.1            (default 15432)
#   PG_LOCAL_DATA_DIR       data directory                   (default <repo>/.data/postgres)
#   PG_LOCAL_START_TIMEOUT  seconds to wait for the server   (default 60)
#
# stdout carries only the URL (start/url) or the status line (status);
# all progress messages go to stderr, so `DB_URL=$(pg-local.sh start)` works.
#
# This cluster is independent of Debian's default cluster (pg_lsclusters,
# port 5432), which is never touched.  Authentication is "trust" on loopback
# only: this is a test database, do not expose it.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)

PORT=${PG_LOCAL_PORT:-15432}
START_TIMEOUT=${PG_LOCAL_START_TIMEOUT:-60}
DB_USER=proposalflow
DB_PASSWORD=proposalflow
DB_NAME=proposalflow_test
PG_OS_USER=postgres     # PostgreSQL refuses to run as root
PG_SUPERUSER=postgres   # bootstrap superuser inside the cluster
PG_LIB=/usr/lib/postgresql

log() { printf 'pg-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if ! [[ $PORT =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
  die "PG_LOCAL_PORT must be a TCP port number, got '$PORT'"
fi
[[ $START_TIMEOUT =~ ^[0-9]+$ ]] || die "PG_LOCAL_START_TIMEOUT must be an integer"

is_root() { [ "$(id -u)" -eq 0 ]; }

url() { printf 'postgresql+asyncpg://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$PORT" "$DB_NAME"; }

# ---------------------------------------------------------------- binaries --

# Highest PostgreSQL major version with server binaries under /usr/lib/postgresql.
highest_pg_version() {
  local d
  for d in "$PG_LIB"/*/bin; do
    if [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      d=${d#"$PG_LIB"/}
      printf '%s\n' "${d%/bin}"
    fi
  done | sort -V | tail -n 1
}

# Sets PG_VERSION_USED / PG_BIN / PSQL / PG_ISREADY.  An existing cluster must
# be run by the major version that created it, not merely the highest one.
# Returns 1 if no usable server binaries are installed.
select_binaries() {
  local v=""
  if [ -f "$DATA_DIR/PG_VERSION" ]; then
    v=$(cat -- "$DATA_DIR/PG_VERSION")
    [ -x "$PG_LIB/$v/bin/postgres" ] \
      || die "$DATA_DIR was created by PostgreSQL $v, whose binaries are not installed; run '$0 reset' to recreate it"
  else
    v=$(highest_pg_version)
    [ -n "$v" ] || return 1
  fi
  PG_VERSION_USED=$v
  PG_BIN=$PG_LIB/$v/bin
  PSQL=$PG_BIN/psql;             [ -x "$PSQL" ] || PSQL=$(command -v psql) || die "psql not found"
  PG_ISREADY=$PG_BIN/pg_isready; [ -x "$PG_ISREADY" ] || PG_ISREADY=$(command -v pg_isready) || die "pg_isready not found"
}

ensure_pg_os_user() {
  is_root || return 0
  id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
  log "creating system user '$PG_OS_USER'"
  if getent group "$PG_OS_USER" >/dev/null; then
    useradd --system --gid "$PG_OS_USER" --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin "$PG_OS_USER"
  else
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
}

cmd_install() {
  local v
  v=$(highest_pg_version)
  if [ -n "$v" ]; then
    log "PostgreSQL $v server binaries present in $PG_LIB/$v/bin"
  else
    local sudo=()
    if ! is_root; then
      command -v sudo >/dev/null || die "PostgreSQL is not installed and we are not root; run: apt-get install -y postgresql"
      sudo=(sudo)
    fi
    log "PostgreSQL server binaries missing; installing Debian's postgresql package"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    v=$(highest_pg_version)
    [ -n "$v" ] || die "apt-get install finished but no server binaries found under $PG_LIB/*/bin"
    log "installed PostgreSQL $v"
  fi
  ensure_pg_os_user
}

# --------------------------------------------------------------- data dir --

# Run a command as the OS user that owns the cluster (postgres when we are
# root, ourselves otherwise), from / so an unreadable cwd does not matter.
# fd 9 (our lock) is closed so the postmaster does not inherit it.
as_pg() {
  if is_root; then
    (cd / && exec runuser -u "$PG_OS_USER" -- "$@" 9>&-)
  else
    (cd / && exec "$@" 9>&-)
  fi
}

# Can the postgres user traverse down to where $1 will live?  Checks the
# deepest existing ancestor (access(2) also checks every component above it);
# missing levels are created by us with mode 755.
pg_can_reach() {
  local d
  d=$(dirname -- "$1")
  while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
  (cd / && runuser -u "$PG_OS_USER" -- test -x "$d") 2>/dev/null
}

# Sets DATA_DIR (absolute, symlinks resolved) and FALLBACK (0/1).
resolve_data_dir() {
  FALLBACK=0
  if [ -n "${PG_LOCAL_DATA_DIR:-}" ]; then
    DATA_DIR=$(realpath -m -- "$PG_LOCAL_DATA_DIR")
    case $DATA_DIR in /) die "PG_LOCAL_DATA_DIR must not be /" ;; esac
    if is_root && id -u "$PG_OS_USER" >/dev/null 2>&1 && ! pg_can_reach "$DATA_DIR"; then
      die "PG_LOCAL_DATA_DIR=$DATA_DIR: its parent directories are not traversable by user '$PG_OS_USER'"
    fi
    return 0
  fi
  DATA_DIR=$(realpath -m -- "$REPO_ROOT/.data/postgres")
  if is_root && id -u "$PG_OS_USER" >/dev/null 2>&1 && ! pg_can_reach "$DATA_DIR"; then
    FALLBACK=1
    DATA_DIR=/tmp/proposalflow-pg-$PORT/data
    log "note: $REPO_ROOT is not traversable by user '$PG_OS_USER'; using data dir $DATA_DIR instead (lost on reboot)"
  fi
}

# Create the data dir's parent, then take a lock (fd 9) so
# concurrent invocations (parallel CI jobs, two terminals) serialize.
prepare_parent_and_lock() {
  local parent
  parent=$(dirname -- "$DATA_DIR")
  if [ "$FALLBACK" = 1 ]; then
    mkdir -m 755 -- "$parent" 2>/dev/null || true   # may race with a parallel run
    { [ -d "$parent" ] && [ ! -L "$parent" ] && [ "$(stat -c %u -- "$parent")" = "$(id -u)" ]; } \
      || die "$parent exists but is not a directory owned by us; remove it"
  fi
  (umask 022 && mkdir -p -- "$parent")
  exec 9>>"$parent/.$(basename -- "$DATA_DIR").pg-local.lock"
  flock -w 300 9 || die "timed out waiting for another pg-local.sh on $DATA_DIR"
}

# The postmaster writes its PID to postmaster.pid and chdir()s into the data
# directory, so "pid alive with cwd == data dir" is a reliable liveness test.
# A bare kill -0 is not: after a reboot (or in containers) the PID in a stale
# postmaster.pid is often reused by an unrelated process.
running_pid() {
  local pidfile=$DATA_DIR/postmaster.pid pid cwd
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 -- "$pidfile" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cwd=$(readlink -- "/proc/$pid/cwd" 2>/dev/null) || return 1
  [ "$cwd" = "$DATA_DIR" ] || return 1
  printf '%s\n' "$pid"
}

# Line 4 of postmaster.pid is the port the running server listens on.
running_port() { sed -n 4p -- "$DATA_DIR/postmaster.pid" 2>/dev/null | tr -d '[:space:]'; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Unix sockets live in the data dir unless its path would exceed the 107-byte
# sun_path limit, in which case /tmp is used.
socket_dir() {
  if [ $(( ${#DATA_DIR} + ${#PORT} + 12 )) -le 100 ]; then
    printf '%s\n' "$DATA_DIR"
  else
    printf '/tmp\n'
  fi
}

# Called with the lock held and the postmaster known not to be running.
clear_stale_locks() {
  if [ -f "$DATA_DIR/postmaster.pid" ]; then
    log "removing stale $DATA_DIR/postmaster.pid (server not running; crash or reboot)"
    rm -f -- "$DATA_DIR/postmaster.pid"
  fi
  local sock_lock pid
  sock_lock=$(socket_dir)/.s.PGSQL.$PORT.lock
  if [ -f "$sock_lock" ]; then
    pid=$(head -n 1 -- "$sock_lock" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = postgres ]; then
      die "$sock_lock belongs to another running PostgreSQL (pid $pid)"
    fi
    log "removing stale $sock_lock"
    rm -f -- "$sock_lock" "${sock_lock%.lock}"
  fi
}

sq() { printf "'%s'" "${1//\'/\'\'}"; }  # single-quote for postgresql.conf

initdb_cluster() {
  local tmp locale=C
  tmp=$DATA_DIR.initdb-tmp
  rm -rf -- "$tmp"
  if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
  (umask 077 && mkdir -- "$tmp")
  if is_root; then chown "$PG_OS_USER:" -- "$tmp"; fi
  log "initdb (PostgreSQL $PG_VERSION_USED, UTF8, locale $locale) in $DATA_DIR"
  local quiet=()
  if "$PG_BIN/initdb" --help 2>/dev/null | grep -q -- --no-instructions; then quiet=(--no-instructions); fi
  as_pg "$PG_BIN/initdb" -D "$tmp" --username="$PG_SUPERUSER" --auth=trust \
    -E UTF8 --locale="$locale" "${quiet[@]}" >&2 \
    || { rm -rf -- "$tmp"; die "initdb failed"; }
  # Our settings live in pg_local.conf, rewritten on every start (port etc.).
  printf "\n# Added by deploy/postgres/pg-local.sh\ninclude_if_exists = 'pg_local.conf'\n" \
    >> "$tmp/postgresql.conf"
  # A killed initdb leaves only *.initdb-tmp behind; the real path appears atomically.
  if [ -d "$DATA_DIR" ]; then rmdir -- "$DATA_DIR"; fi
  mv -- "$tmp" "$DATA_DIR"
}

write_local_conf() {
  local conf=$DATA_DIR/pg_local.conf
  {
    echo "# Managed by deploy/postgres/pg-local.sh - rewritten on every start."
    echo "port = $PORT"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = $(sq "$(socket_dir)")"
    echo "synchronous_commit = off    # test cluster: speed over durability of the last commits"
  } > "$conf"
  if is_root; then chown "$PG_OS_USER:" -- "$conf"; fi
  chmod 600 -- "$conf"
  grep -q "pg_local.conf" "$DATA_DIR/postgresql.conf" \
    || printf "\ninclude_if_exists = 'pg_local.conf'\n" >> "$DATA_DIR/postgresql.conf"
}

# Make an existing data dir usable: right owner (e.g. after a container
# rebuild changed postgres' uid) and mode 700.
fix_ownership() {
  local want_uid
  if is_root; then want_uid=$(id -u "$PG_OS_USER"); else want_uid=$(id -u); fi
  if [ "$(stat -c %u -- "$DATA_DIR")" != "$want_uid" ]; then
    is_root || die "$DATA_DIR is owned by someone else; run as its owner or '$0 reset' as root"
    log "chown -R $PG_OS_USER $DATA_DIR"
    chown -R "$PG_OS_USER:" -- "$DATA_DIR"
  fi
  chmod 700 -- "$DATA_DIR"
}

wait_ready() {
  local i
  for ((i = 0; i < START_TIMEOUT * 2; i++)); do
    if "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" -U "$PG_SUPERUSER" -d postgres; then return 0; fi
    sleep 0.5
  done
  die "server did not accept connections on 127.0.0.1:$PORT within ${START_TIMEOUT}s; see $DATA_DIR/pg-local.log"
}

ensure_role_and_db() {
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$PG_SUPERUSER" -d postgres >&2 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_PASSWORD';
  ELSE
    ALTER ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_PASSWORD';
  END IF;
END
\$\$;
SELECT format('CREATE DATABASE %I OWNER %I', '$DB_NAME', '$DB_USER')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
SQL
}

# --------------------------------------------------------------- commands --

cmd_start() {
  cmd_install
  resolve_data_dir
  prepare_parent_and_lock
  select_binaries || die "no PostgreSQL server binaries under $PG_LIB"

  local pid rport
  if pid=$(running_pid); then
    rport=$(running_port)
    [ "$rport" = "$PORT" ] \
      || die "cluster in $DATA_DIR is already running on port $rport, not $PORT; run '$0 stop' first"
    log "already running (pid $pid, port $PORT, data dir $DATA_DIR)"
  else
    if port_in_use; then
      die "127.0.0.1:$PORT is already in use by another server; set PG_LOCAL_PORT to a free port"
    fi
    if [ -d "$DATA_DIR" ] && [ ! -f "$DATA_DIR/PG_VERSION" ] && [ -n "$(ls -A -- "$DATA_DIR")" ]; then
      die "$DATA_DIR exists, is not empty and is not a PostgreSQL data directory"
    fi
    if [ ! -f "$DATA_DIR/PG_VERSION" ]; then initdb_cluster; fi
    fix_ownership
    clear_stale_locks
    write_local_conf
    log "starting PostgreSQL $PG_VERSION_USED on 127.0.0.1:$PORT (data dir $DATA_DIR)"
    as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$DATA_DIR/pg-local.log" -w -t "$START_TIMEOUT" start >&2 \
      || { tail -n 20 -- "$DATA_DIR/pg-local.log" >&2 || true; die "pg_ctl start failed; log: $DATA_DIR/pg-local.log"; }
  fi
  wait_ready
  ensure_role_and_db
  log "ready: role '$DB_USER', database '$DB_NAME'"
  url
}

# Assumes resolve_data_dir ran and the lock is held.
stop_locked() {
  local pid
  if ! pid=$(running_pid); then
    if [ -d "$DATA_DIR" ]; then clear_stale_locks; fi
    log "not running (data dir $DATA_DIR)"
    return 0
  fi
  select_binaries || die "no PostgreSQL binaries to stop the server with"
  log "stopping PostgreSQL (pid $pid, data dir $DATA_DIR)"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w -t 60 stop >&2; then
    log "fast shutdown timed out; trying immediate"
    as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m immediate -w -t 30 stop >&2
  fi
}

cmd_stop() {
  resolve_data_dir
  if [ ! -d "$DATA_DIR" ]; then log "not initialized (no $DATA_DIR)"; return 0; fi
  prepare_parent_and_lock
  stop_locked
}

cmd_reset() {
  resolve_data_dir
  if [ ! -e "$DATA_DIR" ] && [ ! -e "$DATA_DIR.initdb-tmp" ]; then
    log "nothing to reset (no $DATA_DIR)"; return 0
  fi
  prepare_parent_and_lock
  if [ -d "$DATA_DIR" ]; then
    stop_locked
    if [ ! -f "$DATA_DIR/PG_VERSION" ] && [ -n "$(ls -A -- "$DATA_DIR")" ]; then
      die "refusing to delete $DATA_DIR: not a PostgreSQL data directory"
    fi
  fi
  log "deleting $DATA_DIR"
  rm -rf -- "$DATA_DIR" "$DATA_DIR.initdb-tmp"
}

cmd_status() {
  resolve_data_dir
  local pid
  if pid=$(running_pid) && select_binaries \
     && "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" -U "$PG_SUPERUSER" -d postgres; then
    echo "running: pid $pid, 127.0.0.1:$PORT, data dir $DATA_DIR"
    return 0
  fi
  if [ -n "${pid:-}" ]; then
    echo "not accepting connections on 127.0.0.1:$PORT (postmaster pid $pid, data dir $DATA_DIR)"
  elif port_in_use; then
    echo "not running (data dir $DATA_DIR); note: 127.0.0.1:$PORT is used by another server"
  else
    echo "not running (data dir $DATA_DIR)"
  fi
  return 3
}

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; }

case ${1:-} in
  install) cmd_install ;;
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status || exit $? ;;
  reset)   cmd_reset ;;
  url)     url ;;
  -h|--help|help) usage ;;
  *) usage; exit 2 ;;
esac
