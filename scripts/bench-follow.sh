#!/usr/bin/env bash
# Benchmark of `migrate --follow` against DynamoDB Local's stream, in one run:
#   scripts/bench-follow.sh [RATE] [SECONDS] [BURST]     (defaults 200 writes/s, 20 s, 10000)
# 1. Lag under a steady write rate: a writer puts RATE items/s for SECONDS into a followed table
#    (default mapping); every item carries its write time in ms (`ts`). A sampler reads the
#    newest `ts` in PostgreSQL every 0.25 s: lag = now - newest ts landed (end to end, from the
#    writer's PutItem to the row committed). DynamoDB Local rounds ApproximateCreationDateTime
#    down to the minute, so ddb2pg's own lag figure cannot be used here.
# 2. Changes/s applied: BURST changes (puts, updates, deletes) are written while no follower
#    runs, then `--follow --until-caught-up` applies them; changes / its wall time.
# A measurement, not a test: compare figures from one run on a quiet machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
RATE=${1:-200}
SECS=${2:-20}
BURST=${3:-10000}
env_file=$(scripts/services.sh start)
# shellcheck disable=SC1090
. "$env_file"
cargo build --release --quiet --bin ddb2pg
bin=$here/target/release/ddb2pg
work=$(mktemp -d)
trap 'kill "${follower:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=ddb2pglocal AWS_SECRET_ACCESS_KEY=ddb2pglocal AWS_DEFAULT_REGION=us-east-1
E=$DDB2PG_TEST_DYNAMODB_ENDPOINT
base=${DDB2PG_TEST_DATABASE_URL%/*}

python3 - "$E" create benchfollow <<'PY'
import boto3, sys
c = boto3.client("dynamodb", endpoint_url=sys.argv[1])
t = sys.argv[3]
try:
    c.delete_table(TableName=t)
except Exception:
    pass
c.create_table(TableName=t, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    BillingMode="PAY_PER_REQUEST",
    StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
PY
psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS benchfollow" -c "CREATE DATABASE benchfollow"
T="$base/benchfollow"
# 1. Steady rate.
"$bin" migrate --table benchfollow --endpoint-url "$E" --target "$T" \
  --checkpoint-dir "$work/cp" --progress none --follow >"$work/follow.log" 2>&1 &
follower=$!
until psql -qtAX "$T" -c "SELECT 1 FROM benchfollow LIMIT 0" >/dev/null 2>&1; do sleep 0.2; done
python3 - "$E" "$RATE" "$SECS" <<'PY' &
import boto3, sys, time
c = boto3.client("dynamodb", endpoint_url=sys.argv[1])
rate, secs = float(sys.argv[2]), float(sys.argv[3])
start = time.time(); i = 0
while time.time() - start < secs:
    i += 1
    c.put_item(TableName="benchfollow", Item={"pk": {"S": f"k{i % 5000}"},
               "ts": {"N": str(int(time.time() * 1000))}, "v": {"N": str(i)}})
    ahead = start + i / rate - time.time()
    if ahead > 0:
        time.sleep(ahead)
print(f"writer: {i} puts in {time.time() - start:.1f} s ({i / (time.time() - start):.0f}/s)", file=sys.stderr)
PY
writer=$!
: >"$work/lag"
while kill -0 "$writer" 2>/dev/null; do
  psql -qtAX "$T" -c "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint - max((item->>'ts')::bigint) FROM benchfollow" >>"$work/lag" 2>/dev/null || true
  sleep 0.25
done
wait "$writer"
kill -TERM "$follower"; wait "$follower" || true
python3 - "$work/lag" "$RATE" <<'PY'
import sys
v = sorted(int(x) for x in open(sys.argv[1]) if x.strip() and x.strip() != "")
v = v[len(v) // 10:]  # the first samples cover the start-up
if v:
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    print(f"steady {sys.argv[2]} writes/s: lag (write -> row committed) median {q(0.5)} ms, p90 {q(0.9)} ms, max {v[-1]} ms over {len(v)} samples")
PY

# 2. A burst applied by --until-caught-up.
python3 - "$E" "$BURST" <<'PY'
import boto3, sys, time
c = boto3.client("dynamodb", endpoint_url=sys.argv[1])
n = int(sys.argv[2]); start = time.time(); batch = []
def flush():
    global batch
    while batch:
        r = c.batch_write_item(RequestItems={"benchfollow": batch})
        batch = r.get("UnprocessedItems", {}).get("benchfollow", [])
for i in range(n):
    k = {"pk": {"S": f"b{i}"}}
    if i % 10 == 9 and i >= 31:  # every tenth change deletes an item put in an earlier batch
        batch.append({"DeleteRequest": {"Key": {"pk": {"S": f"b{i - 31}"}}}})
    else:
        batch.append({"PutRequest": {"Item": {**k, "ts": {"N": str(int(time.time() * 1000))}, "v": {"N": str(i)}}}})
    if len(batch) == 25:
        flush()
flush()
print(f"burst: {n} changes written in {time.time() - start:.1f} s", file=sys.stderr)
PY
/usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" migrate --table benchfollow --endpoint-url "$E" \
  --target "$T" --checkpoint-dir "$work/cp" --progress none --follow --until-caught-up \
  --report "$work/report.json" >/dev/null 2>"$work/burst.log" || { cat "$work/burst.log"; exit 1; }
read -r wall user sys rss <"$work/time"
python3 - "$work/report.json" "$wall" "$user" "$sys" "$rss" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); wall, user, sysc, rss = map(float, sys.argv[2:6])
n = r["changes_inserted"] + r["changes_modified"] + r["changes_removed"]
print(f"burst: {n} changes applied in {wall:.2f} s = {n / wall:.0f} changes/s "
      f"({r['changes_inserted']} inserted, {r['changes_modified']} modified, {r['changes_removed']} removed), "
      f"{(user + sysc) / max(n, 1) * 100000:.2f} CPU-s per 100k changes, peak RSS {rss / 1024:.0f} MB")
PY
python3 - "$E" <<'PY'
import boto3, sys
boto3.client("dynamodb", endpoint_url=sys.argv[1]).delete_table(TableName="benchfollow")
PY
psql -q "$base/postgres" -c "DROP DATABASE benchfollow"
