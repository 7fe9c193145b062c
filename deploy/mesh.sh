#!/usr/bin/env bash
# A kubus mesh of several "machines" on this one machine, as docs/mesh.md
# describes it across real ones: a NATS cluster of three nats-server
# processes (routes between them), three store peers, two control-role and
# three worker-role mesh nodes — each a process of its own with its own data
# directory and ports, every kubus process given all three NATS URLs.
#
#   deploy/mesh.sh start [--hollow-nodes N]  start everything, in order
#   deploy/mesh.sh status                    each process, the store, the nodes
#   deploy/mesh.sh stop                      stop exactly the recorded PIDs
#
# Settings (environment):
#   MESH_DIR           where data, logs and PID files go (~/.kubus/mesh)
#   MESH_BASE_PORT     NATS client ports BASE..BASE+2, cluster (route) ports
#                      BASE+100.., monitoring ports BASE+200.. (14222)
#   MESH_CLUSTER       the kubus cluster name (kubus)
#   MESH_SERVICE_CIDR  the Services' range, the same on every node (10.96.0.0/16)
#   MESH_RUNTIME       the workers' runtime: process or cri (process)
#   KUBUS              the kubus binary (default: build it, as deploy/up.sh does)
#
# Every wait is bounded; `stop` sends SIGTERM to each recorded PID (only if
# that PID still runs the command this script started), then SIGKILL after
# 20 s. Nothing is stopped by name.
set -euo pipefail
cd "$(dirname "$0")/.."

MESH_DIR="${MESH_DIR:-$HOME/.kubus/mesh}"
BASE="${MESH_BASE_PORT:-14222}"
CLUSTER="${MESH_CLUSTER:-kubus}"
SERVICE_CIDR="${MESH_SERVICE_CIDR:-10.96.0.0/16}"
RUNTIME="${MESH_RUNTIME:-process}"
NATS_SERVERS=3
STORE_PEERS=3
CONTROL_NODES=2
WORKER_NODES=3
STOP_WAIT_S=20

say() { echo "mesh: $*"; }
die() { echo "mesh: $*" >&2; exit 1; }

client_port() { echo $((BASE + $1 - 1)); }
route_port() { echo $((BASE + 100 + $1 - 1)); }
monitor_port() { echo $((BASE + 200 + $1 - 1)); }

nats_urls() {
  local urls="" i
  for i in $(seq 1 "$NATS_SERVERS"); do
    urls="${urls:+$urls,}nats://127.0.0.1:$(client_port "$i")"
  done
  echo "$urls"
}

# Every component, in start order (stop goes the other way).
components() {
  local i
  for i in $(seq 1 "$NATS_SERVERS"); do echo "nats-$i"; done
  for i in $(seq 1 "$STORE_PEERS"); do echo "store-$i"; done
  for i in $(seq 1 "$CONTROL_NODES"); do echo "control-$i"; done
  for i in $(seq 1 "$WORKER_NODES"); do echo "worker-$i"; done
}

pid_of() { cat "$MESH_DIR/$1/pid" 2>/dev/null || true; }

