#!/usr/bin/env bash
# Benchmark: what plugins cost on the gateway path (the openai provider in front of a static
# upstream): no plugins, the built-in chain, one WASM plugin on every request, in one run; and
# one WASM hook call in process.
#   bash bench/plugins.sh
#   SECONDS_PER_POINT=5 RUNS=5 bash bench/plugins.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
mkdir -p bench/out
cargo bench -p golek-node --bench plugins -- --seconds "${SECONDS_PER_POINT:-3}" \
  --runs "${RUNS:-5}" | tee bench/out/plugins.md
