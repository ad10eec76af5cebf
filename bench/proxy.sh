#!/usr/bin/env bash
# Benchmark: a Golek node (openai provider) against LiteLLM's proxy, both in front of the same
# minimal OpenAI-compatible upstream, same load (32 clients), same machine, one run.
#   bash bench/proxy.sh                 # 10 s per path
#   SECONDS_PER_POINT=5 bash bench/proxy.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
venv="$root/.golek/litellm-venv"
if [ ! -x "$venv/bin/litellm" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "litellm[proxy]==1.108.0"
fi
mkdir -p bench/out
cargo bench -p golek-node --bench proxy -- --litellm "$venv/bin/litellm" \
  --seconds "${SECONDS_PER_POINT:-10}" | tee bench/out/proxy.md
