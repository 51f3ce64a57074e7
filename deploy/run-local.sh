#!/usr/bin/env bash
# Runs the whole suite on this machine: a real Kafka (deploy/kafka-local), the five services as
# processes under honcho, and the web portal (门户); SQLite files under .data/. Ctrl-C stops the
# services; `make stop` the broker. With PROPOSALFLOW_RUN_DEMO=1 (`make demo`) the demo data and story
# are loaded through the APIs once the services are ready.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

bash deploy/kafka-local/kafka-local.sh start
"$BIN/proposalflow" topics create >/dev/null
"$BIN/proposalflow" migrate

MEMBER_TOKEN=$("$BIN/proposalflow" token --role member --sub m-demo --name 演示委员)
COMMITTEE_TOKEN=$("$BIN/proposalflow" token --role committee --sub c-demo)
cat <<INFO

ProposalFlow is starting. APIs (OpenAPI docs at /docs of each):
  intake      http://127.0.0.1:8101   submit and review proposals
  assignment  http://127.0.0.1:8102   units, routing, 交办
  progress    http://127.0.0.1:8103   where a proposal stands, its timeline
  notify      http://127.0.0.1:8104   in-app inbox
  audit       http://127.0.0.1:8105   audit log
  portal      http://127.0.0.1:8080   the web dashboard (门户): a page per role, demo users at /login

Submit a proposal (as member m-demo):
  curl -s -X POST http://127.0.0.1:8101/proposals \\
    -H "Authorization: Bearer $MEMBER_TOKEN" -H 'content-type: application/json' \\
    -d '{"title":"关于推进全域土地综合整治的建议","body":"建议统筹推进全域土地综合整治, 优化国土空间布局。","category":"经济建设","first_proposer":{"id":"m-demo","name":"演示委员"},"suggestions":["编制整治规划","设立专项资金"]}'

File it (as the committee), with the id it returned:
  curl -s -X POST http://127.0.0.1:8101/proposals/<id>/review \\
    -H "Authorization: Bearer $COMMITTEE_TOKEN" -H 'content-type: application/json' -d '{"decision":"file"}'

Other tokens: .venv/bin/proposalflow token --role dispatcher --sub d-demo   (roles: $(echo member committee dispatcher unit leader admin))
Stop: Ctrl-C here, then \`make stop\` for Kafka.

INFO
if [ "${PROPOSALFLOW_RUN_DEMO:-}" = "1" ]; then
  # The demo waits for the services itself, then plays through their APIs beside honcho.
  "$BIN/proposalflow" demo &
fi
exec "$BIN/honcho" start -f Procfile
