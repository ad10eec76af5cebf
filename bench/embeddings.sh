#!/usr/bin/env bash
# Benchmark: /v1/embeddings throughput and latency at 1, 8 and 32 clients, against the same
# model called in-process through ort (the ceiling) and Python onnxruntime in a loop, all with
# one ONNX Runtime thread, in one run. Also reports the node's idle memory.
#
#   bash bench/embeddings.sh            # 10 s per point
#   SECONDS_PER_POINT=3 bash bench/embeddings.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
venv="$root/.golek/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet onnxruntime==1.32.0 tokenizers==0.23.3 numpy==2.4.6
fi
mkdir -p bench/out
cargo bench -p golek-node --bench embeddings -- \
  --python "$venv/bin/python" \
  --seconds "${SECONDS_PER_POINT:-10}" | tee bench/out/embeddings.md
