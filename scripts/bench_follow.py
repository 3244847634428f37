"""Benchmark of `ddb2pg migrate --follow` (driven by scripts/bench-follow.sh, which starts the
services and builds the binaries). A measurement, not a test: compare figures from one run.

For each stream shape (BENCH_SHARDS: `local` = DynamoDB Local's own single shard, written
through its API; N = N shards served by the Streams double in front of it, fed with synthetic
changes, since DynamoDB Local takes only about 50 writes a second with a stream) and each
connection count (BENCH_CONNS):
  steady  new items at each rate of BENCH_RATES for BENCH_SECS (`local`: as fast as DynamoDB
          Local takes them); every item carries the time it was made (`ts`, ms) and a trigger
          stamps the time its row is committed, so the lag of every change (made -> row
          committed) is known: p50 / p99 / max.
  burst   BENCH_BURST changes (new items, every tenth a REMOVE of an earlier one; `local`:
          BENCH_BURST_LOCAL) made while no follower runs; a follower is started and timed until
          its checkpoint counts them all applied: changes/s (process start included), CPU,
          peak RSS. With BENCH_BEFORE, the same with that binary.
BENCH_SOAK_MIN > 0 adds a soak: 64 shards splitting every minute, writes at 200/s, kill -9 of
the follower every BENCH_SOAK_KILL_EVERY s (restarted at once): RSS and checkpoint size over
time, and the target's row count against the table's at the end.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import boto3

E = os.environ["DDB2PG_TEST_DYNAMODB_ENDPOINT"]
BASE = os.environ["DDB2PG_TEST_DATABASE_URL"].rsplit("/", 1)[0]
BIN = os.environ["BENCH_BIN"]
BEFORE = os.environ.get("BENCH_BEFORE", "")
DOUBLE = os.environ["BENCH_DOUBLE"]
WORK = os.environ["BENCH_WORK"]
RATES = [int(x) for x in os.environ.get("BENCH_RATES", "100 300 1000").split()]
SECS = float(os.environ.get("BENCH_SECS", "20"))
BURST = int(os.environ.get("BENCH_BURST", "20000"))
SHARDS = os.environ.get("BENCH_SHARDS", "local 1 64").split()
BURST_LOCAL = int(os.environ.get("BENCH_BURST_LOCAL", "2000"))
CONNS = [int(x) for x in os.environ.get("BENCH_CONNS", "1 4 8").split()]
SOAK_MIN = float(os.environ.get("BENCH_SOAK_MIN", "0"))
SOAK_KILL = float(os.environ.get("BENCH_SOAK_KILL_EVERY", "180"))
LATENCY = os.environ.get("BENCH_LATENCY_MS", "10")

ENV = dict(os.environ, AWS_ACCESS_KEY_ID="ddb2pglocal", AWS_SECRET_ACCESS_KEY="ddb2pglocal",
           AWS_REGION="us-east-1")
ddb = boto3.client("dynamodb", endpoint_url=E, region_name="us-east-1",
                   aws_access_key_id="ddb2pglocal", aws_secret_access_key="ddb2pglocal")
seq = [0]


def psql(db, sql):
    out = subprocess.run(["psql", "-qtAX", f"{BASE}/{db}", "-c", sql], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def fresh(prefix):
    """A table with a NEW_AND_OLD_IMAGES stream, a database, and the default mapping's table with
    a `landed_ms` column stamped by a trigger at commit time (clock_timestamp)."""
    seq[0] += 1
    name = f"bf{prefix}{os.getpid()}x{seq[0]}"
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST",
                     StreamSpecification={"StreamEnabled": True,
                                          "StreamViewType": "NEW_AND_OLD_IMAGES"})
    psql("postgres", f"CREATE DATABASE {name}")
    psql(name, f"""CREATE TABLE "{name}" (pk text NOT NULL, item jsonb, landed_ms bigint,
                   PRIMARY KEY (pk));
        CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          NEW.landed_ms := (extract(epoch from clock_timestamp()) * 1000)::bigint; RETURN NEW;
        END $$;
        CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON "{name}" FOR EACH ROW
          EXECUTE FUNCTION stamp();""")
    return name


def drop(name):
    try:
        ddb.delete_table(TableName=name)
    except Exception:
        pass
    subprocess.run(["psql", "-qX", f"{BASE}/postgres", "-c", f"DROP DATABASE IF EXISTS {name}"],
                   capture_output=True)


class Double:
    def __init__(self, shards, split_every=None):
        args = [DOUBLE, "--upstream", E, "--shards", str(shards), "--latency", LATENCY]
        if split_every:
            args += ["--split-every", str(split_every)]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        self.url = self.p.stdout.readline().strip()
        self.ingested = 0
        self.done = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            if line.startswith("ingested "):
                self.ingested = int(line.split()[1])
            elif line.startswith("done ") or line.startswith("error"):
                with self.cv:
                    self.done.append(line.strip())
                    self.cv.notify_all()

    def cmd(self, line):
        """Send a command (see examples/stream_double.rs); wait for its `done N`."""
        with self.cv:
            k = len(self.done)
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
            while len(self.done) <= k:
                self.cv.wait()
            r = self.done[k]
        if not r.startswith("done "):
            sys.exit(f"stream_double: {line}: {r}")
        return int(r.split()[1])

    def wait_ingested(self, n, timeout=120):
        end = time.time() + timeout
        while self.ingested < n and time.time() < end:
            time.sleep(0.1)

    def stop(self):
        self.p.kill()
        self.p.wait()


def rss_kb(pid):
    """VmRSS of a process in KiB (0 once it is gone)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def checkpoint(cp):
    for f in glob.glob(f"{cp}/*.json"):
        try:
            return json.load(open(f)), os.path.getsize(f)
        except (ValueError, OSError):
            pass
    return None, 0


