#!/usr/bin/env bash
# A sampling profile of the gateway path (not a test): the node of bench/gateway.sh under wrk at
# 32 connections, `perf record -e cpu-clock -g` on the node for the run (no hardware counters
# here), then the top symbols by self time and by inclusive time.
#   bash bench/profile.sh            # non-streaming requests
#   STREAM=true bash bench/profile.sh
# Writes bench/out/profile-STREAM.{self,children,threads}.txt. Needs perf (Debian's linux-perf).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v perf >/dev/null 2>&1 || \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
mkdir -p "$root/bench/out"
out="$root/bench/out/profile-${STREAM:-false}"
GATEWAY_PROFILE="$out.self.txt" GATEWAY_PROFILE_STREAM="${STREAM:-false}" \
  bash "$root/bench/gateway.sh"
mv "$out.self.txt.children" "$out.children.txt"
mv "$out.self.txt.threads" "$out.threads.txt"
echo "== by thread"; cat "$out.threads.txt"
echo "== self time (top)"; head -n 30 "$out.self.txt"
echo "== inclusive time (top)"; head -n 30 "$out.children.txt"
