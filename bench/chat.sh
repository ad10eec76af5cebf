#!/usr/bin/env bash
# Benchmark: chat generation through the OpenAI API, Golek's gguf provider against llama.cpp's
# own llama-server (built from the llama.cpp inside the pinned llama-cpp-python sdist by
# bench/build-llama-tools.sh), on the same model (SmolLM2-135M-Instruct Q4_1), the same compute
# threads, slots, per-slot context (split KV cache, n_ctx / slots each) and batch size, on the same
# machine, in one run. All servers stay up for the whole run (idle while another is measured);
# every figure is measured interleaved (llama-server, Golek, llama-server, Golek, ...) ROUNDS
# times and the best of each is kept:
#   1. single-stream decode tok/s (one streamed request, ignore_eos, DECODE_TOKENS tokens; the
#      rate between the first and the last token);
#   2. aggregate tok/s of STREAMS concurrent streams (ignore_eos, STREAM_TOKENS each);
#   3. time to first token of a ~PROMPT_TOKENS-token prompt (max_tokens 1, median of TTFT_SAMPLES
#      distinct prompts that share no prefix, so nothing is cached);
#   4. multi-turn: CONVERSATIONS concurrent conversations of TURNS turns (one request in flight
#      each, conversation c starting c x STAGGER_MS late; a shared ~200-token system prompt,
#      ~USER_TOKENS of distinct user text and GEN_TOKENS generated tokens with ignore_eos a turn,
#      the whole history every turn), mean and p99 TTFT per turn (all turns, and turns 2..N,
#      without the cold first one): llama-server (prompt cache on, its default), Golek with its
#      prompt cache, and a third server, Golek without it (prompt_cache=false; in the first
#      NOCACHE_ROUNDS rounds only: it prefills every whole history, ~50k tokens, minutes on one
#      thread).
# Targets: each Golek figure >= 95% of llama-server's; multi-turn TTFT with Golek's prompt cache
# >= 3x better than without. The load generator is bench/chat_client.py (httpx, pinned in
# bench/chat-requirements.txt, in .golek/chat-bench-venv); with PIN=1 the servers run on the first
# THREADS cores and the client on the last one (when THREADS < cores).
#
#   bash bench/chat.sh                        # the defaults below: ~18 min on 2 cores
#   ROUNDS=1 bash bench/chat.sh               # ~7 min
#   ROUNDS=5 THREADS=2 PIN=0 bash bench/chat.sh
#   ROUNDS=1 TURNS=4 bash bench/chat.sh       # a quick look
#
# Env (default): THREADS (1) SLOTS (8) CTX_PER_SLOT (1536; n_ctx = SLOTS x CTX_PER_SLOT)
# BATCH (512) ROUNDS (3) DECODE_TOKENS (256) STREAMS (8) STREAM_TOKENS (128) PROMPT_TOKENS (1000)
# TTFT_SAMPLES (2) CONVERSATIONS (8) TURNS (10) USER_TOKENS (40) GEN_TOKENS (32)
# NOCACHE_ROUNDS (1) STAGGER_MS (500) PIN (1) PORT_BASE (18480; it uses 6 ports from there)
# CARGO_TARGET_DIR (~/.cache/golek/target).
# Writes bench/out/chat.md (the table, also on stdout), bench/out/chat.jsonl (every measurement)
# and bench/out/chat-logs/ (the servers' logs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
THREADS="${THREADS:-1}" SLOTS="${SLOTS:-8}" CTX_PER_SLOT="${CTX_PER_SLOT:-1536}"
BATCH="${BATCH:-512}" ROUNDS="${ROUNDS:-3}" DECODE_TOKENS="${DECODE_TOKENS:-256}"
STREAMS="${STREAMS:-8}" STREAM_TOKENS="${STREAM_TOKENS:-128}" PROMPT_TOKENS="${PROMPT_TOKENS:-1000}"
TTFT_SAMPLES="${TTFT_SAMPLES:-2}" CONVERSATIONS="${CONVERSATIONS:-8}" TURNS="${TURNS:-10}"
USER_TOKENS="${USER_TOKENS:-40}" GEN_TOKENS="${GEN_TOKENS:-32}" PIN="${PIN:-1}"
NOCACHE_ROUNDS="${NOCACHE_ROUNDS:-1}" STAGGER_MS="${STAGGER_MS:-500}"
PORT_BASE="${PORT_BASE:-18480}"
n_ctx=$((SLOTS * CTX_PER_SLOT))
log() { printf 'chat-bench: %s\n' "$*" >&2; }

