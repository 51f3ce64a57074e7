#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) for local
# development and tests. No containers: the jars come from Maven Central via
# deploy/kafka-local/pom.xml and run on the local JDK (17+).
#
# Usage: kafka-local.sh {fetch|start|stop|restart|status|reset|logs|acls|configs}
#
# Environment (all optional):
#   KAFKA_LOCAL_PORT             client port                    [19092]
#   KAFKA_LOCAL_CONTROLLER_PORT  KRaft controller port          [19093]
#   KAFKA_LOCAL_DATA_DIR         config, pid, logs, data        [<repo>/.data/kafka-local]
#   KAFKA_LOCAL_CACHE_DIR        fetched jars                   [<repo>/.cache/kafka-local]
#   KAFKA_LOCAL_START_TIMEOUT    seconds to wait for readiness  [90]
#   KAFKA_LOCAL_STOP_TIMEOUT     seconds before SIGKILL on stop [30]
#   KAFKA_LOCAL_JAVA_OPTS        extra JVM options for the broker
#   KAFKA_LOCAL_NODE_ID          this node's id in a cluster    [1]
#   KAFKA_LOCAL_QUORUM_VOTERS    id@host:port,... of the controllers [<node id>@127.0.0.1:<controller port>]
#   KAFKA_LOCAL_CLUSTER_ID       cluster id shared by every node of a cluster [random, kept in the data dir]
#   KAFKA_LOCAL_REPLICATION      replication factor of new and internal topics [1]
#   KAFKA_LOCAL_MIN_ISR          min.insync.replicas             [1]
#   (kafka-cluster.sh sets these to run several nodes as one cluster.)
#   KAFKA_LOCAL_SECURITY         PLAINTEXT, or SASL_SSL: TLS with a throwaway CA, SCRAM-SHA-512 users and
#                                the StandardAuthorizer (ACLs); fixed when the data dir is formatted
#                                [what the data dir was formatted for, else PLAINTEXT]
#   KAFKA_LOCAL_ADMIN_USER       SASL_SSL: the super user the tools connect as [admin]
#   KAFKA_LOCAL_ADMIN_PASSWORD   SASL_SSL: its password [random, kept in <data dir>/admin.password]
#   KAFKA_LOCAL_USERS            SASL_SSL: more SCRAM users made when the data dir is formatted,
#                                "name=password" separated by spaces or commas (no ACLs: grant them with `acls`)
#   JAVA_HOME                    JDK to use (else `java` on PATH)
#   MVN                          Maven executable               [mvn]
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"

PORT="${KAFKA_LOCAL_PORT:-19092}"
CONTROLLER_PORT="${KAFKA_LOCAL_CONTROLLER_PORT:-19093}"
HOST=127.0.0.1
BOOTSTRAP="$HOST:$PORT"
START_TIMEOUT="${KAFKA_LOCAL_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_LOCAL_STOP_TIMEOUT:-30}"
MVN="${MVN:-mvn}"
NODE_ID="${KAFKA_LOCAL_NODE_ID:-1}"
QUORUM_VOTERS="${KAFKA_LOCAL_QUORUM_VOTERS:-$NODE_ID@$HOST:$CONTROLLER_PORT}"
REPLICATION="${KAFKA_LOCAL_REPLICATION:-1}"
MIN_ISR="${KAFKA_LOCAL_MIN_ISR:-1}"
ADMIN_USER="${KAFKA_LOCAL_ADMIN_USER:-admin}"

abspath() { # make a (possibly relative, possibly not yet existing) dir absolute
  mkdir -p -- "$1" && (cd -- "$1" && pwd -P)
}
DATA_DIR="$(abspath "${KAFKA_LOCAL_DATA_DIR:-$REPO_ROOT/.data/kafka-local}")"
CACHE_DIR="$(abspath "${KAFKA_LOCAL_CACHE_DIR:-$REPO_ROOT/.cache/kafka-local}")"

POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.xml"
LIB_DIR="$CACHE_DIR/lib"
STAMP_FILE="$CACHE_DIR/fetch.stamp"
PROPS_FILE="$DATA_DIR/server.properties"
TOOLS_PROPS_FILE="$DATA_DIR/tools.properties"
PID_FILE="$DATA_DIR/kafka.pid"
CLUSTER_ID_FILE="$DATA_DIR/cluster.id"
KAFKA_LOG_DIRS="$DATA_DIR/logs"
SERVER_LOG="$DATA_DIR/server.log"
CONSOLE_LOG="$DATA_DIR/console.log"
SECURITY_FILE="$DATA_DIR/security"
TLS_DIR="$DATA_DIR/tls"
ADMIN_PASSWORD_FILE="$DATA_DIR/admin.password"
ADMIN_PROPS_FILE="$DATA_DIR/admin.properties"
# The node certificate's subject: the broker's own principal on the controller listener (mutual TLS).
NODE_PRINCIPAL="CN=kafka-local"
# Unset: what the data dir was formatted for (so stop, restart and status need not repeat it).
SECURITY="${KAFKA_LOCAL_SECURITY:-$(cat -- "$SECURITY_FILE" 2>/dev/null || echo PLAINTEXT)}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

log() { printf 'kafka-local: %s\n' "$*"; }
err() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

usage() {
  cat <<EOF
usage: $(basename -- "$0") {fetch|start|stop|restart|status|reset|logs|acls|configs}

  fetch    copy the Kafka jars from Maven Central into $LIB_DIR (no-op if current)
  start    start the broker on $BOOTSTRAP (no-op if it is already running)
  stop     stop the broker (no-op if it is not running)
  restart  stop, then start
  status   exit 0 if the broker is running and answering, 3 otherwise
  reset    stop, then delete $DATA_DIR
  logs     print the tail of the broker log
  acls     kafka-acls.sh against this broker as the admin user, e.g.
           acls --add --allow-principal User:alice --operation Read --topic t
  configs  kafka-configs.sh against this broker as the admin user, e.g.
           configs --alter --entity-type users --entity-name alice --add-config 'SCRAM-SHA-512=[password=...]'

KAFKA_LOCAL_SECURITY=SASL_SSL starts it secured (TLS, SCRAM-SHA-512, ACLs): clients verify the broker
with $TLS_DIR/ca.crt; the tools connect as the admin user with $ADMIN_PROPS_FILE.
EOF
}

# --------------------------------------------------------------------------
# fetch

pom_hash() { sha256sum -- "$POM" | cut -d' ' -f1; }

fetched() {
  [[ -f "$STAMP_FILE" ]] || return 1
  compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null || return 1
  compgen -G "$LIB_DIR/kafka-tools-*.jar" >/dev/null || return 1
  [[ "$(cat -- "$STAMP_FILE")" == "$(pom_hash)" ]]
}

cmd_fetch() {
  if fetched; then
    return 0
  fi
  command -v "$MVN" >/dev/null 2>&1 || die "'$MVN' not found: install Maven (3.8+) or set MVN"
  log "fetching Kafka jars with Maven into $LIB_DIR"
  local tmp="$CACHE_DIR/lib.tmp"
  rm -rf -- "$tmp"
  # A fresh directory each time, so a changed pom never leaves stale jars of
  # another version on the classpath.
  # Output goes to a log (Debian's Maven 3.8 prints stray ANSI codes even with -q).
  if ! "$MVN" -B -q --no-transfer-progress -Dstyle.color=never \
      -f "$POM" -Dkafka.local.lib.dir="$tmp" generate-resources \
      </dev/null >"$CACHE_DIR/fetch.log" 2>&1; then
    rm -rf -- "$tmp"
    tail -n 60 -- "$CACHE_DIR/fetch.log" >&2
    die "maven failed to fetch the Kafka jars (full output: $CACHE_DIR/fetch.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "maven ran but no kafka_2.13 jar in $tmp"
  rm -rf -- "$LIB_DIR" "$CACHE_DIR/target"
  mv -- "$tmp" "$LIB_DIR"
  pom_hash >"$STAMP_FILE"
  log "fetched $(find "$LIB_DIR" -name '*.jar' | wc -l) jars"
}

# --------------------------------------------------------------------------
# helpers

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found: install a JDK 17+ or set JAVA_HOME"
  local v major
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(cut -d. -f2 <<<"$v")"
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || die "Kafka 4.x needs Java 17+, found '${v:-unknown}' ($JAVA)"
}

# Run a Kafka main class from the fetched jars as a short-lived tool.
# Prefix with e.g. `timeout 30` by setting TOOL_PREFIX.
kafka_tool() {
  local main="$1"; shift
  ${TOOL_PREFIX:-} "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
    -Dkafka.logs.dir="$DATA_DIR" -Dkafka.local.log.file=tools.log -Dkafka.local.log.level=WARN \
    -cp "$LIB_DIR/*" "$main" "$@"
}

read_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  printf '%s' "$pid"
}

