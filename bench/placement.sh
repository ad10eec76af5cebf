#!/usr/bin/env bash
# Benchmark: run-time deployments and model files. The time from a deploy to every replica
# ready, peer-to-peer file throughput (QUIC, mutual TLS, sha256-checked chunks) against curl
# from a local nginx, and the bytes each sender sends when four nodes fetch at once. Real
# golek processes on loopback, release build.
#
#   bash bench/placement.sh
#   MB=64 RUNS=2 bash bench/placement.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
mkdir -p bench/out
cargo bench -p golek-node --bench placement -- --mb "${MB:-256}" --runs "${RUNS:-3}" \
  | tee bench/out/placement.md
