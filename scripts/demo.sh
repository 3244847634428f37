#!/usr/bin/env bash
# The main job on a self-contained local setup: start DynamoDB Local and PostgreSQL on loopback,
# load the single-table-design sample (users, orders with folded lines, events), and migrate it
# with examples/single-table (mapping + versioned schema) into typed tables; print the summary.
#   scripts/demo.sh [ITEMS]        (default 5000)
# Services the demo starts are stopped at its end, with their data and the demo's checkpoint.
# To keep them (and see a second run find nothing left to do), start them first:
#   scripts/services.sh start; scripts/demo.sh; scripts/demo.sh; scripts/services.sh stop
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
items=${1:-5000}
started_here=0
scripts/services.sh running || started_here=1
env_file=$(scripts/services.sh start)
if [ "$started_here" = 1 ]; then
  trap 'scripts/services.sh stop; echo "demo: stopped the services it started" >&2' EXIT
fi
# shellcheck disable=SC1090
. "$env_file"
# The checkpoint lives and dies with the services' data: a checkpoint of a table that is gone
# would make the next demo skip its load.
checkpoints="$(scripts/services.sh dir)/checkpoints"
echo "demo: building ddb2pg (debug; a first build takes 5-10 minutes on 2 cores, later ones seconds)" >&2
cargo build --bin ddb2pg
bin=target/debug/ddb2pg
db=ddb2pg_demo
psql -q "$DDB2PG_TEST_DATABASE_URL" -tc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql -q "$DDB2PG_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
target="${DDB2PG_TEST_DATABASE_URL%/*}/$db"
DDB2PG_BIN=$bin examples/single-table/load.sh app "$items" "$DDB2PG_TEST_DYNAMODB_ENDPOINT"
set +e
"$bin" migrate --table app --target "$target" --endpoint-url "$DDB2PG_TEST_DYNAMODB_ENDPOINT" \
  --mapping examples/single-table/mapping.toml --migrations examples/single-table/migrations \
  --checkpoint-dir "$checkpoints" --report checkpoints/demo-report.json
code=$?
set -e
echo
echo "Rows in PostgreSQL ($target):"
psql -q "$target" -c "SELECT 'users' AS t, count(*) FROM users UNION ALL SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'order_lines', count(*) FROM order_lines"
if [ "$started_here" = 1 ]; then
  echo "JSON report: checkpoints/demo-report.json."
else
  echo "JSON report: checkpoints/demo-report.json; the services keep running (scripts/services.sh stop)."
fi
exit $code
