#!/usr/bin/env bash
# Runs every test: unit tests of each crate and the integration tests in
# tests/, which start real nats-server and kubus processes. Installs what it
# needs first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh >/dev/null

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubus/target}"
# The integration tests run the kubus binary: build it first.
cargo build --locked --bin kubus
# Integration tests start whole clusters; two at a time suit 2 cores.
cargo test --workspace --locked -- --test-threads=2
# The store's crash tests: a peer aborted at each persist step (failpoints
# are compiled in only with this feature). The feature is named from the
# workspace, not with `-p kubus-storage`: `-p` resolves the build scripts'
# dependencies (bindgen's) with other features, which rebuilt RocksDB's C++
# a second time (~12 minutes on two cores) on a cold machine.
cargo test --locked --workspace --features kubus-storage/failpoints --test crash
