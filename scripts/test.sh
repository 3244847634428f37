#!/usr/bin/env bash
# The whole test suite: install what is missing, start DynamoDB Local and PostgreSQL on
# loopback (this checkout's; running ones are reused and left running), check formatting and
# lints, run unit and integration tests (the integration tests include the documentation's
# tested examples: tests/suite/docs_snippets.rs), stop the services if this script started them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
scripts/setup.sh
started_here=0
scripts/services.sh running || started_here=1
env_file=$(scripts/services.sh start)
[ "$started_here" = 1 ] && trap 'scripts/services.sh stop' EXIT
# shellcheck disable=SC1090
. "$env_file"
cargo fmt --check
echo "test: building and linting (debug; a first build takes 5-10 minutes on 2 cores, later ones seconds)" >&2
cargo clippy --all-targets --quiet -- -D warnings
echo "test: building the tests, then running them (the integration tests take about 8 minutes on 2 cores)" >&2
cargo test --all-targets
