#!/usr/bin/env bash
# Benchmark: requests that survive `kill -9`. Three nodes, two replicas of golek-tiny, steady
# load through the third (half the clients streaming); a replica is killed and restarted every
# KILL_EVERY seconds for SECONDS, after the same run with no faults. Reports failed requests
# (streaming and not), p50/p99 of both runs and the time to recover full throughput.
#
#   bash bench/failover.sh
#   SECONDS_=30 KILL_EVERY=10 bash bench/failover.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh --tests
mkdir -p bench/out
cargo bench -p golek-node --bench failover -- \
  --seconds "${SECONDS_:-120}" --kill-every "${KILL_EVERY:-20}" --clients "${CLIENTS:-8}" \
  | tee bench/out/failover.md
