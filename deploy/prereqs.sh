#!/usr/bin/env bash
# prereqs.sh - what `make run`, `make test` and .ci/run need from the machine, before anything starts.
#
#   deploy/prereqs.sh run    Python 3.11+ (with venv), Java 17+, Maven          (make run, make demo)
#   deploy/prereqs.sh test   the above, PostgreSQL's server, Chromium, a CJK font, OpenSSL, and podman, runc
#                            and debootstrap for the container test                    (make test)
#   deploy/prereqs.sh ci     the above and make                                  (.ci/run)
#   deploy/prereqs.sh containers  podman, runc, debootstrap              (make test-containers on its own)
#
# Whatever is missing is installed with apt-get when we are root on a Debian-like machine (non-interactive);
# otherwise the script stops, before anything starts, with one message that lists what to install and the
# command for it. Nothing is installed that the command does not need. Quiet when everything is present.
#
# Environment:
#   PYTHON                          the Python that makes .venv                  (default python3)
#   JAVA_HOME                       the JDK the broker runs on                   (else `java` on PATH)
#   MVN                             Maven                                        (default mvn)
#   PROPOSALFLOW_PREREQS_INSTALL    auto: install when root with apt-get; never: only check and report
#   PROPOSALFLOW_PREREQS_PG_LIB     where PostgreSQL's server binaries live      (default /usr/lib/postgresql)
set -euo pipefail

NEEDS=${1:-}
case $NEEDS in
  run | test | ci | containers) ;;
  *) echo "usage: $0 {run|test|ci|containers}" >&2; exit 2 ;;
esac
COMMAND="make $NEEDS"
[ "$NEEDS" = ci ] && COMMAND=.ci/run

PYTHON=${PYTHON:-python3}
MVN=${MVN:-mvn}
PG_LIB=${PROPOSALFLOW_PREREQS_PG_LIB:-/usr/lib/postgresql}
INSTALL=${PROPOSALFLOW_PREREQS_INSTALL:-auto}

java_cmd() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; else echo java; fi
}

# The major version of a `java -version` first line: "17.0.15" -> 17, "1.8.0_392" -> 8.
java_major() {
  local version
  version=$("$(java_cmd)" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)
  version=${version#1.}
  echo "${version%%[!0-9]*}"
}

# Each check prints nothing and succeeds when present, or prints "what is missing|Debian package".
check_python() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "Python 3.11+ ($PYTHON not found)|python3 python3-venv"
  elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11+ ($PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null))|python3 python3-venv"
  elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "Python's venv module (to make .venv)|python3-venv"
  fi
}

check_java() {
  local major
  if ! command -v "$(java_cmd)" >/dev/null 2>&1; then
    echo "Java 17+ (runs the Kafka broker; java not found)|openjdk-17-jre-headless"
  else
    major=$(java_major)
    if [ -z "$major" ] || [ "$major" -lt 17 ]; then
      echo "Java 17+ (runs the Kafka broker; found Java ${major:-of unknown version})|openjdk-17-jre-headless"
    fi
  fi
}

check_maven() {
  command -v "$MVN" >/dev/null 2>&1 || echo "Maven (fetches Kafka's jars; $MVN not found)|maven"
}

check_postgresql() {
  local bin
  for bin in "$PG_LIB"/*/bin; do
    [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && return 0
  done
  echo "PostgreSQL's server (the tests' second database; nothing under $PG_LIB/*/bin)|postgresql"
}

check_chromium() {
  command -v chromium >/dev/null 2>&1 || echo "Chromium (the portal's browser test; chromium not found)|chromium"
}

check_cjk_font() {
  if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh family 2>/dev/null)" ]; then
    echo "a Chinese (CJK) font (the portal's pages and screenshots)|fonts-noto-cjk"
  fi
}

check_openssl() {
  command -v openssl >/dev/null 2>&1 || echo "OpenSSL (the secured broker test's throwaway CA; openssl not found)|openssl"
}

check_container_tools() {
  command -v podman >/dev/null 2>&1 || echo "Podman (runs the compose stack; podman not found)|podman"
  command -v runc >/dev/null 2>&1 || echo "runc (the container runtime podman is set to use; runc not found)|runc"
  command -v debootstrap >/dev/null 2>&1 || echo "debootstrap (builds the Debian base image without a registry)|debootstrap"
}

check_make() {
  command -v make >/dev/null 2>&1 || echo "make|make"
}

checks=(check_python check_java check_maven)
[ "$NEEDS" = containers ] && checks=(check_python check_container_tools)
case $NEEDS in
  test) checks+=(check_postgresql check_chromium check_cjk_font check_openssl check_container_tools) ;;
  ci) checks+=(check_postgresql check_chromium check_cjk_font check_openssl check_container_tools check_make) ;;
esac

find_missing() {
  local check
  for check in "${checks[@]}"; do "$check"; done
}

missing=$(find_missing)
[ -z "$missing" ] && exit 0

packages() { cut -d'|' -f2 <<<"$missing" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | paste -sd' '; }

if [ "$INSTALL" = auto ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "$COMMAND needs what this machine lacks; installing: $(packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get (unattended upgrades, a second terminal) may hold the lock for a while.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq $(packages) >&2
  missing=$(find_missing)
  [ -z "$missing" ] && exit 0
  echo "apt-get finished, but some are still missing:" >&2
fi

{
  echo "$COMMAND cannot start: this machine lacks"
  cut -d'|' -f1 <<<"$missing" | sed 's/^/  - /'
  sudo=sudo
  [ "$(id -u)" -eq 0 ] && sudo=""
  echo "Install them (Debian or Ubuntu), then run $COMMAND again:"
  echo "  ${sudo:+$sudo }apt-get install -y $(packages)"
} >&2
exit 1
