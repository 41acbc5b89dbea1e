#!/usr/bin/env bash
# Runs a benchmark against the private servers: scripts/bench.sh replication | backfill | verify | cutover | reverse | keyless
# (see the doc comment at the top of benches/<name>.rs for what it measures and its knobs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:-replication}"
scripts/dev-db.sh start
cargo build --release --quiet
cargo bench --quiet --bench "$name"
