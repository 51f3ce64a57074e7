#!/bin/bash
# First start: initdb with POSTGRES_USER / POSTGRES_PASSWORD, run /docker-entrypoint-initdb.d on a
# server reachable only by its socket. Every start: the server in the foreground, listening everywhere.
set -euo pipefail
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [[ $# -gt 0 && "$1" != postgres ]]; then exec "$@"; fi  # another command: run it instead
if [[ $# -gt 0 ]]; then shift; fi  # the rest are options for the server
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  [[ -n "${POSTGRES_PASSWORD:-}" ]] || { echo "postgres-entrypoint: POSTGRES_PASSWORD is required" >&2; exit 1; }
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
  rm -f -- "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  pg_ctl --pgdata="$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --host /var/run/postgresql)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql[@]}" --dbname postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for file in /docker-entrypoint-initdb.d/*; do
    case "$file" in
      *.sql) echo "postgres-entrypoint: running $file"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$file" ;;
      *.sh) echo "postgres-entrypoint: running $file"; . "$file" ;;
      *) ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" -w -m fast stop
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /var/run/postgresql "$@"
