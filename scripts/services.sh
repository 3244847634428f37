#!/usr/bin/env bash
# Start or stop DynamoDB Local and PostgreSQL on loopback, on free ports.
#   scripts/services.sh start   # prints the env file to source
#   scripts/services.sh stop
# The env file sets DDB2PG_TEST_DYNAMODB_ENDPOINT, DDB2PG_TEST_DATABASE_URL (and AWS dummies).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
STATE=${DDB2PG_SERVICES_DIR:-/tmp/ddb2pg-services}
DDB_LOCAL_DIR=${DDB2PG_DDB_LOCAL_DIR:-$here/.local/dynamodb-local}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

start() {
  "$here/scripts/setup.sh"
  if [ -f "$STATE/env" ] && kill -0 "$(cat "$STATE/ddb.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
    echo "$STATE/env"; return 0
  fi
  rm -rf "$STATE"; mkdir -p "$STATE"; chmod 755 "$STATE"
  local ddb_port pg_port bin
  ddb_port=$(free_port); pg_port=$(free_port); bin=$(pg_bin)

  # The whole background job's output goes to the log: nothing may hold our stdout open, or
  # `$(scripts/services.sh start)` would never return.
  (cd "$DDB_LOCAL_DIR" && exec nohup java -Xmx2g -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar \
     -inMemory -port "$ddb_port") </dev/null >"$STATE/ddb.log" 2>&1 &
  echo $! >"$STATE/ddb.pid"

  mkdir -p "$STATE/pg/data"
  local as=()
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$STATE/pg"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$STATE/pg/data" -U postgres -A trust -E UTF8 --no-sync >"$STATE/initdb.log" 2>&1
  "${as[@]}" "$bin/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/pg.log" -w </dev/null -o \
     "-p $pg_port -k $STATE/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_buffers=256MB" start >/dev/null

  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "http://127.0.0.1:$ddb_port" 2>/dev/null || (echo >/dev/tcp/127.0.0.1/$ddb_port) 2>/dev/null; then break; fi
    sleep 0.25
  done
  cat >"$STATE/env" <<ENV
export DDB2PG_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:$ddb_port
export DDB2PG_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
ENV
  echo "$STATE/env"
}

stop() {
  [ -f "$STATE/ddb.pid" ] && kill "$(cat "$STATE/ddb.pid")" 2>/dev/null || true
  if [ -d "$STATE/pg/data" ]; then
    local as=(); [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
    "${as[@]}" "$(pg_bin)/pg_ctl" -D "$STATE/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