# Is the pid in the pid file alive and really our broker (not a reused pid)?
broker_pid() {
  local pid
  pid="$(read_pid)" || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PROPS_FILE" || return 1
  fi
  printf '%s' "$pid"
}

port_open() { # bash-only TCP connect check
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

write_tools_props() {
  {
    cat <<EOF
# Admin client settings for kafka-local.sh's readiness probe (fail fast).
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
    if secured; then cat -- "$ADMIN_PROPS_FILE"; fi
  } >"$TOOLS_PROPS_FILE"
}

# A real metadata request through the Admin client (kafka-topics --list).
probe() {
  [[ -f "$TOOLS_PROPS_FILE" ]] || write_tools_props
  port_open "$PORT" || return 1
  TOOL_PREFIX="timeout 30" kafka_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$TOOLS_PROPS_FILE" --list >/dev/null 2>&1
}

file_size() { if [[ -f "$1" ]]; then stat -c %s -- "$1"; else echo 0; fi; }

# Sizes of the logs when this start began, so a failure shows only new lines.
CONSOLE_LOG_OFFSET=0
SERVER_LOG_OFFSET=0

show_log_tail() {
  local f off size
  for f in "$CONSOLE_LOG" "$SERVER_LOG"; do
    off=0
    [[ "$f" == "$CONSOLE_LOG" ]] && off=$CONSOLE_LOG_OFFSET
    [[ "$f" == "$SERVER_LOG" ]] && off=$SERVER_LOG_OFFSET
    size="$(file_size "$f")"
    ((size < off)) && off=0 # rolled over
    if ((size > off)); then
      err "---- last lines of $f ----"
      tail -c +$((off + 1)) -- "$f" | tail -n 40 >&2
    fi
  done
}

# Wait until the broker answers a metadata request; fail if it dies.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      err "broker process $pid exited during startup"
      rm -f -- "$PID_FILE"
      show_log_tail
      return 1
    fi
    if probe; then
      return 0
    fi
    sleep 0.5
  done
  err "broker (pid $pid) did not answer on $BOOTSTRAP within ${START_TIMEOUT}s"
  show_log_tail
  return 1
}

secured() { [[ "$SECURITY" == SASL_SSL ]]; }

check_security_mode() {
  case "$SECURITY" in
    PLAINTEXT | SASL_SSL) ;;
    *) die "KAFKA_LOCAL_SECURITY must be PLAINTEXT or SASL_SSL, not '$SECURITY'" ;;
  esac
  if [[ -f "$KAFKA_LOG_DIRS/meta.properties" ]]; then
    local formatted=PLAINTEXT
    [[ -s "$SECURITY_FILE" ]] && formatted="$(cat -- "$SECURITY_FILE")"
    [[ "$formatted" == "$SECURITY" ]] \
      || die "$DATA_DIR was formatted for $formatted, not $SECURITY: reset it (kafka-local.sh reset) or use another data dir"
  fi
  if secured; then
    command -v openssl >/dev/null 2>&1 || die "KAFKA_LOCAL_SECURITY=SASL_SSL needs openssl (for the throwaway CA)"
  fi
}

# A throwaway CA and the node's certificate (for 127.0.0.1 and localhost), made once per data dir.
# The broker reads them as PEM; clients verify the broker with ca.crt.
make_tls() {
  [[ -s "$TLS_DIR/node.pem" && -s "$TLS_DIR/ca.crt" ]] && return 0
  log "making a throwaway CA and the broker's certificate in $TLS_DIR"
  mkdir -p -- "$TLS_DIR"
  chmod 700 -- "$TLS_DIR"
  (
    cd -- "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -keyout ca.key -out ca.crt \
      -subj "/CN=kafka-local throwaway CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout node.key -out node.csr -subj "/$NODE_PRINCIPAL"
    printf '%s\n' "subjectAltName=IP:$HOST,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >node.ext
    openssl x509 -req -sha256 -days 30 -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile node.ext -out node.crt
    cat node.key node.crt >node.pem
    rm -f node.csr node.ext ca.srl
    chmod 600 ca.key node.key node.pem
  ) >"$DATA_DIR/tls.log" 2>&1 || { cat -- "$DATA_DIR/tls.log" >&2; die "could not make the TLS certificates"; }
}

