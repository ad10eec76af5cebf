#!/usr/bin/env bash
# Benchmark (not a test): the request path of a Golek node's `openai` provider against nginx as
# a reverse proxy, both in front of the same static upstream (nginx `return 200` with a short
# OpenAI chat SSE body), with wrk (1 thread, 1 and 32 connections), same machine, one run.
# Each target is measured twice, interleaved, best of two; non-streaming and streaming requests
# to Golek (the upstream and nginx answer the same bytes either way).
#   bash bench/gateway.sh                 # 10 s a point
#   SECONDS_PER_POINT=5 bash bench/gateway.sh
#   GOLEK_BIN=/path/to/golek bash bench/gateway.sh   # another build (default: the release build)
# Needs wrk and nginx-light (installed here when missing). Writes bench/out/gateway.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. "$root/bench/lib.sh"
seconds="${SECONDS_PER_POINT:-10}"

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bin="$(golek_bin)"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

up_port="$(free_port)"; proxy_port="$(free_port)"; golek_port="$(free_port)"

# The upstream's answer: what an OpenAI server streams for a four-token reply.
sse='data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"fake","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
for word in Hello " from" " the" " upstream"; do
  sse+='data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"fake","choices":[{"index":0,"delta":{"content":"'"$word"'"},"finish_reason":null}]}\n\n'
done
sse+='data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"fake","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}\n\ndata: [DONE]\n\n'

mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen 127.0.0.1:$up_port;
    location = /v1/models { default_type application/json; return 200 '{"object":"list","data":[{"id":"fake","object":"model"}]}'; }
    location / { default_type text/event-stream; return 200 '$sse'; }
  }
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
/usr/sbin/nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)

# The node: the default models off, one openai deployment; everything else as configured by
# default (tenants, plugins host, tracing layer, metrics).
"$bin" serve --http-addr "127.0.0.1:$golek_port" --data-dir "$work/data" \
  --set models.all-minilm-l6-v2.enabled=false \
  --set models.smollm2-135m-instruct.enabled=false \
  --set models.fake.provider=openai \
  --set "models.fake.params.base_url=http://127.0.0.1:$up_port/v1" \
  --set models.fake.params.max_in_flight=64 > "$work/golek.log" 2>&1 &
golek_pid=$!
pids+=($golek_pid)
wait_ready "http://127.0.0.1:$golek_port/readyz" "$golek_pid" "$work/golek.log"

for stream in false true; do
  cat > "$work/post-$stream.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"fake","stream":$stream,"max_tokens":8,"messages":[{"role":"user","content":"Say hello"}]}'
EOF
done

# measure URL CONNECTIONS STREAM -> "req/s p50_ms p99_ms"
measure() {
  wrk -t1 -c"$2" -d"${seconds}s" --latency -s "$work/post-$3.lua" "$1" > "$work/wrk.txt"
  python3 - "$work/wrk.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v = float(m.group(1)); return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors: sys.exit(f"{errors.group(1)} failed responses:\n{text}")
print(f"{rps:.0f} {ms('50%'):.3f} {ms('99%'):.3f}")
PY
}

# bench/profile.sh: a sampling profile of the node under 32 connections instead of the table.
if [ -n "${GATEWAY_PROFILE:-}" ]; then
  stream="${GATEWAY_PROFILE_STREAM:-false}"
  perf record -e cpu-clock -F 1999 -g -o "$work/perf.data" -p "$golek_pid" -- sleep "$seconds" \
    2> "$work/perf.log" &
  perf_pid=$!
  wrk -t1 -c32 -d"${seconds}s" -s "$work/post-$stream.lua" \
    "http://127.0.0.1:$golek_port/v1/chat/completions" | grep -E "Requests/sec|Latency"
  wait "$perf_pid"
  report() { perf report -i "$work/perf.data" --stdio "$@" 2>/dev/null \
    | grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//; s/ +$//'; }
  report --no-children --sort symbol --percent-limit 0.7 > "$GATEWAY_PROFILE"
  report --children --sort symbol --percent-limit 3 -g none > "$GATEWAY_PROFILE.children"
  report --no-children --sort comm > "$GATEWAY_PROFILE.threads"
  exit 0
fi

declare -A best
record() {  # KEY "rps p50 p99": keep the higher req/s
  local old="${best[$1]:-0 0 0}"
  if [ "${2%% *}" -gt "${old%% *}" ]; then best[$1]="$2"; fi
}
targets=("upstream http://127.0.0.1:$up_port/v1/chat/completions false"
         "nginx http://127.0.0.1:$proxy_port/v1/chat/completions false"
         "golek http://127.0.0.1:$golek_port/v1/chat/completions false"
         "golek-stream http://127.0.0.1:$golek_port/v1/chat/completions true")
for round in 1 2; do
  for conns in 1 32; do
    for t in "${targets[@]}"; do
      read -r name url stream <<<"$t"
      record "$name/$conns" "$(measure "$url" "$conns" "$stream")"
    done
  done
done
rss_kb="$(awk '/VmRSS/ {print $2}' "/proc/$golek_pid/status")"

mkdir -p bench/out
{
  echo "# Gateway: wrk -t1, ${seconds} s a point, best of two interleaved runs"
  echo
  echo "| target | conns | req/s | p50 ms | p99 ms | % of nginx req/s | p50 over upstream ms |"
  echo "|---|---|---|---|---|---|---|"
  for conns in 1 32; do
    read -r up_rps up_p50 _ <<<"${best[upstream/$conns]}"
    read -r nx_rps _ _ <<<"${best[nginx/$conns]}"
    for name in upstream nginx golek golek-stream; do
      read -r rps p50 p99 <<<"${best[$name/$conns]}"
      python3 -c "print(f'| $name | $conns | $rps | $p50 | $p99 | {100*$rps/$nx_rps:.0f}% | {$p50-$up_p50:+.3f} |')"
    done
  done
  echo
  echo "golek node RSS after the run: $((rss_kb / 1024)) MB"
} | tee bench/out/gateway.md
