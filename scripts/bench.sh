#!/usr/bin/env bash
# Benchmark: ddb2pg against the limits of its source and sink, on the same data, in one run.
#   scripts/bench.sh [ITEMS] [SEGMENTS]      (defaults 200000 and 16; BENCH_REPEAT=3)
# For N and N/4 items it measures: the scan-only rate (the source's limit), a plain COPY of the
# same rows into the same table by psql (the sink's limit), and ddb2pg migrate end to end with
# the default and the example mapping, from the table and from an export of the same items.
# Every measurement is repeated BENCH_REPEAT times, interleaved (round 1 of everything, then
# round 2, ...), so that a ratio compares runs made under the same load; rows show the median.
# A measurement, not a test: run it on a quiet machine and compare ratios from one run.
#   BENCH_BEFORE=/path/to/old/ddb2pg  also runs every ddb2pg row with that binary, in the same
#                                      rounds (rows "  before: ..."), for before/after figures
#   BENCH_ROWS='scan|table|tmap'       only the rows whose id matches (scan table copy export
#                                      upsert again tmap emap)
#   BENCH_METRICS=1                    also runs the table row with --metrics-addr, scraped every
#                                      second by curl as Prometheus would, in the same rounds
#                                      (row "  same, with --metrics-addr" and a ratio line: the
#                                      cost of serving metrics; row id metrics for BENCH_ROWS)
#   BENCH_PIN=1                        DynamoDB Local on CPU 0, PostgreSQL and ddb2pg on the
#                                      others (as real DynamoDB runs on other machines), so
#                                      that the source's CPU is not taken by the target's; for
#                                      the table rows (BENCH_ROWS='scan|table|tmap'): the export
#                                      and COPY rows would share the other cores
# Besides ddb2pg's own CPU, each row shows the CPU seconds per 100,000 items that DynamoDB
# Local and PostgreSQL spent during the run (when this script started them): on 2 shared
# cores, end to end / scan-only cannot beat 2 cores / (source + target + ddb2pg CPU).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
N=${1:-200000}
SEG=${2:-16}
REPEAT=${BENCH_REPEAT:-3}
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
#   BENCH_BIN=/path/to/ddb2pg           measure that binary instead of building target/release
if [ -z "${BENCH_BIN:-}" ]; then
  echo "bench: building ddb2pg (release; a first build takes about 7 minutes on 2 cores)" >&2
  cargo build --release --bin ddb2pg
