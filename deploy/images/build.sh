#!/usr/bin/env bash
# Builds every image the compose stack needs without any image registry, from what an offline
# network usually still has: a Debian mirror, a PyPI mirror and a Maven mirror. With podman (as root).
#
#   debian      Debian bookworm by debootstrap from the mirror apt on this machine uses; the tarball is
#               kept under .data/images/, so a second run imports it (or finds the image) in seconds
#   python      Python 3.11 from Debian on it, a venv first on PATH (what python:3.11-slim-bookworm gives)
#   proposalflow  deploy/Dockerfile unchanged, with PYTHON_IMAGE set to the image above
#   kafka       Apache Kafka from the same Maven jars deploy/kafka-local uses, on Debian's Java 17;
#               KRaft, one node, storage formatted on first start; reads the KAFKA_* variables the way
#               the apache/kafka image does
#   postgres    PostgreSQL from Debian's packages (15); reads POSTGRES_USER, POSTGRES_PASSWORD and runs
#               /docker-entrypoint-initdb.d/*.sql on first start, like the postgres image
#
# Usage: deploy/images/build.sh [--print-env] [IMAGE...]    (default: all five, in the order above)
#   --print-env   print only the variables that point docker-compose.yml at these images
# Every image is cached by podman's layer cache: a second build with no change takes seconds.
# Environment (all optional):
#   PROPOSALFLOW_IMAGES_DIR   where the base tarball is kept             [<repo>/.data/images]
#   DEBIAN_MIRROR             the Debian mirror           [the one apt uses here, for bookworm]
#   PROPOSALFLOW_VERSION      the ProposalFlow image's version label     [from pyproject.toml]
#   CONTAINERS_CONF           podman settings             [deploy/images/containers.conf]
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
IMAGES_DIR="${PROPOSALFLOW_IMAGES_DIR:-$REPO_ROOT/.data/images}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$SCRIPT_DIR/containers.conf}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO_ROOT/deploy/kafka-local/pom.xml")"
VERSION="${PROPOSALFLOW_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml" | head -n1)}"

# The names docker-compose.yml reads (PROPOSALFLOW_IMAGE, KAFKA_IMAGE, POSTGRES_IMAGE).
DEBIAN_IMAGE=localhost/proposalflow-debian:bookworm
PYTHON_IMAGE=localhost/proposalflow-python:3.11-bookworm
PROPOSALFLOW_IMAGE="localhost/proposalflow:$VERSION"
KAFKA_IMAGE="localhost/proposalflow-kafka:$KAFKA_VERSION"
POSTGRES_IMAGE=localhost/proposalflow-postgres:15-bookworm

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

print_env() {
  printf 'PROPOSALFLOW_IMAGE=%s\nKAFKA_IMAGE=%s\nPOSTGRES_IMAGE=%s\n' "$PROPOSALFLOW_IMAGE" "$KAFKA_IMAGE" "$POSTGRES_IMAGE"
}

have_image() { podman image exists "$1"; }

mirror() { # the Debian mirror apt is configured with for bookworm, read now (never hard-coded)
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then printf '%s\n' "$DEBIAN_MIRROR"; return; fi
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
    | awk '$2 == "bookworm" { print $1; exit }' | grep . \
    || die "no bookworm mirror in apt's sources; set DEBIAN_MIRROR"
}

security_mirror() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk '$2 == "bookworm-security" { print $1; exit }'
}

build_debian() {
  local tarball="$IMAGES_DIR/debian-bookworm.tar"
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local root="$IMAGES_DIR/debian-bookworm.root" main security
    main="$(mirror)"
    security="$(security_mirror)"
    log "debootstrap bookworm from $main"
    rm -rf -- "$root" && mkdir -p -- "$root"
    debootstrap --variant=minbase bookworm "$root" "$main" >"$IMAGES_DIR/debootstrap.log" 2>&1 \
      || { tail -n 40 "$IMAGES_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $IMAGES_DIR/debootstrap.log)"; }
    {
      echo "deb $main bookworm main"
      echo "deb $main bookworm-updates main"
      [[ -n "$security" ]] && echo "deb $security bookworm-security main"
    } >"$root/etc/apt/sources.list"
    # Smaller images: no documentation, no apt caches left in a layer (as the slim images do).
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    echo 'APT::Install-Recommends "false"; APT::Install-Suggests "false";' >"$root/etc/apt/apt.conf.d/01-norecommends"
    rm -rf -- "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv -- "$tarball.tmp" "$tarball"
    rm -rf -- "$root"
    podman rmi --force "$DEBIAN_IMAGE" >/dev/null 2>&1 || true
  fi
  if ! have_image "$DEBIAN_IMAGE"; then
    log "importing $tarball as $DEBIAN_IMAGE"
    podman import --change 'CMD ["/bin/bash"]' "$tarball" "$DEBIAN_IMAGE" >/dev/null
  fi
  log "$DEBIAN_IMAGE ready"
}

build() { # podman build with the project's defaults: docker format (keeps HEALTHCHECK), host network
  local tag="$1"; shift
  log "building $tag"
  podman build --format docker --network host --layers -t "$tag" "$@" >&2
}

build_python() {
  have_image "$DEBIAN_IMAGE" || build_debian
  build "$PYTHON_IMAGE" --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" "$SCRIPT_DIR/python"
}

build_proposalflow() {
  have_image "$PYTHON_IMAGE" || build_python
  local revision
  revision="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  # pip inside the build trusts the same certificates as this machine (a proxy's CA included).
  build "$PROPOSALFLOW_IMAGE" -f "$REPO_ROOT/deploy/Dockerfile" \
    -v "$CA_BUNDLE:$CA_BUNDLE:ro" \
    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$revision" \
    "$REPO_ROOT"
  # The compose file's default name (proposalflow:<version>) finds the same image.
  podman tag "$PROPOSALFLOW_IMAGE" "localhost/proposalflow:latest"
}

build_kafka() {
  have_image "$DEBIAN_IMAGE" || build_debian
  bash "$REPO_ROOT/deploy/kafka-local/kafka-local.sh" fetch >&2
  local cache="${KAFKA_LOCAL_CACHE_DIR:-$REPO_ROOT/.cache/kafka-local}" context="$IMAGES_DIR/kafka-context"
  # A context of its own: the jars and the image's scripts (hard links keep it cheap and cacheable).
  rm -rf -- "$context" && mkdir -p -- "$context"
  cp -al -- "$cache/lib" "$context/libs" 2>/dev/null || cp -a -- "$cache/lib" "$context/libs"
  cp -- "$SCRIPT_DIR"/kafka/* "$context/"
  build "$KAFKA_IMAGE" --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" --build-arg "KAFKA_VERSION=$KAFKA_VERSION" "$context"
}

build_postgres() {
  have_image "$DEBIAN_IMAGE" || build_debian
  build "$POSTGRES_IMAGE" --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" "$SCRIPT_DIR/postgres"
}

main() {
  local -a images=()
  local only_env=0 image
  for arg in "$@"; do
    case "$arg" in
      --print-env) only_env=1 ;;
      debian | python | proposalflow | kafka | postgres) images+=("$arg") ;;
      *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
  done
  if ((only_env)); then print_env; return; fi
  command -v podman >/dev/null || die "podman is missing (apt-get install podman runc)"
  ((${#images[@]})) || images=(debian python proposalflow kafka postgres)
  mkdir -p -- "$IMAGES_DIR"
  local started=$SECONDS
  for image in "${images[@]}"; do "build_$image"; done
  log "done in $((SECONDS - started)) s; point docker-compose.yml at the images with:"
  print_env
}

main "$@"
