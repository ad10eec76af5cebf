#!/usr/bin/env bash
# Benchmark (not a test): resident memory of an idle node, per set of models. For each set a
# release node starts, answers one request per model, idles 3 s, and /proc tells its RSS split
# into anonymous memory (heap, arenas, KV caches) and file pages (the binary, the ONNX Runtime
# library, mapped model files), with the largest mappings by name.
#   bash bench/memory.sh
#   GOLEK_BIN=/path/to/golek bash bench/memory.sh
# Writes bench/out/memory.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. "$root/bench/lib.sh"
[ -n "${GOLEK_BIN:-}" ] || bash scripts/setup.sh
bin="$(golek_bin)"
work="$(mktemp -d)"
node_pid=""
cleanup() { [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port="$(free_port)"
base="http://127.0.0.1:$port"

# measure LABEL MINILM(true|false) SMOLLM(true|false)
measure() {
  local label="$1" minilm="$2" smollm="$3"
  rm -rf "$work/data"
  "$bin" serve --http-addr "127.0.0.1:$port" --data-dir "$work/data" \
    --set "models.all-minilm-l6-v2.enabled=$minilm" \
    --set "models.smollm2-135m-instruct.enabled=$smollm" > "$work/node.log" 2>&1 &
  node_pid=$!
  wait_ready "$base/readyz" "$node_pid" "$work/node.log"
  if [ "$minilm" = true ]; then
    curl -fs "$base/v1/embeddings" -H 'content-type: application/json' \
      -d '{"model":"all-minilm-l6-v2","input":"A man is eating food."}' >/dev/null
  fi
  if [ "$smollm" = true ]; then
    curl -fs "$base/v1/chat/completions" -H 'content-type: application/json' \
      -d '{"model":"smollm2-135m-instruct","max_tokens":8,"messages":[{"role":"user","content":"Hi"}]}' >/dev/null
  fi
  sleep 3
  python3 - "$node_pid" "$label" <<'PY' >> "$work/rows.md"
import collections, sys
pid, label = sys.argv[1], sys.argv[2]
rollup = {}
for line in open(f"/proc/{pid}/smaps_rollup"):
    parts = line.split()
    if len(parts) >= 3 and parts[2] == "kB":
        rollup[parts[0].rstrip(":")] = int(parts[1])
by_name = collections.Counter()
name = None
for line in open(f"/proc/{pid}/smaps"):
    parts = line.split()
    if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
        path = parts[5] if len(parts) >= 6 else "[anon]"
        name = path.rsplit("/", 1)[-1]
    elif parts[0] == "Rss:":
        by_name[name] += int(parts[1])
top = ", ".join(f"{n} {kb // 1024} MB" for n, kb in by_name.most_common(5) if kb >= 1024)
mb = lambda kb: f"{kb / 1024:.0f}"
print(f"| {label} | {mb(rollup['Rss'])} | {mb(rollup.get('Anonymous', 0))} | "
      f"{mb(rollup['Rss'] - rollup.get('Anonymous', 0))} | {top} |")
PY
  kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""
}

: > "$work/rows.md"
measure "no models" false false
measure "all-minilm-l6-v2 only" true false
measure "smollm2-135m-instruct only" false true
measure "both (the default)" true true
mkdir -p bench/out
{
  echo "# Idle node memory (after one request per model, 3 s idle)"
  echo
  echo "| models | RSS MB | anonymous MB | file-backed MB | largest mappings |"
  echo "|---|---|---|---|---|"
  cat "$work/rows.md"
} | tee bench/out/memory.md
