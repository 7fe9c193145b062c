#!/usr/bin/env bash
# Builds a container image from Debian's busybox-static (rootfs = /bin/busybox
# plus one symlink per applet) as a docker-archive tar, and imports it into a
# containerd under every name given (no registry is reachable here; see
# ../shared/notes/cri-on-this-machine.md). The image's command is
# `sleep infinity`, so it also serves as the pod sandbox ("pause") image.
#
#   deploy/build-test-image.sh [--address SOCK] [--tar OUT.tar] [NAME...]
#
# Without --address the tar is only built. Default names: localhost/busybox:latest,
# localhost/pause:kubus and registry.k8s.io/busybox:1.27.2 (the name
# ../shared/k8s-examples/exec-liveness.yaml asks for). Idempotent.
set -euo pipefail

address=""
tar_out=""
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --tar) tar_out="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ "${#names[@]}" -gt 0 ] || names=(localhost/busybox:latest localhost/pause:kubus registry.k8s.io/busybox:1.27.2)

busybox=/bin/busybox
[ -x "$busybox" ] || { echo "build-test-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
# a dynamically linked busybox would not run in an empty rootfs
if ldd "$busybox" >/dev/null 2>&1; then
  echo "build-test-image: $busybox is not static (install busybox-static)" >&2; exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,tmp,etc,proc,sys,dev,root,var/run}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
while read -r applet; do
  [ "$applet" = "bin/busybox" ] && continue
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"

img="$work/image"
mkdir -p "$img"
# fixed owner and times: the same busybox gives the same layer digest
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
  -C "$root" -cf "$img/layer.tar" .
diff_id=$(sha256sum "$img/layer.tar" | cut -d' ' -f1)
cat > "$img/config.json" <<EOF
{"architecture":"amd64","os":"linux",
 "config":{"Cmd":["sleep","infinity"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
EOF
tags=$(printf '"%s",' "${names[@]}")
echo "[{\"Config\":\"config.json\",\"RepoTags\":[${tags%,}],\"Layers\":[\"layer.tar\"]}]" > "$img/manifest.json"
tar_out=${tar_out:-$work/busybox.tar}
tar -C "$img" -cf "$tar_out" manifest.json config.json layer.tar

if [ -n "$address" ]; then
  # kubus up may be importing its sandbox image at the same moment: an
  # image another import just made counts as imported; other failures are
  # tried again (at most 5 times, 1 s apart)
  for attempt in 1 2 3 4 5; do
    if out=$(ctr --address "$address" -n k8s.io images import "$tar_out" 2>&1 >/dev/null); then
      break
    fi
    case "$out" in
      *"already exists"*) break ;;
    esac
    if [ "$attempt" = 5 ]; then
      echo "$out" >&2
      exit 1
    fi
    sleep 1
  done
  echo "build-test-image: imported ${names[*]} into $address"
else
  echo "build-test-image: built $tar_out (${names[*]})"
fi
