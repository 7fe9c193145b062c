#!/usr/bin/env bash
# Installs what kubus needs to build and test, from Debian packages.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
  nats-server      # the bus; `kubus up` starts it as a child
  libclang-dev     # bindgen for the RocksDB bindings
  clang
  build-essential
  pkg-config
  # the cri runtime and its tests (see ../shared/notes/cri-on-this-machine.md)
  containerd                  # CRI plugin built in; `kubus up --runtime cri` starts it
  runc
  containernetworking-plugins # bridge, host-local, portmap in /usr/lib/cni
  iptables                    # the bridge plugin adds NAT rules
  protobuf-compiler           # protoc for the k8s-cri and etcd-client build scripts
  libprotobuf-dev             # google/protobuf/*.proto, which etcd-client's protos import
  etcd-server                 # etcd 3.4, the baseline `kubus bench store` starts beside kubus
  busybox-static              # the local test image (deploy/build-test-image.sh)
  mmdebstrap                  # nginx/redis/shell images from Debian packages (deploy/build-images.sh)
  tcpdump                     # the security test captures the bus port (no plaintext Secret with TLS)
  chromium                    # the dashboard's test and benchmark drive it headless
  chromium-driver             # ... through WebDriver (chromedriver)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The foreign-client test speaks to the bus from Python (nats-py, PyPI).
if ! python3 -c 'import nats' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore nats-py
fi

# The metrics test parses /metrics with Prometheus' own Python parser (PyPI).
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore prometheus-client
fi

# The traces test receives OTLP/HTTP spans with a small Python collector
# that decodes them with the OpenTelemetry protocol's own messages (PyPI).
if ! python3 -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore opentelemetry-proto
fi

# The Kubernetes API tests drive it with the Python client (PyPI) and with
# kubectl (the machine image's; Debian's kubernetes-client where none is).
if ! python3 -c 'import kubernetes' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes
fi
if ! command -v kubectl >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends kubernetes-client
fi

command -v cargo >/dev/null || { echo "install-deps: cargo not found; install Rust (rustup) first" >&2; exit 1; }
echo "install-deps: ok (nats-server $(nats-server --version 2>/dev/null | head -n1))"