fi
bin=${BENCH_BIN:-target/release/ddb2pg}
before=${BENCH_BEFORE:-}
rows_re=${BENCH_ROWS:-.*}
E=$DDB2PG_TEST_DYNAMODB_ENDPOINT
base=${DDB2PG_TEST_DATABASE_URL%/*}
work=$(mktemp -d)
scraper=""
trap 'unpin; [ -z "$scraper" ] || kill "$scraper" 2>/dev/null; rm -rf "$work"' EXIT
: >"$work/runs"

# The services' processes (when scripts/services.sh started them), for their CPU time.
svc=$(scripts/services.sh dir)
ddb_pid=$(cat "$svc/ddb.pid" 2>/dev/null || true)
pg_pid=$(head -n 1 "$svc/pg/data/postmaster.pid" 2>/dev/null || true)
# ticks PID... : user + system clock ticks of the processes and their reaped children.
ticks() {
  local t=0 p f
  for p in "$@"; do
    f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + $(echo "$f" | awk '{print $12 + $13 + $14 + $15}')))
  done
  echo "$t"
}
src_ticks() { if [ -n "$ddb_pid" ]; then ticks "$ddb_pid"; else echo 0; fi; }
pg_ticks() { if [ -n "$pg_pid" ]; then ticks "$pg_pid" $(pgrep -P "$pg_pid"); else echo 0; fi; }
pin=()
if [ "${BENCH_PIN:-0}" = 1 ] && [ -n "$ddb_pid" ] && [ -n "$pg_pid" ] && [ "$(nproc)" -ge 2 ]; then
  rest="1-$(($(nproc) - 1))"
  taskset -a -p -c 0 "$ddb_pid" >/dev/null
  for p in "$pg_pid" $(pgrep -P "$pg_pid"); do taskset -a -p -c "$rest" "$p" >/dev/null; done
  pin=(taskset -c "$rest")
  echo "bench: DynamoDB Local pinned to CPU 0; PostgreSQL and ddb2pg to CPUs $rest" >&2
fi
unpin() {
  [ ${#pin[@]} -gt 0 ] || return 0
  all="0-$(($(nproc) - 1))"
  taskset -a -p -c "$all" "$ddb_pid" >/dev/null 2>&1 || true
  for p in "$pg_pid" $(pgrep -P "$pg_pid"); do taskset -a -p -c "$all" "$p" >/dev/null 2>&1 || true; done
}
hz=$(getconf CLK_TCK)
metrics=${BENCH_METRICS:-0}
metrics_addr=""
# A free loopback port for each metrics row (BENCH_METRICS_PORT: that port), so a port taken by
# another program meanwhile fails no round.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# A scrape of --metrics-addr every second while a metrics row runs (not counted in its time).
scrape_start() {
  metrics_addr=127.0.0.1:${BENCH_METRICS_PORT:-$(free_port)}
  ( while sleep 1; do curl -s -o /dev/null "http://$metrics_addr/metrics" || true; done ) &
  scraper=$!
}
scrape_stop() { kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; scraper=""; }

# measure ID ITEMS PREP CMD... : runs PREP (a shell snippet, e.g. emptying the target), then
# CMD under /usr/bin/time; appends "ID round items wall user sys rss src_s pg_s" to
# $work/runs (src_s, pg_s: CPU seconds DynamoDB Local and PostgreSQL spent meanwhile).
# (A variable assignment before `measure` reaches CMD: bash exports it for the call.)
measure() {
  local id=$1 items=$2 prep=$3; shift 3
  local kind=${id#before_}
  [[ ${kind%_*} =~ ^($rows_re)$ ]] || return 0
  eval "$prep"
  local s0 p0 s1 p1
  s0=$(src_ticks); p0=$(pg_ticks)
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "${pin[@]}" "$@" >"$work/out" 2>&1 || {
    code=$?; [ $code -eq 4 ] || { cat "$work/out" >&2; echo "bench: $id failed ($code)" >&2; exit 1; }; }
  s1=$(src_ticks); p1=$(pg_ticks)
  echo "$id $round $items $(cat "$work/time") $(echo "scale=2; ($s1 - $s0) / $hz" | bc) $(echo "scale=2; ($p1 - $p0) / $hz" | bc)" >>"$work/runs"
}

declare -A label
order=()
add() {
  [[ ${1%_*} =~ ^($rows_re)$ ]] || return 0
  label[$1]=$2; order+=("$1")
  if [ -n "$before" ] && ! [[ ${1%_*} =~ ^(copy|metrics)$ ]]; then label[before_$1]="  before: ${2# }"; order+=("before_$1"); fi
}
# ddb ID ITEMS PREP ARGS... : measure `ddb2pg ARGS`, and the same with the BENCH_BEFORE binary.
ddb() {
  local id=$1 items=$2 prep=$3; shift 3
  measure "$id" "$items" "$prep" "$bin" "$@"
  if [ -n "$before" ]; then measure "before_$id" "$items" "$prep" "$before" "$@"; fi
}

for n in "$N" $((N / 4)); do
  table="bench_$n"
  db="bench_$n"
  echo "bench: loading $n items into DynamoDB Local table $table and an export ..." >&2
  "$bin" sample --table "$table" --items "$n" --endpoint-url "$E" 2>/dev/null
  "$bin" sample --table "$table" --items "$n" --export-dir "$work/export_$n" --files 8 2>/dev/null
  psql -q "$DDB2PG_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  T="$base/$db"
  empty_target() { psql -q "$T" -c "TRUNCATE $table" -c CHECKPOINT 2>/dev/null || true; }
  drop_example() { psql -q "$T" -c "DROP TABLE IF EXISTS users, order_lines, orders CASCADE" -c CHECKPOINT 2>/dev/null; }
  to_pg=(--target "$T" --checkpoint-dir "$work/cp" --progress none --restart)
  from_table=(--table "$table" --endpoint-url "$E" --segments "$SEG")
  from_export=(--export "$work/export_$n")
  mapping=(--mapping examples/single-table/mapping.toml --create-tables)

  # The rows psql will COPY: what ddb2pg writes with the default mapping.
  "$bin" migrate "${from_export[@]}" --key PK,SK "${to_pg[@]}" >/dev/null 2>&1
  psql -q "$T" -c "\\copy $table TO '$work/rows_$n.copy'"

  add "scan_$n" "scan only ($SEG segments)"
  add "table_$n" "table, default mapping"
  [ "$metrics" != 1 ] || add "metrics_$n" "  same, with --metrics-addr"
  add "copy_$n" "plain COPY of the same rows (psql)"
  add "export_$n" "export (8 files), default mapping"
  if [ "$n" = "$N" ]; then
    add "upsert_$n" "  same, upserts only (no direct COPY)"
    add "again_$n" "  same again (all rows unchanged)"
  fi
  add "tmap_$n" "table, example mapping (3 tables)"
  add "emap_$n" "export, example mapping (3 tables)"

  # Untimed: DynamoDB Local's JVM compiles its hot paths during the first big scan.
  echo "bench: warming up DynamoDB Local ..." >&2
  "$bin" migrate --scan-only "${from_table[@]}" --concurrency "$SEG" >/dev/null 2>&1

  for round in $(seq "$REPEAT"); do
    echo "bench: $n items, round $round of $REPEAT ..." >&2
    ddb "scan_$n" "$n" : migrate --scan-only "${from_table[@]}" --concurrency "$SEG"
    ddb "table_$n" "$n" empty_target migrate "${from_table[@]}" "${to_pg[@]}"
    if [ "$metrics" = 1 ]; then
      scrape_start
      measure "metrics_$n" "$n" empty_target "$bin" migrate "${from_table[@]}" "${to_pg[@]}" \
        --metrics-addr "$metrics_addr"
      scrape_stop
    fi
    measure "copy_$n" "$n" empty_target psql -q "$T" -c "\\copy $table FROM '$work/rows_$n.copy'"
    ddb "export_$n" "$n" empty_target migrate "${from_export[@]}" --key PK,SK "${to_pg[@]}"
    if [ "$n" = "$N" ]; then
      DDB2PG_NO_DIRECT_COPY=1 ddb "upsert_$n" "$n" empty_target \
        migrate "${from_export[@]}" --key PK,SK "${to_pg[@]}"
      ddb "again_$n" "$n" : migrate "${from_export[@]}" --key PK,SK "${to_pg[@]}"
    fi
    ddb "tmap_$n" "$n" drop_example migrate "${from_table[@]}" "${to_pg[@]}" "${mapping[@]}"
    ddb "emap_$n" "$n" drop_example migrate "${from_export[@]}" "${to_pg[@]}" "${mapping[@]}"
  done
  # DynamoDB Local keeps its tables in memory: free the heap for the next size.
  aws_del=$(printf '{"TableName":"%s"}' "$table")
  curl -s -o /dev/null -X POST "$E" -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: DynamoDB_20120810.DeleteTable' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=ddb2pglocal/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
    -d "$aws_del" || true
done

# median of column 4 (wall) for ID, and that run's fields
median_run() { awk -v id="$1" '$1==id' "$work/runs" | sort -k4,4n | sed -n "$(( (REPEAT + 1) / 2 ))p"; }
# median over rounds of wall(B)/wall(A): the rate of A over the rate of B, round by round
median_ratio() {
  awk -v a="$1" -v b="$2" '$1==a{wa[$2]=$4} $1==b{wb[$2]=$4}
    END{for (r in wa) if (r in wb) print wb[r]/wa[r]}' "$work/runs" | sort -n |
    sed -n "$(( (REPEAT + 1) / 2 ))p"
}

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); segments $SEG"
echo "each row: the median of $REPEAT runs (items/s range over the runs; peak MB is the highest)"
[ ${#pin[@]} -eq 0 ] || echo "pinned: DynamoDB Local on CPU 0, PostgreSQL and ddb2pg on the rest"
echo "cpu s/100k: ddb2pg's, then DynamoDB Local's (src) and PostgreSQL's (pg) during the same run"
printf '%-38s %7s %9s %11s %7s %10s %8s %6s %6s\n' "run" "items" "items/s" "range" "wall s" "cpu s/100k" "peak MB" "src" "pg"
for id in "${order[@]}"; do
  read -r _ _ items wall user sys _ src pgc < <(median_run "$id")
  awk -v id="$id" -v label="${label[$id]}" -v items="$items" -v wall="$wall" -v user="$user" \
      -v sys="$sys" -v src="$src" -v pgc="$pgc" '
    $1==id { w=$4; if (lo==""||w>lo) lo=w; if (hi==""||w<hi) hi=w; if ($7>peak) peak=$7 }
    END { printf "%-38s %7d %9.0f %5.0fk-%3.0fk %7.2f %10.2f %8.1f %6.2f %6.2f\n", label, items,
          items/wall, items/lo/1000, items/hi/1000, wall, (user+sys)*100000/items, peak/1024,
          src*100000/items, pgc*100000/items }' "$work/runs"
done
echo
for n in "$N" $((N / 4)); do
  if [[ scan =~ ^($rows_re)$ && table =~ ^($rows_re)$ ]]; then
    printf 'N=%-8s table end-to-end / scan-only = %.2f' "$n" "$(median_ratio "table_$n" "scan_$n")"
    [ -z "$before" ] || printf '   before: %.2f' "$(median_ratio "before_table_$n" "before_scan_$n")"
    echo "   (medians of per-round ratios)"
    if [ -n "$ddb_pid" ] && [ ${#pin[@]} -eq 0 ]; then
      # Every CPU second the table run needs (ddb2pg + DynamoDB Local + PostgreSQL), spread
      # over all cores at best: the shortest wall time it could have; against scan-only's.
      read -r _ _ _ _ tu ts _ tsrc tpg < <(median_run "table_$n")
      read -r _ _ _ sw _ < <(median_run "scan_$n")
      printf 'N=%-8s   ceiling on %s shared cores: scan-only %.2f s / (%.2f CPU-s needed / %s) = %.2f\n' \
        "$n" "$(nproc)" "$sw" "$(echo "$tu + $ts + $tsrc + $tpg" | bc)" "$(nproc)" \
        "$(echo "$sw * $(nproc) / ($tu + $ts + $tsrc + $tpg)" | bc -l)"
    fi
  fi
  if [ "$metrics" = 1 ] && [[ table =~ ^($rows_re)$ && metrics =~ ^($rows_re)$ ]]; then
    printf 'N=%-8s items/s of table with --metrics-addr (scraped every second) / without = %.2f   (medians of per-round ratios)\n' \
      "$n" "$(median_ratio "metrics_$n" "table_$n")"
  fi
  if [[ copy =~ ^($rows_re)$ && export =~ ^($rows_re)$ ]]; then
    printf 'N=%-8s export / COPY-only = %.2f' "$n" "$(median_ratio "export_$n" "copy_$n")"
    [ -z "$before" ] || printf '   before: %.2f' "$(median_ratio "before_export_$n" "copy_$n")"
    echo
    if [ -n "$pg_pid" ] && [ ${#pin[@]} -eq 0 ]; then
      read -r _ _ _ _ eu es _ _ epg < <(median_run "export_$n")
      read -r _ _ _ cw _ < <(median_run "copy_$n")
      printf 'N=%-8s   ceiling on %s shared cores: COPY-only %.2f s / (%.2f CPU-s needed / %s) = %.2f\n' \
        "$n" "$(nproc)" "$cw" "$(echo "$eu + $es + $epg" | bc)" "$(nproc)" \
        "$(echo "$cw * $(nproc) / ($eu + $es + $epg)" | bc -l)"
    fi
  fi
  if [ -n "$before" ]; then
    for id in "${order[@]}"; do
      case $id in before_*) continue ;; esac
      [[ ! ${id%_*} =~ ^(copy|metrics)$ ]] || continue
      [[ $id == *_$n ]] || continue
      printf 'N=%-8s %-34s after / before: items/s x %.2f\n' "$n" "${label[$id]}" "$(median_ratio "$id" "before_$id")"
    done
  fi
done
echo "(cpu and peak MB of the COPY row are psql's, not the server's)"
