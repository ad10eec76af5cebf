#!/usr/bin/env bash
# Builds the golek .deb from a staged tree with dpkg-deb (`make deb` runs it after the release
# build). The package holds the binary, the ONNX Runtime library and the default models under
# /usr/share/golek, the systemd unit, /etc/golek/node.toml (a conffile) and the maintainer
# scripts; Depends comes from dpkg-shlibdeps on the binary and the library.
#
#   bash scripts/package-deb.sh [--binary PATH] [--assets DIR] [--out DIR] [--fast]
#
# --binary: the golek binary (default: the release build); --assets: what scripts/setup.sh
# fetched (default .golek); --out: where the .deb goes (default target/debian); --fast: gzip
# at level 1 instead of xz (the package test uses it). Prints the .deb's path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
binary="$target/release/golek"
assets="${GOLEK_NODE__ASSETS_DIR:-$root/.golek}"
out="$root/target/debian"
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --assets) assets="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    *) echo "package-deb: unknown argument $1 (known: --binary, --assets, --out, --fast)" >&2; exit 2 ;;
  esac
done

log() { printf 'package-deb: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

[ -x "$binary" ] || fail "no golek binary at $binary (cargo build --release -p golek-node, or --binary)"
# The default models and the runtime, as config/src/defaults.toml names them.
shipped=(
  onnxruntime/libonnxruntime.so
  models/all-minilm-l6-v2/model.onnx
  models/all-minilm-l6-v2/tokenizer.json
  models/smollm2-135m-instruct.Q4_1.gguf
)
for file in "${shipped[@]}"; do
  [ -s "$assets/$file" ] || fail "missing $assets/$file (run scripts/setup.sh first)"
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
[ -n "$version" ] || fail "no version in $root/Cargo.toml"
revision="${GOLEK_DEB_REVISION:-1}"
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/golek"
debian="$root/scripts/debian"

install -D -m 0755 "$binary" "$pkg/usr/bin/golek"
strip --strip-debug "$pkg/usr/bin/golek"
for file in "${shipped[@]}"; do
  install -D -m 0644 "$assets/$file" "$pkg/usr/share/golek/$file"
done
install -D -m 0644 "$debian/golek.service" "$pkg/lib/systemd/system/golek.service"
install -D -m 0644 "$debian/node.toml" "$pkg/etc/golek/node.toml"
install -D -m 0644 "$root/README.md" "$pkg/usr/share/doc/golek/README.md"
install -D -m 0644 "$root/config/examples/node.toml" "$pkg/usr/share/doc/golek/node.toml.example"
cat > "$pkg/usr/share/doc/golek/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: golek

Files: usr/bin/golek
License: Apache-2.0

Files: usr/share/golek/onnxruntime/*
Copyright: Microsoft Corporation
License: MIT

Files: usr/share/golek/models/all-minilm-l6-v2/*
Comment: sentence-transformers/all-MiniLM-L6-v2, int8
License: Apache-2.0

Files: usr/share/golek/models/smollm2-135m-instruct.Q4_1.gguf
Comment: HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1
License: Apache-2.0
COPYRIGHT

# Depends: what the binary and the ONNX Runtime library link against, as dpkg-shlibdeps maps
# their libraries to packages (libgomp1, libstdc++6, libgcc-s1, libc6), plus adduser for the
# postinst.
shlib="$stage/shlibs"
mkdir -p "$shlib/debian"
printf 'Source: golek\n\nPackage: golek\nArchitecture: any\n' > "$shlib/debian/control"
depends="$(cd "$shlib" && dpkg-shlibdeps -O -e "$pkg/usr/bin/golek" \
  -e "$pkg/usr/share/golek/onnxruntime/libonnxruntime.so" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || fail "dpkg-shlibdeps found no dependencies"
case "$depends" in *libgomp1*) ;; *) log "note: the binary does not link libgomp" ;; esac

install -d -m 0755 "$pkg/DEBIAN"
size="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: golek
Version: $version-$revision
Architecture: $arch
Maintainer: Golek developers <golek@localhost>
Installed-Size: $size
Depends: adduser, $depends
Section: net
Priority: optional
Homepage: https://github.com/golek/golek
Description: distributed inference node (llama.cpp, ONNX Runtime, Triton, OpenAI)
 One binary that serves models over OpenAI-compatible and KServe v2 HTTP and over QUIC,
 joins its peers by gossip with mutual TLS and places, moves and heals deployments with no
 coordinator. The package runs it as golek.service with the default models (a MiniLM
 sentence embedder and the SmolLM2-135M chat model); configuration in /etc/golek/node.toml.
CONTROL
echo "/etc/golek/node.toml" > "$pkg/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$debian/$script" "$pkg/DEBIAN/$script"
done

mkdir -p "$out"
deb="$out/golek_${version}-${revision}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$pkg" "$deb" >/dev/null
log "built $deb ($(du -h "$deb" | cut -f1); Depends: adduser, $depends)"
printf '%s\n' "$deb"
