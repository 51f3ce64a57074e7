#!/usr/bin/env bash
# Runs the whole suite on this machine: a real Kafka (deploy/kafka-local), the five services as
# processes under honcho, and the web portal (门户); SQLite files under .data/. Ctrl-C stops the
# services; `make stop` the broker. With PROPOSALFLOW_RUN_DEMO=1 (`make demo`) the demo data and story
# are loaded through the APIs once the services are ready.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# Every port can be moved when another program holds it (README, "When a port is taken"): the broker's
# with KAFKA_LOCAL_PORT (its controller's with KAFKA_LOCAL_CONTROLLER_PORT, default the next one), each
# service's with PROPOSALFLOW_<SERVICE>_HTTP_PORT; the portal follows the services it calls.
export KAFKA_LOCAL_PORT=${KAFKA_LOCAL_PORT:-19092}
export KAFKA_LOCAL_CONTROLLER_PORT=${KAFKA_LOCAL_CONTROLLER_PORT:-$((KAFKA_LOCAL_PORT + 1))}
export PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS=${PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_LOCAL_PORT}
for service in intake assignment progress; do
  port_var=PROPOSALFLOW_${service^^}_HTTP_PORT url_var=PROPOSALFLOW_PORTAL_${service^^}_URL
  if [ -n "${!port_var:-}" ] && [ -z "${!url_var:-}" ]; then export "$url_var=http://127.0.0.1:${!port_var}"; fi
done

bash deploy/kafka-local/kafka-local.sh start
"$BIN/proposalflow" topics create >/dev/null
"$BIN/proposalflow" migrate

# A person at a terminal gets short coloured lines (PROPOSALFLOW_LOG_FORMAT=human) without honcho's
# prefix (the lines name their service); elsewhere JSON lines as in production. PROPOSALFLOW_LOG_FORMAT
# set by hand wins.
HONCHO_ARGS=()
if [ -t 1 ] && [ -z "${PROPOSALFLOW_LOG_FORMAT:-}" ]; then
  export PROPOSALFLOW_LOG_FORMAT=human FORCE_COLOR=${FORCE_COLOR:-1}
fi
if [ "${PROPOSALFLOW_LOG_FORMAT:-}" = human ]; then HONCHO_ARGS+=(--no-prefix); fi

INTAKE_URL=$("$BIN/python" -c 'from shared.ready import local_urls; print(local_urls()["intake"])')
MEMBER_TOKEN=$("$BIN/proposalflow" token --role member --sub m-demo --name 演示委员)
COMMITTEE_TOKEN=$("$BIN/proposalflow" token --role committee --sub c-demo)
cat <<INFO

ProposalFlow is starting (the services' addresses follow once all answer /readyz).

Submit a proposal over the API (as member m-demo):
  curl -s -X POST $INTAKE_URL/proposals \\
    -H "Authorization: Bearer $MEMBER_TOKEN" -H 'content-type: application/json' \\
    -d '{"title":"关于推进全域土地综合整治的建议","body":"建议统筹推进全域土地综合整治, 优化国土空间布局。","category":"经济建设","first_proposer":{"id":"m-demo","name":"演示委员"},"suggestions":["编制整治规划","设立专项资金"]}'

File it (as the committee), with the id it returned:
  curl -s -X POST $INTAKE_URL/proposals/<id>/review \\
    -H "Authorization: Bearer $COMMITTEE_TOKEN" -H 'content-type: application/json' -d '{"decision":"file"}'

Other tokens: .venv/bin/proposalflow token --role dispatcher --sub d-demo   (roles: member committee dispatcher unit leader admin)

INFO
if [ "${PROPOSALFLOW_RUN_DEMO:-}" = "1" ]; then
  # The demo waits for the services itself, then plays through their APIs beside honcho.
  "$BIN/proposalflow" demo &
fi
# Prints the addresses, the demo logins and how to stop, once, when everything answers /readyz.
"$BIN/proposalflow" ready &
exec "$BIN/honcho" start "${HONCHO_ARGS[@]}" -f Procfile