# Whether component $1's recorded PID runs and is still the process this
# script started: its command line holds the component's marker (a PID
# reused by another process is left alone).
running() {
  local pid marker
  pid="$(pid_of "$1")"
  marker="$(cat "$MESH_DIR/$1/marker" 2>/dev/null || true)"
  [[ -n "$pid" && -n "$marker" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -F -- "$marker"
}

# spawn NAME MARKER COMMAND...: run it in the background, output to
# NAME/log, its PID to NAME/pid; MARKER is a word of its command line.
spawn() {
  local name="$1" marker="$2"
  shift 2
  mkdir -p "$MESH_DIR/$name"
  echo "$marker" >"$MESH_DIR/$name/marker"
  nohup "$@" >>"$MESH_DIR/$name/log" 2>&1 </dev/null &
  echo $! >"$MESH_DIR/$name/pid"
}

# wait_until SECONDS WHAT COMMAND...: poll every 0.5 s.
wait_until() {
  local seconds="$1" what="$2" i
  shift 2
  for i in $(seq 1 $((seconds * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what not within ${seconds} s (logs in $MESH_DIR/*/log)"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kubus_bin() {
  if [[ -n "${KUBUS:-}" ]]; then
    echo "$KUBUS"
    return
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubus/target}"
  cargo build --locked --bin kubus >&2
  echo "$CARGO_TARGET_DIR/debug/kubus"
}

start_nats() {
  local i j routes
  for i in $(seq 1 "$NATS_SERVERS"); do
    routes=""
    for j in $(seq 1 "$NATS_SERVERS"); do
      [[ "$j" == "$i" ]] && continue
      routes="${routes:+$routes,}nats-route://127.0.0.1:$(route_port "$j")"
    done
    spawn "nats-$i" "nats://127.0.0.1:$(route_port "$i")" \
      nats-server -a 127.0.0.1 -p "$(client_port "$i")" \
      -n "nats-$i" --cluster_name "kubus-mesh" \
      --cluster "nats://127.0.0.1:$(route_port "$i")" --routes "$routes" \
      -m "$(monitor_port "$i")"
  done
  for i in $(seq 1 "$NATS_SERVERS"); do
    wait_until 10 "nats-$i accepting connections" port_open "$(client_port "$i")"
  done
  say "NATS cluster up: $(nats_urls)"
}

# node NAME ARGS...: a kubus mesh node on every NATS server.
node() {
  local name="$1"
  shift
  spawn "$name" "$MESH_DIR/$name/data" "$KUBUS_BIN" node --nats "$(nats_urls)" --cluster "$CLUSTER" \
    --node-name "$name" --data-dir "$MESH_DIR/$name/data" \
    --service-cidr "$SERVICE_CIDR" "$@"
}

store_has_leader() {
  "$KUBUS_BIN" --nats "$(nats_urls)" --cluster "$CLUSTER" store status | grep -q ' leader '
}

nodes_ready() {
  local want="$1" ready
  ready="$("$KUBUS_BIN" --nats "$(nats_urls)" --cluster "$CLUSTER" get nodes | grep -c ' Ready ' || true)"
  [[ "$ready" -ge "$want" ]]
}

cmd_start() {
  local hollow=0 i
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --hollow-nodes) hollow="$2"; shift 2 ;;
      *) die "unknown argument $1 (start takes --hollow-nodes N)" ;;
    esac
  done
  command -v nats-server >/dev/null || die "nats-server is not installed (deploy/install-deps.sh)"
  for c in $(components); do
    running "$c" && die "$c is running already (deploy/mesh.sh stop first)"
  done
  KUBUS_BIN="$(kubus_bin)"
  mkdir -p "$MESH_DIR"
  start_nats
  for i in $(seq 1 "$STORE_PEERS"); do
    node "store-$i" --roles store --peer-id "$i" \
      --initial-peers "$(seq -s, 1 "$STORE_PEERS")"
  done
  wait_until 60 "a store leader" store_has_leader
  say "store up: $STORE_PEERS peers"
  for i in $(seq 1 "$CONTROL_NODES"); do
    node "control-$i" --roles control
  done
  for i in $(seq 1 "$WORKER_NODES"); do
    # One machine: pods on the node's network, each node its own pod
    # range. Hollow nodes (named hollow-0000…) on the first worker only:
    # their names are the same on every mesh node.
    local hollow_here=0
    [[ "$i" == 1 ]] && hollow_here="$hollow"
    node "worker-$i" --roles worker --runtime "$RUNTIME" --process-network host \
      --pod-cidr "10.$((89 + i)).0.0/16" --hollow-nodes "$hollow_here"
  done
  wait_until 60 "$WORKER_NODES worker nodes Ready" nodes_ready "$((WORKER_NODES + hollow))"
  say "up: $NATS_SERVERS nats-servers, $STORE_PEERS store peers, $CONTROL_NODES control and $WORKER_NODES worker mesh nodes ($hollow hollow nodes on worker-1)"
  say "use it with: export KUBUS_NATS=$(nats_urls) KUBUS_CLUSTER=$CLUSTER"
  echo "export KUBUS_NATS=$(nats_urls) KUBUS_CLUSTER=$CLUSTER" >"$MESH_DIR/env"
}

cmd_stop() {
  local c pid i pending
  for c in $(components | tac); do
    if running "$c"; then
      kill -TERM "$(pid_of "$c")" 2>/dev/null || true
    fi
  done
  for i in $(seq 1 $((STOP_WAIT_S * 2))); do
    pending=0
    for c in $(components); do running "$c" && pending=1; done
    [[ "$pending" == 0 ]] && break
    sleep 0.5
  done
  for c in $(components); do
    if running "$c"; then
      pid="$(pid_of "$c")"
      say "$c (pid $pid) did not stop within ${STOP_WAIT_S} s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$MESH_DIR/$c/pid"
  done
  say "stopped (data kept in $MESH_DIR)"
}

cmd_status() {
  local c state
  for c in $(components); do
    if running "$c"; then state="running (pid $(pid_of "$c"))"; else state="stopped"; fi
    printf '%-10s %s\n' "$c" "$state"
  done
  KUBUS_BIN="${KUBUS:-${CARGO_TARGET_DIR:-$HOME/.cache/kubus/target}/debug/kubus}"
  [[ -x "$KUBUS_BIN" ]] || return 0
  echo
  "$KUBUS_BIN" --nats "$(nats_urls)" --cluster "$CLUSTER" store status || true
  echo
  "$KUBUS_BIN" --nats "$(nats_urls)" --cluster "$CLUSTER" get nodes || true
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: deploy/mesh.sh start [--hollow-nodes N] | status | stop" ;;
esac
