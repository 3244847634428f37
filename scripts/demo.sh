#!/usr/bin/env bash
# The main job on a self-contained local setup: start DynamoDB Local and PostgreSQL on loopback,
# load the single-table-design sample (users, orders with folded lines, events), and migrate it
# with examples/single-table (mapping + versioned schema) into typed tables; print the summary.
#   scripts/demo.sh [ITEMS]        (default 5000; run it again to see "nothing left to do")
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
items=${1:-5000}
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
cargo build --quiet --bin ddb2pg
bin=target/debug/ddb2pg
db=ddb2pg_demo
psql -q "$DDB2PG_TEST_DATABASE_URL" -tc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
  || psql -q "$DDB2PG_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
target="${DDB2PG_TEST_DATABASE_URL%/*}/$db"
DDB2PG_BIN=$bin examples/single-table/load.sh app "$items" "$DDB2PG_TEST_DYNAMODB_ENDPOINT"
set +e
"$bin" migrate --table app --target "$target" --endpoint-url "$DDB2PG_TEST_DYNAMODB_ENDPOINT" \
  --mapping examples/single-table/mapping.toml --migrations examples/single-table/migrations \
  --report checkpoints/demo-report.json
code=$?
set -e
echo
echo "Rows in PostgreSQL ($target):"
psql -q "$target" -c "SELECT 'users' AS t, count(*) FROM users UNION ALL SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'order_lines', count(*) FROM order_lines"
echo "JSON report: checkpoints/demo-report.json; services keep running (scripts/services.sh stop)."
exit $code
