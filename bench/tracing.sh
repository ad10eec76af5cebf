#!/usr/bin/env bash
# Benchmark: the cost of tracing on /v1/embeddings and on the gateway path, with tracing off,
# on with sampling 0, and on with sampling 1 exporting to a local OTLP receiver, one run:
# throughput (best of 5 interleaved runs) and instructions per request (valgrind callgrind).
#   bash bench/tracing.sh
#   SECONDS_PER_POINT=5 RUNS=5 REQUESTS=300 bash bench/tracing.sh
#   ONLY=gateway bash bench/tracing.sh        (one path: gateway or embeddings)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
mkdir -p bench/out
cargo bench -p golek-node --bench tracing -- --seconds "${SECONDS_PER_POINT:-3}" \
  --runs "${RUNS:-5}" --requests "${REQUESTS:-200}" ${ONLY:+--only "$ONLY"} | tee bench/out/tracing.md
