# The two commands a person needs: `make run` starts a node serving the default models,
# `make test` runs the tests. Both run scripts/setup.sh first (idempotent).

CARGO ?= cargo
ARGS ?=

.PHONY: setup run test lint bench deb

setup:
	bash scripts/setup.sh

run: setup
	$(CARGO) run --release -p golek-node --bin golek -- serve $(ARGS)

test:
	bash scripts/setup.sh --tests
	$(CARGO) test --workspace

# The .deb (target/debian/): the release binary, the default models, the systemd unit.
deb: setup
	$(CARGO) build --release -p golek-node --bin golek
	bash scripts/package-deb.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: setup
	bash bench/embeddings.sh
	bash bench/generation.sh
	bash bench/chat.sh
	bash bench/proxy.sh
	bash bench/failover.sh
	bash bench/tracing.sh
	bash bench/plugins.sh
	bash bench/cluster.sh
