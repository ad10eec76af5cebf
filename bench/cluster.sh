#!/usr/bin/env bash
# Benchmark: cluster convergence (3, 10, 30 nodes from cold start), time to mark a killed node
# dead, and the latency forwarding to a peer adds to an embedding request. Real golek processes
# on loopback, release build.
#
#   bash bench/cluster.sh
#   SIZES=3,10 REQUESTS=500 bash bench/cluster.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
mkdir -p bench/out
cargo bench -p golek-node --bench cluster -- \
  --sizes "${SIZES:-3,10,30}" --requests "${REQUESTS:-2000}" | tee bench/out/cluster.md