# The admin (super) user's password, and the client settings the tools connect with as that user.
write_admin_props() {
  local password
  if [[ -s "$ADMIN_PASSWORD_FILE" && -f "$KAFKA_LOG_DIRS/meta.properties" ]]; then
    # Formatted: the metadata holds this password; another one would lock the broker out of itself.
    password="$(cat -- "$ADMIN_PASSWORD_FILE")"
    [[ -z "${KAFKA_LOCAL_ADMIN_PASSWORD:-}" || "$KAFKA_LOCAL_ADMIN_PASSWORD" == "$password" ]] \
      || die "KAFKA_LOCAL_ADMIN_PASSWORD differs from the one $DATA_DIR was formatted with (change it with configs, or reset)"
  elif [[ -n "${KAFKA_LOCAL_ADMIN_PASSWORD:-}" ]]; then
    password="$KAFKA_LOCAL_ADMIN_PASSWORD"
  else
    password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  fi
  [[ "$password" =~ ^[A-Za-z0-9._~+-]+$ ]] \
    || die "KAFKA_LOCAL_ADMIN_PASSWORD may hold only letters, digits and ._~+- (it goes into a JAAS line)"
  (umask 077 && printf '%s\n' "$password" >"$ADMIN_PASSWORD_FILE")
  (umask 077 && cat >"$ADMIN_PROPS_FILE" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN_USER" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
EOF
  )
}

admin_password() { cat -- "$ADMIN_PASSWORD_FILE"; }

# Secured: clients on SASL_SSL (SCRAM-SHA-512) on the client port, which the broker also uses to reach
# itself (as the admin user); the controller listener takes only mutual TLS with the node's own
# certificate. ACLs by KRaft's StandardAuthorizer; the admin user and the node are super users.
security_props() {
  if ! secured; then
    cat <<EOF
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
    return 0
  fi
  cat <<EOF
listeners=CLIENT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=CLIENT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN_USER" password="$(admin_password)";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/node.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$ADMIN_USER;User:$NODE_PRINCIPAL
allow.everyone.if.no.acl.found=false
EOF
}

write_server_props() {
  cat >"$PROPS_FILE" <<EOF
# Generated by deploy/kafka-local/kafka-local.sh on every start; edits are lost.
# KRaft: this node is both broker and controller (the only one, unless kafka-cluster.sh runs several).
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$QUORUM_VOTERS
controller.listener.names=CONTROLLER
$(security_props)

log.dirs=$KAFKA_LOG_DIRS
num.partitions=12
auto.create.topics.enable=true
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$REPLICATION
share.coordinator.state.topic.min.isr=$MIN_ISR
# Consumer groups join immediately (tests).
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
log.retention.hours=168
EOF
}

