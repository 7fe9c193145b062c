#!/usr/bin/env bash
# Brings up a single-node kubus cluster on this machine: installs what it
# needs (idempotent), builds kubus, and runs `kubus up` in the foreground
# (its own nats-server child, data in ~/.kubus/data). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh >/dev/null

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubus/target}"
cargo build --locked --bin kubus
mkdir -p "$HOME/.local/bin"
ln -sf "$CARGO_TARGET_DIR/debug/kubus" "$HOME/.local/bin/kubus"
echo "kubus is at $HOME/.local/bin/kubus (add that folder to PATH)"
exec "$CARGO_TARGET_DIR/debug/kubus" up "$@"
