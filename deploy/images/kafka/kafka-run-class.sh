#!/bin/sh
# Runs a Kafka main class from the jars (the tools print only warnings; the broker logs at INFO).
set -eu
main="$1"
shift
exec java ${KAFKA_TOOL_OPTS:--Xmx256m -XX:TieredStopAtLevel=1} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml -Dkafka.log.level=WARN \
  -cp '/opt/kafka/libs/*' "$main" "$@"
