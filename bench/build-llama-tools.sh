#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-server, from the llama.cpp
# sources inside the PyPI source package llama-cpp-python (pinned), into .golek/llama-tools
# (ignored). Same CPU flags as the crate's build: GGML_NATIVE=OFF (ggml then enables
# AVX/AVX2/FMA/F16C). llama-server is built without HTTPS (LLAMA_OPENSSL=OFF) and without its web
# UI (no npm build, no prebuilt download: it embeds an empty asset table); it serves the API.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.golek/llama-tools"
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
tools=(llama-bench llama-batched-bench llama-server)
if [ -x "$out/bin/llama-bench" ] && [ -x "$out/bin/llama-batched-bench" ] \
  && [ -x "$out/bin/llama-server" ]; then
  echo "$out/bin"; exit 0
fi
work="$root/.golek/cache/llama-cpp-python-$VERSION"
mkdir -p "$work"
if [ ! -d "$work/src" ]; then
  # The sdist straight from the package index pip is configured with (PIP_INDEX_URL, pip's
  # global.index-url, else pip's own default); pip download would build its metadata first,
  # compiling build tools from source. Checked against the pinned sha256.
  url="$(python3 "$root/bench/sdist_url.py" llama-cpp-python "$VERSION")"
  curl -fsSL -o "$work/llama_cpp_python-$VERSION.tar.gz" "$url"
  echo "$SHA256  $work/llama_cpp_python-$VERSION.tar.gz" | sha256sum --check --status \
    || { echo "sha256 mismatch for llama-cpp-python $VERSION" >&2; exit 1; }
  mkdir -p "$work/src"
  tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work/src" --strip-components=1
fi
src="$work/src/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$work/build" --target "${tools[@]}" -j "$(nproc)" >&2
mkdir -p "$out/bin"
for t in "${tools[@]}"; do cp "$work/build/bin/$t" "$out/bin/"; done
echo "$out/bin"
