#!/usr/bin/env bash
# Builds the example plugins in examples/plugins/ into .wasm files: C with Debian's clang and
# lld for wasm32 (freestanding, no libc), WAT with wabt's wat2wasm when it is installed (the
# tests assemble WAT themselves).
#
#   bash scripts/build-plugins.sh [OUT_DIR]     (default: .golek/plugins)
#
# Copy a built .wasm into a node's plugin folder (node.plugin_dir), or load it with
# `golek plugin load FILE`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/.golek/plugins}"
mkdir -p "$out"
command -v clang >/dev/null || { echo "build-plugins: clang is missing (apt-get install clang)" >&2; exit 1; }
command -v wasm-ld >/dev/null || { echo "build-plugins: wasm-ld is missing (apt-get install lld)" >&2; exit 1; }
for c in "$root"/examples/plugins/*.c; do
  name="$(basename "$c" .c)"
  clang --target=wasm32 -O2 -nostdlib -Wall -Werror -Wl,--no-entry -Wl,--strip-all \
    -o "$out/$name.wasm" "$c"
  echo "build-plugins: $out/$name.wasm" >&2
done
if command -v wat2wasm >/dev/null; then
  for w in "$root"/examples/plugins/*.wat; do
    name="$(basename "$w" .wat)"
    wat2wasm --enable-bulk-memory -o "$out/$name.wasm" "$w"
    echo "build-plugins: $out/$name.wasm" >&2
  done
fi