format_storage() {
  if [[ -f "$KAFKA_LOG_DIRS/meta.properties" ]]; then
    return 0
  fi
  local cid
  if [[ -n "${KAFKA_LOCAL_CLUSTER_ID:-}" ]]; then
    cid="$KAFKA_LOCAL_CLUSTER_ID"
    printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
  elif [[ -s "$CLUSTER_ID_FILE" ]]; then
    cid="$(cat -- "$CLUSTER_ID_FILE")"
  else
    # What `kafka-storage random-uuid` prints (base64url of 16 random bytes,
    # never starting with '-'), without paying for another JVM start.
    cid=-
    while [[ "$cid" == -* ]]; do
      cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    [[ ${#cid} -eq 22 ]] || die "could not generate a cluster id"
    printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
  fi
  local -a scram=()
  # KRaft keeps SCRAM credentials in its metadata: the admin user is there from the first start.
  if secured; then
    scram=(--add-scram "SCRAM-SHA-512=[name=$ADMIN_USER,password=$(admin_password)]")
    local entry
    local users="${KAFKA_LOCAL_USERS:-}"
    for entry in ${users//,/ }; do
      [[ "$entry" =~ ^[A-Za-z0-9._-]+=[A-Za-z0-9._~+-]+$ ]] \
        || die "KAFKA_LOCAL_USERS: '${entry%%=*}=…' is not name=password (letters, digits and ._-; password also ~+)"
      scram+=(--add-scram "SCRAM-SHA-512=[name=${entry%%=*},password=${entry#*=}]")
    done
  fi
  log "formatting storage in $KAFKA_LOG_DIRS (cluster id $cid, $SECURITY)"
  kafka_tool kafka.tools.StorageTool format --cluster-id "$cid" --config "$PROPS_FILE" \
    --ignore-formatted "${scram[@]}" >"$DATA_DIR/format.log" 2>&1 \
    || { cat -- "$DATA_DIR/format.log" >&2; die "storage format failed"; }
  printf '%s\n' "$SECURITY" >"$SECURITY_FILE"
}

lock_data_dir() {
  # Serialise start/stop/reset on one data dir (e.g. parallel test workers).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$DATA_DIR/.lock"
    flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) 9 || die "timed out waiting for $DATA_DIR/.lock"
  fi
}

# --------------------------------------------------------------------------
# commands

cmd_start() {
  local pid
  check_java
  if pid="$(broker_pid)"; then
    # Running (possibly still starting from a concurrent call): wait for it.
    wait_ready "$pid" || exit 1
    log "already running (pid $pid) on $BOOTSTRAP"
    return 0
  fi
  rm -f -- "$PID_FILE"

  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $p on $HOST is already in use by another process (set KAFKA_LOCAL_PORT / KAFKA_LOCAL_CONTROLLER_PORT)"
    fi
  done

  cmd_fetch
  check_security_mode
  mkdir -p -- "$KAFKA_LOG_DIRS"
  if secured; then
    make_tls
    write_admin_props
  fi
  write_server_props
  write_tools_props
  format_storage

  log "starting broker on $BOOTSTRAP ($SECURITY; controller $HOST:$CONTROLLER_PORT, data $DATA_DIR)"
  local started=$SECONDS
  # shellcheck disable=SC2086
  local -a jvm_opts=(
    -Xms256m -Xmx512m
    -XX:+UseSerialGC
    -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$LOG4J_CONFIG"
    -Dkafka.logs.dir="$DATA_DIR"
    -Dkafka.local.log.file=server.log
    ${KAFKA_LOCAL_JAVA_OPTS:-}
  )
  CONSOLE_LOG_OFFSET="$(file_size "$CONSOLE_LOG")"
  SERVER_LOG_OFFSET="$(file_size "$SERVER_LOG")"
  printf '%s\n' "---- $(date '+%F %T') start ----" >>"$CONSOLE_LOG"
  # fd 9 (the lock) is closed for the broker, or it would hold the lock for
  # its whole life. The inner shell writes its own pid and then execs java, so the pid file
  # holds the broker's pid whether or not setsid had to fork.
  local -a detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-local "$PID_FILE" \
    "$JAVA" "${jvm_opts[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$PROPS_FILE" \
    </dev/null >>"$CONSOLE_LOG" 2>&1 9>&- &
  local waited=0
  while [[ ! -s "$PID_FILE" ]] && ((waited < 50)); do sleep 0.1; waited=$((waited + 1)); done
  pid="$(read_pid)" || die "broker did not write its pid file"

  wait_ready "$pid" || { cmd_stop >/dev/null 2>&1 || true; exit 1; }
  log "broker ready (pid $pid) on $BOOTSTRAP in $((SECONDS - started))s"
}

cmd_stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f -- "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    err "broker did not stop within ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f -- "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    if [[ -d "$LIB_DIR" ]] && probe; then
      log "running (pid $pid) on $BOOTSTRAP"
      return 0
    fi
    log "running (pid $pid) but not answering on $BOOTSTRAP"
    return 3
  fi
  log "not running"
  return 3
}

cmd_reset() {
  cmd_stop
  case "$DATA_DIR" in
    "" | / | "$REPO_ROOT" | "$HOME") die "refusing to delete '$DATA_DIR'" ;;
  esac
  log "deleting $DATA_DIR"
  rm -rf -- "$DATA_DIR"
}

# kafka-acls.sh / kafka-configs.sh against this broker, as the admin user when it is secured.
cmd_admin_tool() {
  local main="$1"; shift
  broker_pid >/dev/null || die "the broker is not running"
  local -a config=()
  secured && config=(--command-config "$ADMIN_PROPS_FILE")
  TOOL_PREFIX="timeout 60" kafka_tool "$main" --bootstrap-server "$BOOTSTRAP" "${config[@]}" "$@"
}

cmd_logs() {
  [[ -f "$SERVER_LOG" ]] || die "no log yet at $SERVER_LOG"
  tail -n "${1:-100}" -- "$SERVER_LOG"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    fetch) cmd_fetch; log "jars in $LIB_DIR" ;;
    start) lock_data_dir; cmd_start ;;
    stop) lock_data_dir; cmd_stop ;;
    restart) lock_data_dir; cmd_stop; cmd_start ;;
    status) cmd_status ;;
    reset) lock_data_dir; cmd_reset ;;
    logs) cmd_logs "$@" ;;
    acls) cmd_admin_tool org.apache.kafka.tools.AclCommand "$@" ;;
    configs) cmd_admin_tool kafka.admin.ConfigCommand "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
