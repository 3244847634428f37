#!/usr/bin/env bash
# Peak memory with the source much faster than the target: the target table has a trigger
# that sleeps SLEEP seconds per statement (each batch's COPY or upsert), so pages queue up.
#   scripts/bench-memory.sh [ITEMS] [CONCURRENCY] [SLEEP]   (defaults 200000, 32, 2)
#   BENCH_BEFORE=/path/to/old/ddb2pg   the same runs with that binary, for before/after
#   BENCH_MAX_MEMORY="256MiB 64MiB"    --max-memory values to run (the new binary only)
#   BENCH_SEGMENTS (default CONCURRENCY), BENCH_BATCH (default 1000): many pages per segment,
#   so that each segment's queue fills
# Prints items/s and peak RSS per run, and the scan-only rate (the source's speed) for scale.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${1:-200000}
C=${2:-32}
SLEEP=${3:-2}
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
echo "bench-memory: building ddb2pg (release; a first build takes about 7 minutes on 2 cores)" >&2
cargo build --release --bin ddb2pg
bin=target/release/ddb2pg
before=${BENCH_BEFORE:-}
budgets=${BENCH_MAX_MEMORY:-256MiB 64MiB}
E=$DDB2PG_TEST_DYNAMODB_ENDPOINT
base=${DDB2PG_TEST_DATABASE_URL%/*}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
table="benchmem_$N"
db="benchmem_$N"
echo "bench-memory: loading $N items into $table ..." >&2
"$bin" sample --table "$table" --items "$N" --endpoint-url "$E" 2>/dev/null
psql -q "$DDB2PG_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
T="$base/$db"
psql -q "$T" <<SQL
CREATE TABLE $table ("PK" text, "SK" text, item jsonb, PRIMARY KEY ("PK", "SK"));
CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM pg_sleep($SLEEP); RETURN NULL; END \$\$;
CREATE TRIGGER slow BEFORE INSERT ON $table FOR EACH STATEMENT EXECUTE FUNCTION slow();
SQL
SEGS=${BENCH_SEGMENTS:-$C}
BATCH=${BENCH_BATCH:-1000}
from_table=(--table "$table" --endpoint-url "$E" --concurrency "$C" --segments "$SEGS" --batch-size "$BATCH")
to_pg=(--target "$T" --checkpoint-dir "$work/cp" --progress none --restart)

run() { # LABEL BIN ARGS...
  local label=$1 b=$2; shift 2
  psql -q "$T" -c "TRUNCATE $table"
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$b" "$@" >"$work/out" 2>&1 || {
    cat "$work/out" >&2; echo "bench-memory: $label failed" >&2; exit 1; }
  read -r wall user sys rss <"$work/time"
  # The most bytes pages held in the budget at once, as ddb2pg estimated them (-v).
  local est
  est=$(grep -o 'held at most [0-9]*' "$work/out" | grep -o '[0-9]*$' || true)
  printf '%-44s %8.0f %8.2f %10.2f %8.1f %10s\n' "$label" "$(echo "$N / $wall" | bc -l)" "$wall" \
    "$(echo "($user + $sys) * 100000 / $N" | bc -l)" "$(echo "$rss / 1024" | bc -l)" \
    "$([ -z "$est" ] && echo - || echo "scale=1; $est / 1048576" | bc -l)"
}

"$bin" migrate --scan-only "${from_table[@]}" >/dev/null 2>&1 # warm DynamoDB Local up
echo
echo "machine: $(nproc) cores; $N items, --concurrency $C --segments $SEGS --batch-size $BATCH, target sleeps ${SLEEP}s per batch"
printf '%-44s %8s %8s %10s %8s %10s\n' run items/s wall_s cpu_s/100k peak_MB queued_MB
run "scan only (the source's speed)" "$bin" migrate --scan-only "${from_table[@]}"
[ -z "$before" ] || run "before: migrate" "$before" migrate "${from_table[@]}" "${to_pg[@]}"
for m in $budgets; do
  run "migrate --max-memory $m" "$bin" -v migrate "${from_table[@]}" "${to_pg[@]}" --max-memory "$m"
done
