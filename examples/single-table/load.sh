#!/usr/bin/env bash
# Load the example's sample data into a DynamoDB table:
#   examples/single-table/load.sh TABLE ITEMS ENDPOINT
# (users, orders with folded lines, events; deterministic, every DynamoDB type).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
table=${1:-app}; items=${2:-5000}; endpoint=${3:-${AWS_ENDPOINT_URL:-http://127.0.0.1:8000}}
bin=${DDB2PG_BIN:-$root/target/debug/ddb2pg}
[ -x "$bin" ] || (cd "$root" && cargo build --quiet --bin ddb2pg)
exec "$bin" sample --table "$table" --items "$items" --endpoint-url "$endpoint"
