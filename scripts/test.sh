#!/usr/bin/env bash
# Runs ferry's whole test suite: installs what is missing, starts the private MariaDB and
# PostgreSQL (scripts/dev-db.sh), then runs every unit and integration test with cargo-nextest.
# Extra arguments go to `cargo nextest run` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/dev-db.sh start
scripts/dev-db.sh drop-test-dbs
eval "$(scripts/dev-db.sh env)"
cargo nextest run --workspace --no-fail-fast "$@"
