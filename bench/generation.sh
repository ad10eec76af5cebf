#!/usr/bin/env bash
# Benchmark: generation through the HTTP API against llama.cpp's llama-bench and
# llama-batched-bench on the same GGUF (golek-15m, made by the project's generator) and the
# same thread count, in one run.
#   bash bench/generation.sh            # 1 thread
#   THREADS=2 bash bench/generation.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
tools="$(bash bench/build-llama-tools.sh | tail -n 1)"
mkdir -p bench/out
cargo bench -p golek-node --bench generation -- --tools "$tools" --threads "${THREADS:-1}" \
  | tee bench/out/generation.md