def applied(cp):
    c, _ = checkpoint(cp)
    s = (c or {}).get("stream") or {}
    return s.get("inserted", 0) + s.get("modified", 0) + s.get("removed", 0)


def follower(binary, table, ep, cp, conns, extra=()):
    args = [binary, "migrate", "--table", table, "--endpoint-url", ep, "--target",
            f"{BASE}/{table}", "--checkpoint-dir", cp, "--progress", "none", "--follow",
            "--connections", str(conns), *extra]
    return subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=open(f"{cp}.log", "a"))


def wait_following(p, cp, timeout=300):
    """Until the follower read every shard once (`first_round_at`; a binary that does not
    write it: 5 s after the load is complete)."""
    end = time.time() + timeout
    loaded_at = None
    while time.time() < end:
        c, _ = checkpoint(cp)
        if c and (c.get("stream") or {}).get("first_round_at"):
            return
        if c and c.get("complete"):
            loaded_at = loaded_at or time.time()
            if time.time() - loaded_at > 5:
                return
        if p.poll() is not None:
            sys.exit(f"the follower ended: see {cp}.log")
        time.sleep(0.1)
    sys.exit(f"not following after {timeout} s: see {cp}.log")


def write(table, n, rate, start_i, deletes=False):
    """n changes at `rate` per second (0: as fast as possible) from 4 threads, batches of 25."""
    per = (n + 3) // 4

    def run(t):
        i0 = start_i + t * per
        items = list(range(i0, min(i0 + per, start_i + n)))
        t0 = time.time()
        for b in range(0, len(items), 25):
            reqs = []
            for i in items[b:b + 25]:
                if deletes and i % 10 == 9 and i - 31 >= i0:
                    reqs.append({"DeleteRequest": {"Key": {"pk": {"S": f"k{i - 31}"}}}})
                else:
                    reqs.append({"PutRequest": {"Item": {
                        "pk": {"S": f"k{i}"}, "v": {"N": str(i)},
                        "ts": {"N": str(int(time.time() * 1000))}}}})
            while reqs:
                r = ddb.batch_write_item(RequestItems={table: reqs})
                reqs = r.get("UnprocessedItems", {}).get(table, [])
            if rate:
                ahead = t0 + (b + 25) / (rate / 4) - time.time()
                if ahead > 0:
                    time.sleep(ahead)
    ts = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.time() - t0


def quantiles(v):
    v = sorted(v)
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
    return q(0.5), q(0.99), v[-1]


def landed_lags(table, prefix, n, timeout=120):
    """Wait until the n items `prefix*` landed; their lags (landed_ms - ts)."""
    end = time.time() + timeout
    like = f"pk LIKE '{prefix}%'"
    while time.time() < end:
        if int(psql(table, f"SELECT count(*) FROM \"{table}\" WHERE {like}")) >= n:
            break
        time.sleep(0.2)
    lags = psql(table, f"SELECT landed_ms - (item->>'ts')::bigint FROM \"{table}\" WHERE {like}")
    return [int(x) for x in lags.split()]


def steady(shards, conns):
    table = fresh("s")
    cp = f"{WORK}/{table}"
    d = Double(int(shards)) if shards != "local" else None
    ep = d.url if d else E
    p = follower(BIN, table, ep, cp, conns)
    wait_following(p, cp)
    for rate in (RATES if d else [0]):
        prefix = f"s{rate}x"
        t0 = time.time()
        if d:
            n = d.cmd(f"steady {rate} {SECS} {prefix}")
        else:
            n = put_for(table, SECS, prefix)
        took = time.time() - t0
        v = landed_lags(table, prefix, n)
        if v:
            p50, p99, mx = quantiles(v)
            asked = f"{rate:>5}/s" if rate else "  max"
            print(f"shards {shards:>5} conns {conns}  steady {asked} asked, "
                  f"{n / took:>6.0f}/s made: lag p50 {p50} ms, p99 {p99} ms, max {mx} ms "
                  f"({len(v)} of {n} changes landed)", flush=True)
    p.send_signal(signal.SIGTERM)
    p.wait()
    if d:
        d.stop()
    drop(table)


