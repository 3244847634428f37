#!/usr/bin/env bash
# The whole test suite: install what is missing, start DynamoDB Local and PostgreSQL on
# loopback, check formatting and lints, run unit and integration tests, stop the services.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh
started_here=0
[ -f "${DDB2PG_SERVICES_DIR:-/tmp/ddb2pg-services}/env" ] || started_here=1
env_file=$(scripts/services.sh start)
[ "$started_here" = 1 ] && trap 'scripts/services.sh stop' EXIT
# shellcheck disable=SC1090
. "$env_file"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
