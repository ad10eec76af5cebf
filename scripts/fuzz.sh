#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time; fails if any target crashes.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]   # default: 20 s per target, all targets
#   bash scripts/fuzz.sh --seeds                  # rewrite fuzz/seeds/ (committed) and stop
#
# Needs the nightly toolchain (sanitizers); installs the pinned cargo-fuzz if missing. Each
# target's corpus, fuzz/corpus/TARGET (not committed), starts from fuzz/seeds/TARGET. Crash
# inputs land in fuzz/artifacts/TARGET/; replay one with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# Builds go to $CARGO_TARGET_DIR_FUZZ (default ~/.cache/golek/fuzz-target), never the
# workspace's target: the fuzz crate depends only on protocol, config and providers' `sse`.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(peer_frame gossip_values kserve_json kserve_binary openai_request sse_reader config_loader)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$HOME/.cache/golek/fuzz-target}"
cd "$root"

if [[ "${1:-}" == "--seeds" ]]; then
    (cd fuzz && cargo run --quiet --example gen_seeds)
    mkdir -p fuzz/seeds/config_loader
    cp config/examples/node.toml fuzz/seeds/config_loader/
    for f in config/examples/bad/*.toml; do
        cp "$f" "fuzz/seeds/config_loader/bad-$(basename "$f")"
    done
    exit 0
fi

seconds="${1:-20}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS] [TARGET...] | --seeds" >&2; exit 2; }
shift || true
if [[ $# -gt 0 ]]; then TARGETS=("$@"); fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

failed=()
for target in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    if [[ -d "fuzz/seeds/$target" ]]; then
        cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    fi
    echo "=== $target: ${seconds}s"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GiB is a leak or a bomb.
    if ! cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: failed (crash or build error): ${failed[*]}; crash inputs under fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz.sh: ${#TARGETS[@]} target(s), ${seconds}s each, no crash"
