#!/usr/bin/env bash
# Benchmark of `migrate --follow`, in one run (a measurement, not a test: compare the figures
# of one run on a quiet machine). The measurements are in scripts/bench_follow.py:
#   steady  lag of every change (write -> row committed) at rising write rates
#   burst   changes/s applied from a backlog, and the same with BENCH_BEFORE's binary
#   soak    (BENCH_SOAK_MIN > 0) RSS and checkpoint size over a long follow with kill -9s
# for DynamoDB Local's one shard and for N shards served by the Streams double
# (examples/stream_double.rs), over 1, 4 and 8 connections. Settings (environment):
#   BENCH_SHARDS="1 64"  BENCH_CONNS="1 4 8"  BENCH_RATES="100 300 1000"  BENCH_SECS=20
#   BENCH_BURST=20000  BENCH_BEFORE=/path/to/older/ddb2pg  BENCH_LATENCY_MS=10 (each of the
#   double's GetRecords)  BENCH_SOAK_MIN=0  BENCH_SOAK_KILL_EVERY=180
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
echo "bench-follow: building the release binary and the Streams double (a first build takes about 7 minutes on 2 cores)" >&2
cargo build --release --bin ddb2pg --example stream_double
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BENCH_BIN=$here/target/release/ddb2pg BENCH_DOUBLE=$here/target/release/examples/stream_double \
  BENCH_WORK=$work python3 scripts/bench_follow.py