bash scripts/setup.sh >&2
tools="$(bash bench/build-llama-tools.sh | tail -n 1)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/golek/target}"
cargo build --release -p golek-node --bin golek >&2
golek="$CARGO_TARGET_DIR/release/golek"
model="$root/.golek/models/smollm2-135m-instruct.Q4_1.gguf"
venv="$root/.golek/chat-bench-venv"
if ! cmp -s bench/chat-requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  log "installing the load generator into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r bench/chat-requirements.txt
  cp bench/chat-requirements.txt "$venv/requirements.txt"
fi

cores="$(nproc)"
server_pin=() client_pin=()
if [ "$PIN" = 1 ] && [ "$THREADS" -lt "$cores" ]; then
  server_pin=(taskset -c "0-$((THREADS - 1))")
  client_pin=(taskset -c "$((cores - 1))")
fi
out="$root/bench/out"
logs="$out/chat-logs"
results="$out/chat.jsonl"
mkdir -p "$logs"
: >"$results"
tmp="$(mktemp -d /tmp/golek-chat-bench.XXXXXX)"
pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# NAME PORT PROMPT_CACHE: a Golek node with only the chat model.
start_golek() {
  local m=models.smollm2-135m-instruct
  "${server_pin[@]}" "$golek" serve --http-addr "127.0.0.1:$2" --quic-addr "127.0.0.1:$(($2 + 1))" \
    --data-dir "$tmp/$1" --set models.all-minilm-l6-v2.enabled=false \
    --set "$m.params.threads=$THREADS" --set "$m.params.slots=$SLOTS" \
    --set "$m.params.n_ctx=$n_ctx" --set "$m.params.batch_size=$BATCH" \
    --set "$m.params.prompt_cache=$3" >"$logs/$1.log" 2>&1 &
  pids+=("$!")
}
# NAME PORT: llama-server, split KV cache (each of the SLOTS slots gets n_ctx / SLOTS), its prompt
# cache (cache_prompt, and the host-memory cache --cache-ram) at their defaults, i.e. on.
start_llama() {
  "${server_pin[@]}" "$tools/llama-server" -m "$model" --host 127.0.0.1 --port "$2" \
    -t "$THREADS" -tb "$THREADS" -np "$SLOTS" -c "$n_ctx" -b "$BATCH" -ub "$BATCH" \
    --no-kv-unified --no-webui >"$logs/$1.log" 2>&1 &
  pids+=("$!")
}
# URL PATH PID: waits until URL/PATH answers 200.
wait_ready() {
  for _ in $(seq 1 600); do
    kill -0 "$3" 2>/dev/null || { log "server $1 died, see $logs"; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1$2" || true)" = 200 ] && return 0
    sleep 0.2
  done
  log "server $1 not ready after 120 s"; exit 1
}

llama_url="http://127.0.0.1:$PORT_BASE"
golek_url="http://127.0.0.1:$((PORT_BASE + 2))"
nocache_url="http://127.0.0.1:$((PORT_BASE + 4))"
start_llama llama-server "$PORT_BASE"; wait_ready "$llama_url" /health "${pids[-1]}"
start_golek golek "$((PORT_BASE + 2))" true; wait_ready "$golek_url" /readyz "${pids[-1]}"
start_golek golek-nocache "$((PORT_BASE + 4))" false; wait_ready "$nocache_url" /readyz "${pids[-1]}"
curl -fsS "$llama_url/props" >"$tmp/props.json"
curl -fsS "$llama_url/slots" >"$tmp/slots.json" || echo '[]' >"$tmp/slots.json"

