#!/bin/bash
# Writes server.properties from the KAFKA_* variables (the apache/kafka image's convention), formats
# the storage on first start, then runs the broker in the foreground.
set -euo pipefail
config=/opt/kafka/config/server.properties
: >"$config"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_TOOL_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_GC_LOG_OPTS | \
      KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS | KAFKA_DEBUG | KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key="$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')"
  printf '%s=%s\n' "$key" "$value" >>"$config"
done < <(env)
grep -q '^log.dirs=' "$config" || echo "log.dirs=/var/lib/kafka/data" >>"$config"
log_dirs="$(sed -n 's/^log.dirs=//p' "$config")"
if [[ ! -s "${log_dirs%%,*}/meta.properties" ]]; then
  echo "kafka-entrypoint: formatting ${log_dirs} (cluster id ${CLUSTER_ID:=5L6g3nShT-eMCtK--X86sw})"
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" --config "$config" --ignore-formatted
fi
# shellcheck disable=SC2086  # the options are word lists
exec java ${KAFKA_HEAP_OPTS:-} ${KAFKA_OPTS:-} -XX:+ExitOnOutOfMemoryError \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$config"
