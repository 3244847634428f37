#!/usr/bin/env bash
# Benchmark: ddb2pg against the limits of its source and sink, on the same data, in one run.
#   scripts/bench.sh [ITEMS] [SEGMENTS]      (defaults 200000 and 16)
# For N and N/4 items it prints: the scan-only rate (source's limit), a plain COPY of the same
# rows into the same table (sink's limit), and ddb2pg migrate end to end with the default and
# the example mapping; with items/s, ddb2pg's CPU seconds per 100,000 items, peak RSS, ratios.
# A measurement, not a test: run it on a quiet machine and compare ratios from one run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${1:-200000}
SEG=${2:-16}
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
cargo build --release --quiet --bin ddb2pg
bin=target/release/ddb2pg
E=$DDB2PG_TEST_DYNAMODB_ENDPOINT
base=${DDB2PG_TEST_DATABASE_URL%/*}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# time_run LABEL ITEMS CMD... : runs CMD under /usr/bin/time, prints one row.
rows=()
time_run() {
  local label=$1 items=$2; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >"$work/out" 2>&1 || {
    code=$?; [ $code -eq 4 ] || { cat "$work/out" >&2; echo "bench: $label failed ($code)" >&2; exit 1; }; }
  read -r wall user sys rss <"$work/time"
  local rate cpu
  rate=$(awk -v n="$items" -v w="$wall" 'BEGIN{printf "%.0f", n/(w>0?w:1e-9)}')
  cpu=$(awk -v n="$items" -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", (u+s)*100000/n}')
  rows+=("$(printf '%-34s %9s %10s %8.2f %10s %9.1f' "$label" "$items" "$rate" "$wall" "$cpu" "$(awk -v k="$rss" 'BEGIN{print k/1024}')")")
  echo "$rate" >"$work/rate"
}

for n in "$N" $((N / 4)); do
  table="bench_$n"
  db="bench_$n"
  echo "bench: loading $n items into DynamoDB Local table $table ..." >&2
  "$bin" sample --table "$table" --items "$n" --endpoint-url "$E" 2>/dev/null
  psql -q "$DDB2PG_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  T="$base/$db"

  time_run "scan only ($SEG segments)" "$n" "$bin" migrate --scan-only --table "$table" \
    --endpoint-url "$E" --segments "$SEG" --concurrency "$SEG"
  scan_rate=$(cat "$work/rate")

  time_run "migrate, default mapping" "$n" "$bin" migrate --table "$table" --target "$T" \
    --endpoint-url "$E" --segments "$SEG" --checkpoint-dir "$work/cp" --progress none --restart
  e2e_rate=$(cat "$work/rate")

  # The sink's limit: the same rows, COPY'd into the same (emptied) table by psql.
  psql -q "$T" -c "\\copy $table TO '$work/rows.copy'"
  psql -q "$T" -c "TRUNCATE $table"
  time_run "plain COPY of the same rows" "$n" psql -q "$T" -c "\\copy $table FROM '$work/rows.copy'"
  copy_rate=$(cat "$work/rate")

  # The same items as an export (8 gzipped files), into the same emptied table.
  "$bin" sample --table "$table" --items "$n" --export-dir "$work/export_$n" --files 8 2>/dev/null
  psql -q "$T" -c "TRUNCATE $table"
  time_run "migrate from an export (8 files)" "$n" "$bin" migrate --export "$work/export_$n" \
    --key PK,SK --target "$T" --checkpoint-dir "$work/cp" --progress none --restart
  export_rate=$(cat "$work/rate")

  if [ -f examples/single-table/mapping.toml ] && "$bin" schema --help >/dev/null 2>&1; then
    psql -q "$T" -c "DROP TABLE IF EXISTS users, order_lines, orders CASCADE"
    time_run "migrate, example mapping" "$n" "$bin" migrate --table "$table" --target "$T" \
      --endpoint-url "$E" --segments "$SEG" --checkpoint-dir "$work/cp" --progress none --restart \
      --mapping examples/single-table/mapping.toml --create-tables
  fi
  ratios+=("$(printf 'N=%-8s table end-to-end / scan-only = %.2f   export / COPY-only = %.2f' "$n" \
    "$(awk -v a="$e2e_rate" -v b="$scan_rate" 'BEGIN{print a/b}')" \
    "$(awk -v a="$export_rate" -v b="$copy_rate" 'BEGIN{print a/b}')")")
done

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); segments $SEG"
printf '%-34s %9s %10s %8s %10s %9s\n' "run" "items" "items/s" "wall s" "cpu s/100k" "peak MB"
printf '%s\n' "${rows[@]}"
echo
printf '%s\n' "${ratios[@]}"
echo "(cpu and peak MB of the COPY row are psql's, not the server's)"