# LABEL URL SCENARIO [ARGS...]: one measurement, appended to chat.jsonl.
measure() {
  local label="$1" url="$2"; shift 2
  "${client_pin[@]}" "$venv/bin/python" bench/chat_client.py "$@" --url "$url" --label "$label" \
    | tee -a "$results" >&2
}
for s in "llama-server $llama_url" "golek $golek_url" "golek-nocache $nocache_url"; do
  measure $s warmup
done
# How much CPU the servers burn idle (each waits while another is measured).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
before=(); for pid in "${pids[@]}"; do before+=("$(cpu_ticks "$pid")"); done
sleep 3
idle_cpu=""
for i in "${!pids[@]}"; do
  idle_cpu+="$(( ($(cpu_ticks "${pids[$i]}") - before[i]) * 100 / $(getconf CLK_TCK) / 3 ))% "
done
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for s in "llama-server $llama_url" "golek $golek_url"; do
    measure $s decode --round "$round" --tokens "$DECODE_TOKENS"
  done
  for s in "llama-server $llama_url" "golek $golek_url"; do
    measure $s concurrent --round "$round" --streams "$STREAMS" --tokens "$STREAM_TOKENS"
  done
  for s in "llama-server $llama_url" "golek $golek_url"; do
    measure $s ttft --round "$round" --prompt-tokens "$PROMPT_TOKENS" --samples "$TTFT_SAMPLES"
  done
  servers=("llama-server $llama_url" "golek $golek_url")
  [ "$round" -le "$NOCACHE_ROUNDS" ] && servers+=("golek-nocache $nocache_url")
  for s in "${servers[@]}"; do
    measure $s multiturn --round "$round" --conversations "$CONVERSATIONS" --turns "$TURNS" \
      --user-tokens "$USER_TOKENS" --gen "$GEN_TOKENS" --stagger-ms "$STAGGER_MS"
  done
done

# The two llama.cpp copies: llama-cpp-sys-2's (Golek's) and llama-cpp-python's (llama-server's).
ggml_version() {
  sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$1/ggml/CMakeLists.txt" \
    2>/dev/null | paste -sd. -
}
sys_v="$(grep -A1 '^name = "llama-cpp-sys-2"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
sys_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$sys_v" 2>/dev/null | head -n1)"
lcp_v="$(sed -n 's/^VERSION=//p' bench/build-llama-tools.sh)"
llama_src=".golek/cache/llama-cpp-python-$lcp_v/src/vendor/llama.cpp"
git_rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git --no-optional-locks status --porcelain -uno 2>/dev/null || true)" ] && git_rev="$git_rev+dirty"
"$venv/bin/python" bench/chat_report.py "$results" "$tmp/props.json" "$tmp/slots.json" \
  "threads=$THREADS" "slots=$SLOTS" "n_ctx=$n_ctx" "batch=$BATCH" "rounds=$ROUNDS" "nocache_rounds=$NOCACHE_ROUNDS" \
  "cores=$cores" "pin=$PIN" "idle_cpu=$idle_cpu" \
  "golek_version=$("$golek" --version 2>/dev/null | head -n1)" \
  "git=$git_rev" "llama_version=$("$tools/llama-server" --version 2>&1 | grep -m1 -i version)" \
  "golek_llama=llama-cpp-sys-2 $sys_v, ggml $(ggml_version "$sys_src/llama.cpp")" \
  "llama_llama=llama-cpp-python $lcp_v, ggml $(ggml_version "$llama_src")" \
  "model=$(basename "$model")" \
  "decode_tokens=$DECODE_TOKENS" "streams=$STREAMS" "stream_tokens=$STREAM_TOKENS" \
  "ttft_samples=$TTFT_SAMPLES" "conversations=$CONVERSATIONS" "turns=$TURNS" \
  "user_tokens=$USER_TOKENS" "gen_tokens=$GEN_TOKENS" "stagger_ms=$STAGGER_MS" | tee "$out/chat.md"
