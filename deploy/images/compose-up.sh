#!/usr/bin/env bash
# Brings docker-compose.yml up with podman-compose in the order its depends_on asks for, waiting for
# each stage the way `docker compose up --wait` would: Kafka and PostgreSQL healthy, then the init job
# (topics, migrations) exited 0, then the five services healthy, then the portal.
#
# Why a script: podman before 4.6 cannot wait for `condition: service_healthy`, so podman-compose
# starts everything at once (the init job then meets a broker that is not up yet), and podman 4.3
# fails to start a container whose --requires chain is two deep. Here each stage is started with
# --no-deps and its health checked with `podman healthcheck run` (podman 4.3 runs health checks on a
# timer only under systemd). With Docker, `docker compose up -d --wait` does all of this by itself.
#
# Usage: deploy/images/compose-up.sh   (the whole stack; the observability profile is not started)
# Environment: COMPOSE_PROJECT_NAME [proposalflow], PODMAN_COMPOSE [podman-compose], the image and
# port variables of docker-compose.yml, COMPOSE_UP_TIMEOUT seconds per stage [300].
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$SCRIPT_DIR/containers.conf}"
PROJECT="${COMPOSE_PROJECT_NAME:-proposalflow}"
read -r -a COMPOSE <<<"${PODMAN_COMPOSE:-podman-compose}"
TIMEOUT="${COMPOSE_UP_TIMEOUT:-300}"
SERVICES=(intake assignment progress notify audit)

log() { printf '[compose-up %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$REPO_ROOT/docker-compose.yml" "$@"; }

container() { # the container of a service in this project
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}

up() { compose up -d --no-build --no-deps "$@" >&2; }

wait_healthy() { # every named service's health check passes, or its logs and a failure
  local deadline=$((SECONDS + TIMEOUT)) service name pending
  pending=("$@")
  while ((${#pending[@]})); do
    local still=()
    for service in "${pending[@]}"; do
      name="$(container "$service")"
      if [[ -n "$name" ]] && podman healthcheck run "$name" >/dev/null 2>&1; then
        log "$service healthy"
      else
        still+=("$service")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]})) || break
    if ((SECONDS > deadline)); then
      for service in "${pending[@]}"; do
        log "$service is not healthy after ${TIMEOUT} s; its last log lines:"
        podman logs --tail 40 "$(container "$service")" >&2 || true
      done
      exit 1
    fi
    sleep 2
  done
}

main() {
  local started=$SECONDS
  log "starting kafka and postgres (project $PROJECT)"
  up kafka postgres
  wait_healthy kafka postgres
  up init
  local init code
  init="$(container init)"
  code="$(podman wait "$init")"
  if [[ "$code" != 0 ]]; then
    log "the init job failed (exit $code):"
    podman logs --tail 60 "$init" >&2 || true
    exit 1
  fi
  log "init done (topics created, databases migrated)"
  log "starting ${SERVICES[*]}"
  up "${SERVICES[@]}"
  wait_healthy "${SERVICES[@]}"
  up portal
  wait_healthy portal
  log "stack $PROJECT up in $((SECONDS - started)) s"
}

main "$@"