def put_for(table, secs, prefix):
    """PutItem new items as fast as DynamoDB Local takes them, 4 threads, for secs."""
    count = [0]
    lock = threading.Lock()
    end = time.time() + secs

    def run(t):
        i = 0
        while time.time() < end:
            ddb.put_item(TableName=table, Item={
                "pk": {"S": f"{prefix}{t}_{i}"}, "v": {"N": str(i)},
                "ts": {"N": str(int(time.time() * 1000))}})
            i += 1
        with lock:
            count[0] += i
    ts = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return count[0]


def burst(binary, label, shards, conns):
    table = fresh("b")
    cp = f"{WORK}/{table}"
    d = Double(int(shards)) if shards != "local" else None
    ep = d.url if d else E
    p = follower(binary, table, ep, cp, conns)
    wait_following(p, cp)
    p.send_signal(signal.SIGTERM)
    p.wait()
    burst_n = BURST if d else BURST_LOCAL
    if d:
        d.cmd(f"burst {burst_n} b")
    else:
        write(table, burst_n, 0, 0, deletes=True)
    base = applied(cp)
    t0 = time.time()
    p = follower(binary, table, ep, cp, conns)
    rss = 0
    while applied(cp) < base + burst_n and time.time() - t0 < 600:
        rss = max(rss, rss_kb(p.pid))
        time.sleep(0.02)
    wall = time.time() - t0
    n = applied(cp) - base
    try:
        cpu = sum(int(x) for x in open(f"/proc/{p.pid}/stat").read().split()[13:15]) / os.sysconf("SC_CLK_TCK")
    except OSError:
        cpu = float("nan")
    p.send_signal(signal.SIGTERM)
    p.wait()
    print(f"shards {shards:>5} conns {conns}  burst {label}: {n} changes applied in {wall:.2f} s "
          f"= {n / wall:.0f} changes/s (process start included), {cpu:.2f} CPU-s, "
          f"peak RSS {rss / 1024:.0f} MB", flush=True)
    if d:
        d.stop()
    drop(table)


def soak():
    table = fresh("k")
    cp = f"{WORK}/{table}"
    d = Double(64, split_every=60)
    p = follower(BIN, table, d.url, cp, 4)
    wait_following(p, cp)
    stop = time.time() + SOAK_MIN * 60
    writer_done = [False]
    made = [0]

    def writer():
        made[0] = d.cmd(f"steady 200 {SOAK_MIN * 60} soak")
        writer_done[0] = True
    threading.Thread(target=writer, daemon=True).start()
    next_kill = time.time() + SOAK_KILL
    kills = 0
    samples = []
    while time.time() < stop:
        time.sleep(10)
        if time.time() >= next_kill:
            p.kill()
            p.wait()
            kills += 1
            p = follower(BIN, table, d.url, cp, 4)
            next_kill = time.time() + SOAK_KILL
        rss = rss_kb(p.pid)
        c, size = checkpoint(cp)
        shards = len(((c or {}).get("stream") or {}).get("shards", {}))
        samples.append((time.time(), rss, size, shards))
        print(f"soak {int((time.time() - stop) / 60 + SOAK_MIN):>3} min: RSS {rss / 1024:.0f} MB, "
              f"checkpoint {size} bytes, {shards} shards in it, kills {kills}", flush=True)
    while not writer_done[0]:
        time.sleep(1)
    p.send_signal(signal.SIGTERM)
    p.wait()
    r = subprocess.run([BIN, "migrate", "--table", table, "--endpoint-url", d.url, "--target",
                        f"{BASE}/{table}", "--checkpoint-dir", cp, "--progress", "none",
                        "--follow", "--until-caught-up", "--connections", "4"], env=ENV,
                       capture_output=True, text=True)
    rows = int(psql(table, f"SELECT count(*) FROM \"{table}\" WHERE pk LIKE 'soak%'"))
    items = made[0]
    rss = [s[1] for s in samples]
    size = [s[2] for s in samples]
    print(f"soak: {SOAK_MIN:.0f} min, {kills} kill -9, --until-caught-up exit {r.returncode}; "
          f"rows {rows} / changes made {items}; RSS {min(rss) / 1024:.0f}-{max(rss) / 1024:.0f} MB, "
          f"checkpoint {min(size)}-{max(size)} bytes", flush=True)
    d.stop()
    drop(table)


for s in SHARDS:
    for c in CONNS:
        if RATES:
            steady(s, c)
        if BURST:
            burst(BIN, "after ", s, c)
            if BEFORE and c == CONNS[0]:
                burst(BEFORE, "before", s, c)
if SOAK_MIN > 0:
    soak()
