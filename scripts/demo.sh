#!/usr/bin/env bash
# The main job on a self-contained local setup: start DynamoDB Local and PostgreSQL on loopback,
# load a sample single-table-design dataset, run `ddb2pg migrate`, print the summary.
#   scripts/demo.sh [ITEMS]        (default 5000; run it again to see a resume/nothing-to-do)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
items=${1:-5000}
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
cargo build --quiet --bin ddb2pg
bin=target/debug/ddb2pg
"$bin" sample --table app --items "$items" --endpoint-url "$DDB2PG_TEST_DYNAMODB_ENDPOINT"
set +e
"$bin" migrate --table app --target "$DDB2PG_TEST_DATABASE_URL" \
  --endpoint-url "$DDB2PG_TEST_DYNAMODB_ENDPOINT" --report checkpoints/demo-report.json
code=$?
set -e
echo
echo "Rows in PostgreSQL:"
psql "$DDB2PG_TEST_DATABASE_URL" -c "SELECT split_part(\"SK\", '#', 1) AS kind, count(*) FROM app GROUP BY 1 ORDER BY 1"
echo "JSON report: checkpoints/demo-report.json; services keep running (scripts/services.sh stop)."
exit $code
