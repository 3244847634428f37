#!/usr/bin/env bash
# Start or stop DynamoDB Local and PostgreSQL on loopback, on free ports, for this checkout.
#   scripts/services.sh start     # starts them unless running; prints the env file to source
#   scripts/services.sh stop
#   scripts/services.sh running   # exit 0 when this checkout's services are up
#   scripts/services.sh dir       # print the services' folder
# The env file sets DDB2PG_TEST_DYNAMODB_ENDPOINT and DDB2PG_TEST_DATABASE_URL.
# Each checkout has its own services, in /tmp/ddb2pg-services-<hash of the checkout's path>
# (a short path: PostgreSQL's socket lives there); DDB2PG_SERVICES_DIR overrides it, e.g.
# DDB2PG_SERVICES_DIR=/tmp/ddb2pg-services to share one set between checkouts.
# DynamoDB Local runs with -sharedDb: every client sees the same tables, whatever access key
# and region it signs with (boto3, the AWS CLI, ddb2pg).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
STATE=${DDB2PG_SERVICES_DIR:-/tmp/ddb2pg-services-$(printf %s "$here" | sha256sum | cut -c1-12)}
DDB_LOCAL_DIR=${DDB2PG_DDB_LOCAL_DIR:-$here/.local/dynamodb-local}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

running() {
  [ -f "$STATE/env" ] && kill -0 "$(cat "$STATE/ddb.pid" 2>/dev/null || echo 0)" 2>/dev/null
}

start() {
  "$here/scripts/setup.sh"
  if running; then
    echo "$STATE/env"; return 0
  fi
  echo "services: starting DynamoDB Local and PostgreSQL in $STATE" >&2
  rm -rf "$STATE"; mkdir -p "$STATE"; chmod 755 "$STATE"
  local ddb_port pg_port bin
  ddb_port=$(free_port); pg_port=$(free_port); bin=$(pg_bin)

  # The whole background job's output goes to the log: nothing may hold our stdout open, or
  # `$(scripts/services.sh start)` would never return.
  (cd "$DDB_LOCAL_DIR" && exec nohup java -Xmx2g -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar \
     -inMemory -sharedDb -port "$ddb_port") </dev/null >"$STATE/ddb.log" 2>&1 &
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
  running) running ;;
  dir) echo "$STATE" ;;
  *) echo "usage: $0 start|stop|running|dir" >&2; exit 2 ;;
esac
