# Shell helpers the bench scripts source (`. "$root/bench/lib.sh"`): which golek binary, free
# ports, waiting for a server. Expects `root` set to the checkout.

# golek_bin: $GOLEK_BIN when set (another build, used as is), else the release build, built
# first. Prints the path.
golek_bin() {
  if [ -n "${GOLEK_BIN:-}" ]; then
    printf '%s\n' "$GOLEK_BIN"
    return
  fi
  (cd "$root" && cargo build --release -q -p golek-node --bin golek)
  printf '%s\n' "${CARGO_TARGET_DIR:-$root/target}/release/golek"
}

# free_port: a TCP port on loopback nobody listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_ready URL PID LOG: waits up to 60 s for URL to answer 200; exits printing LOG when the
# process PID dies or time runs out.
wait_ready() {
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || { echo "the server behind $1 died:" >&2; cat "$3" >&2; exit 1; }
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not answer 200 within 60 s:" >&2; cat "$3" >&2; exit 1
}
