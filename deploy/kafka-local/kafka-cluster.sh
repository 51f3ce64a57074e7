#!/usr/bin/env bash
# A local N-node Apache Kafka cluster (KRaft; every node broker and controller), for the reliability
# tests and for trying failover by hand: topics get replication factor 3 and min.insync.replicas=2
# (with 3+ nodes), as in production. Each node is a kafka-local.sh broker with its own ports and data dir.
#
# Usage: kafka-cluster.sh {start|stop|status|reset|bootstrap|start-node N|stop-node N|kill-node N}
#
# Environment (all optional):
#   KAFKA_CLUSTER_NODES      how many nodes                                   [3]
#   KAFKA_CLUSTER_BASE_PORT  node N listens on BASE+2(N-1), its controller on the next port [19300]
#   KAFKA_CLUSTER_DATA_DIR   node N keeps its data in <dir>/node-N             [<repo>/.data/kafka-cluster]
#   KAFKA_LOCAL_CACHE_DIR, KAFKA_LOCAL_START_TIMEOUT, KAFKA_LOCAL_JAVA_OPTS, JAVA_HOME, MVN: as for kafka-local.sh
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
NODES="${KAFKA_CLUSTER_NODES:-3}"
BASE_PORT="${KAFKA_CLUSTER_BASE_PORT:-19300}"
DATA_DIR="${KAFKA_CLUSTER_DATA_DIR:-$REPO_ROOT/.data/kafka-cluster}"
HOST=127.0.0.1

[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "kafka-cluster: KAFKA_CLUSTER_NODES must be a positive number" >&2; exit 2; }
mkdir -p -- "$DATA_DIR"
DATA_DIR="$(cd -- "$DATA_DIR" && pwd -P)"

port_of() { echo $((BASE_PORT + 2 * ($1 - 1))); }
controller_port_of() { echo $((BASE_PORT + 2 * ($1 - 1) + 1)); }

voters() {
  local n out=""
  for ((n = 1; n <= NODES; n++)); do out+="${out:+,}$n@$HOST:$(controller_port_of "$n")"; done
  printf '%s' "$out"
}

bootstrap() {
  local n out=""
  for ((n = 1; n <= NODES; n++)); do out+="${out:+,}$HOST:$(port_of "$n")"; done
  printf '%s' "$out"
}

cluster_id() { # one id for every node, kept beside them
  local file="$DATA_DIR/cluster.id" cid=-
  if [[ ! -s "$file" ]]; then
    while [[ "$cid" == -* ]]; do cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; done
    printf '%s\n' "$cid" >"$file"
  fi
  cat -- "$file"
}

node() { # node N: run kafka-local.sh with that node's settings
  local n="$1"; shift
  ((n >= 1 && n <= NODES)) || { echo "kafka-cluster: no node $n (1..$NODES)" >&2; exit 2; }
  local replication=$((NODES < 3 ? NODES : 3))
  KAFKA_LOCAL_PORT="$(port_of "$n")" \
    KAFKA_LOCAL_CONTROLLER_PORT="$(controller_port_of "$n")" \
    KAFKA_LOCAL_DATA_DIR="$DATA_DIR/node-$n" \
    KAFKA_LOCAL_NODE_ID="$n" \
    KAFKA_LOCAL_QUORUM_VOTERS="$(voters)" \
    KAFKA_LOCAL_CLUSTER_ID="$(cluster_id)" \
    KAFKA_LOCAL_REPLICATION="$replication" \
    KAFKA_LOCAL_MIN_ISR=$((replication > 1 ? 2 : 1)) \
    KAFKA_LOCAL_JAVA_OPTS="${KAFKA_LOCAL_JAVA_OPTS:--Xms128m -Xmx384m}" \
    bash "$SCRIPT_DIR/kafka-local.sh" "$@"
}

cmd_start() {
  # The nodes start together: none answers until a majority of the controllers has formed a quorum.
  bash "$SCRIPT_DIR/kafka-local.sh" fetch >/dev/null
  cluster_id >/dev/null # made once here: the nodes, started side by side, would each invent one
  local n failed=0
  local -a pids=()
  for ((n = 1; n <= NODES; n++)); do node "$n" start & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  ((failed == 0)) || { echo "kafka-cluster: a node failed to start" >&2; exit 1; }
  echo "kafka-cluster: $NODES nodes ready on $(bootstrap)"
}

cmd_stop() {
  # Together too: the last node of a cluster stopped one by one waits in vain for a quorum to leave.
  local n
  local -a pids=()
  for ((n = 1; n <= NODES; n++)); do node "$n" stop & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
}

kill_node() { # SIGKILL: a crash, not a shutdown
  local pid_file="$DATA_DIR/node-$1/kafka.pid" pid
  [[ -f "$pid_file" ]] || { echo "kafka-cluster: node $1 is not running"; return 0; }
  pid="$(tr -dc '0-9' <"$pid_file")"
  if [[ -n "$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DATA_DIR/node-$1/"; then
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "kafka-cluster: node $1 killed (pid $pid)"
  fi
  rm -f -- "$pid_file"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) local n rc=0; for ((n = 1; n <= NODES; n++)); do node "$n" status || rc=3; done; exit "$rc" ;;
    reset) cmd_stop; case "$DATA_DIR" in "" | / | "$REPO_ROOT" | "$HOME") exit 1 ;; esac; rm -rf -- "$DATA_DIR" ;;
    bootstrap) bootstrap; echo ;;
    start-node) node "${1:?node number}" start ;;
    stop-node) node "${1:?node number}" stop ;;
    kill-node) kill_node "${1:?node number}" ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
