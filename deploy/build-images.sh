#!/usr/bin/env bash
# Builds real container images from Debian packages (no registry is reachable
# here; see ../shared/notes/services-on-this-machine.md, "Real images without
# a registry") so that unmodified example manifests find the images they name:
#
#   nginx  the nginx package, configured like the official image (port 80, page
#          in /usr/share/nginx/html, logs to stdout/stderr, `nginx -g 'daemon
#          off;'`, StopSignal SIGQUIT). Names: nginx, nginx:1.14.2,
#          registry.k8s.io/nginx-slim:0.7.
#   redis  redis-server with protected mode off, listening on every address
#          (k8s.gcr.io/redis:e2e, redis), and in the same tar (same layer) the
#          guestbook replica gcr.io/google_samples/gb-redisslave:v1, whose
#          /run.sh starts `redis-server --replicaof redis-master 6379` (or the
#          host in $REDIS_MASTER_SERVICE_HOST when GET_HOSTS_FROM=env).
#   shell  localhost/kubus-shell:latest: Debian's essential set plus
#          busybox-static (sh, wget, nc, nslookup, sleep, ...); `sleep
#          infinity` by default, a client pod for tests.
#
#   deploy/build-images.sh [--address CONTAINERD_SOCK] [--only nginx|redis|shell ...]
#
# Each image is one layer made by `mmdebstrap --variant=essential` from the
# mirror apt on this machine uses (the host's release), wrapped as a
# docker-archive tar (manifest.json + config json + layer.tar, as
# deploy/build-test-image.sh does). Short names are stored fully qualified
# (nginx:1.14.2 -> docker.io/library/nginx:1.14.2), as `ctr images import`
# and the CRI plugin both normalise them. Tars are cached in
# ${KUBUS_IMAGE_CACHE:-$HOME/.cache/kubus/images}/<name>.tar beside a stamp
# holding a hash of the image's recipe: a rerun with an unchanged recipe
# builds nothing ("cached"). Without --address the tars are only built and
# their paths printed; with it each is also imported into that containerd's
# k8s.io namespace (idempotent). Building needs root and mmdebstrap
# (deploy/install-deps.sh); each image is bounded by
# ${KUBUS_IMAGE_BUILD_TIMEOUT:-600} seconds.
set -euo pipefail

usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build-images: $*" >&2; exit 1; }
say() { echo "build-images: $*" >&2; }

all_images=(nginx redis shell)
address=""
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --address)
      [ $# -ge 2 ] || die "--address needs a containerd socket path"
      address="$2"; shift 2 ;;
    --only)
      [ $# -ge 2 ] || die "--only needs an image name (${all_images[*]})"
      shift
      # --only nginx,redis | --only nginx redis | --only nginx --only redis
      while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do
        IFS=, read -r -a words <<<"$1"
        only+=("${words[@]}"); shift
      done ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ "${#only[@]}" -gt 0 ] || only=("${all_images[@]}")
for n in "${only[@]}"; do
  case " ${all_images[*]} " in *" $n "*) ;; *) die "unknown image '$n' (known: ${all_images[*]})" ;; esac
done

cache=${KUBUS_IMAGE_CACHE:-$HOME/.cache/kubus/images}
build_timeout=${KUBUS_IMAGE_BUILD_TIMEOUT:-600}

# The host's release and apt sources, so the images come through the same
# mirror as the host's packages (and its security updates).
# shellcheck source=/dev/null
suite=${KUBUS_IMAGE_SUITE:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")}
[ -n "$suite" ] || die "cannot tell the Debian release from /etc/os-release; set KUBUS_IMAGE_SUITE (e.g. bookworm)"
mirror=${KUBUS_IMAGE_MIRROR:-}
if [ -z "$mirror" ]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ] && grep -Eq '^[[:space:]]*(deb |Types:.*deb)' "$f"; then mirror=$f; break; fi
  done
fi
mirror_text=$mirror
[ -f "$mirror" ] && mirror_text=$(cat "$mirror")
arch=$(dpkg --print-architecture 2>/dev/null) || die "dpkg missing: this script builds from Debian packages"
case "$arch" in
  amd64|arm64|s390x|riscv64) oci_arch=$arch ;;
  armhf) oci_arch=arm ;;
  i386) oci_arch=386 ;;
  ppc64el) oci_arch=ppc64le ;;
  *) die "architecture $arch has no OCI name here" ;;
esac
# fixed times in files and tars: same packages give the same layer digest
epoch=946684800 # 2000-01-01T00:00:00Z

# --- recipe: everything below down to "end of recipe" goes into the hash ---

PATH_IN_IMAGE=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

jstr() { local s=$1; s=${s//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
jarr() { local out="" x; for x in "$@"; do out+="${out:+,}$(jstr "$x")"; done; printf '[%s]' "$out"; }

# docker.io/library/ for a bare name, :latest when there is no tag: the name
# containerd stores and the CRI plugin looks up
qualify() {
  local n=$1 first=${1%%/*}
  if [ "$first" = "$n" ]; then n=docker.io/library/$n
  elif ! [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then n=docker.io/$n
  fi
  [[ "${n##*/}" == *:* || "$n" == *@* ]] || n=$n:latest
  printf '%s' "$n"
}

# debootstrap ROOT PKG... : Debian's essential set plus PKG... into ROOT.
# The merged-usr hook makes /bin etc. symlinks itself; otherwise bookworm's
# init-system-helpers pulls in usrmerge and with it all of perl (~47 MB).
debootstrap() {
  local root=$1; shift
  local includes
  includes=$(IFS=,; echo "$*")
  local mirror_args=()
  [ -z "$mirror" ] || mirror_args=("$mirror")
  # its progress on a terminal; only warnings and errors when not one
  local quiet=()
  [ -t 2 ] || quiet=(--quiet)
  SOURCE_DATE_EPOCH=$epoch timeout --kill-after=20 "$build_timeout" \
    mmdebstrap "${quiet[@]}" --mode=root --variant=essential --format=directory \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --include="$includes" \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/lintian/*' \
      --dpkgopt='path-exclude=/usr/share/bash-completion/*' \
      --aptopt='Acquire::Retries "3"' \
      "$suite" "$root" "${mirror_args[@]}"
}

# what a container runtime provides or what differs per build host goes
tidy() {
  local root=$1
  ! awk -v p="$root/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/self/mounts \
    || { echo "something is still mounted under $root" >&2; return 1; }
  find "$root/dev" "$root/run" "$root/tmp" -xdev -mindepth 1 -delete
  rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
  install -m 0644 /dev/null "$root/etc/hostname"
  install -m 0644 /dev/null "$root/etc/resolv.conf"
  rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
}

# add_user ROOT NAME UID: a system user and group, unless NAME exists
add_user() {
  local root=$1 name=$2 id=$3
  grep -q "^$name:" "$root/etc/passwd" && return 0
  ! cut -d: -f3 "$root/etc/passwd" | grep -qx "$id" || { echo "uid $id is taken in the image" >&2; return 1; }
  ! cut -d: -f3 "$root/etc/group" | grep -qx "$id" || { echo "gid $id is taken in the image" >&2; return 1; }
  echo "$name:x:$id:$id:$name:/nonexistent:/usr/sbin/nologin" >> "$root/etc/passwd"
  echo "$name:x:$id:" >> "$root/etc/group"
  [ ! -f "$root/etc/shadow" ] || echo "$name:!:10957::::::" >> "$root/etc/shadow"
  [ ! -f "$root/etc/gshadow" ] || echo "$name:!::" >> "$root/etc/gshadow"
}

# config_json DIFF_ID ; reads ep cmd env ports workdir stopsignal (JSON / strings)
config_json() {
  local diff_id=$1 created
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
  printf '{"architecture":"%s","os":"linux","created":"%s",' "$oci_arch" "$created"
  printf '"config":{"Env":%s,"Entrypoint":%s,"Cmd":%s,"ExposedPorts":%s,"WorkingDir":%s,"StopSignal":%s},' \
    "$env" "$ep" "$cmd" "$ports" "$(jstr "$workdir")" "$(jstr "$stopsignal")"
  printf '"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},' "$diff_id"
  printf '"history":[{"created":"%s","created_by":"deploy/build-images.sh (mmdebstrap %s)"}]}\n' "$created" "$suite"
}

# pack ROOT IMGDIR : the layer, deterministic (sorted, numeric owners, clamped times)
pack_layer() {
  local root=$1 img=$2
  tar --create --file "$img/layer.tar" --directory "$root" --one-file-system \
    --sort=name --numeric-owner --format=gnu --mtime="@$epoch" --clamp-mtime .
  sha256sum "$img/layer.tar" | cut -d' ' -f1
}

# manifest_entry CONFIG NAME... : one entry of manifest.json
manifest_entry() {
  local config=$1; shift
  local names=() n
  for n in "$@"; do names+=("$(qualify "$n")"); done
  printf '{"Config":%s,"RepoTags":%s,"Layers":["layer.tar"]}' "$(jstr "$config")" "$(jarr "${names[@]}")"
}

finish_archive() {
  local img=$1 out=$2
  (cd "$img" && tar --create --file "$out" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$epoch" --format=gnu -- *)
}

nginx_packages=(nginx)
recipe_nginx() {
  local root=$1 img=$2 out=$3
  debootstrap "$root" "${nginx_packages[@]}"
  tidy "$root"
  # the official image runs workers as nginx (uid/gid 101)
  add_user "$root" nginx 101
  rm -f "$root/etc/nginx/sites-enabled/default"
  cat > "$root/etc/nginx/nginx.conf" <<'EOF'
# as in the official nginx image (plus Debian's dynamic modules)
user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

include /etc/nginx/modules-enabled/*.conf;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    #tcp_nopush     on;

    keepalive_timeout  65;

    #gzip  on;

    include /etc/nginx/conf.d/*.conf;
}
EOF
  mkdir -p "$root/etc/nginx/conf.d"
  cat > "$root/etc/nginx/conf.d/default.conf" <<'EOF'
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    # redirect server error pages to the static page /50x.html
    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
EOF
  mkdir -p "$root/usr/share/nginx/html"
  cat > "$root/usr/share/nginx/html/index.html" <<'EOF'
<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
EOF
  cat > "$root/usr/share/nginx/html/50x.html" <<'EOF'
<!DOCTYPE html>
<html>
<head>
<title>Error</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>If you are the system administrator of this resource then you should check
the error log for details.</p>
<p><em>Faithfully yours, nginx.</em></p>
</body>
</html>
EOF
  # logs go to the container's stdout/stderr; the dirs nginx writes to exist
  mkdir -p "$root/var/log/nginx" "$root/var/lib/nginx" "$root/var/cache/nginx" "$root/run"
  ln -sf /dev/stdout "$root/var/log/nginx/access.log"
  ln -sf /dev/stderr "$root/var/log/nginx/error.log"

  local diff_id
  diff_id=$(pack_layer "$root" "$img")
  local env ep cmd ports workdir stopsignal
  env=$(jarr "PATH=$PATH_IN_IMAGE")
  ep=null
  cmd=$(jarr nginx -g 'daemon off;')
  ports='{"80/tcp":{}}'
  workdir=/
  stopsignal=SIGQUIT
  config_json "$diff_id" > "$img/nginx.json"
  printf '[%s]\n' "$(manifest_entry nginx.json nginx nginx:1.14.2 registry.k8s.io/nginx-slim:0.7)" > "$img/manifest.json"
  finish_archive "$img" "$out"
}

redis_packages=(redis-server)
recipe_redis() {
  local root=$1 img=$2 out=$3
  debootstrap "$root" "${redis_packages[@]}"
  tidy "$root"
  mkdir -p "$root/data" "$root/usr/local/bin"
  local owner
  owner=$(awk -F: '$1 == "redis" { print $3 ":" $4 }' "$root/etc/passwd")
  [ -z "$owner" ] || chown "$owner" "$root/data"
  cat > "$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# As the official redis image's entrypoint: a first argument that is an
# option or a .conf file means redis-server. The official image builds redis
# with protected mode off (a container's port is only reachable when
# published); Debian's keeps it on, so it is turned off here unless the
# arguments say otherwise. With no bind setting redis 7 listens on every
# address ("* -::*").
set -e
case "$1" in
  -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
  case " $* " in
    *" --protected-mode "*) ;;
    *)
      shift
      if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        conf=$1; shift
        set -- redis-server "$conf" --protected-mode no "$@"
      else
        set -- redis-server --protected-mode no "$@"
      fi ;;
  esac
fi
exec "$@"
EOF
  cat > "$root/run.sh" <<'EOF'
#!/bin/sh
# As gcr.io/google_samples/gb-redisslave's /run.sh: a replica of the
# guestbook's master, found by DNS (the redis-master Service) or, with
# GET_HOSTS_FROM=env, through the Service's environment variable.
if [ "${GET_HOSTS_FROM:-dns}" = env ]; then
  master=${REDIS_MASTER_SERVICE_HOST:?GET_HOSTS_FROM=env but REDIS_MASTER_SERVICE_HOST is not set}
else
  master=redis-master
fi
exec redis-server --protected-mode no --replicaof "$master" 6379
EOF
  chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh" "$root/run.sh"

  local diff_id
  diff_id=$(pack_layer "$root" "$img")
  local env ep cmd ports workdir stopsignal
  env=$(jarr "PATH=$PATH_IN_IMAGE")
  ep=$(jarr docker-entrypoint.sh)
  ports='{"6379/tcp":{}}'
  workdir=/data
  stopsignal=SIGTERM
  cmd=$(jarr redis-server)
  config_json "$diff_id" > "$img/redis.json"
  cmd=$(jarr /run.sh)
  config_json "$diff_id" > "$img/redis-replica.json"
  printf '[%s,%s]\n' \
    "$(manifest_entry redis.json k8s.gcr.io/redis:e2e redis)" \
    "$(manifest_entry redis-replica.json gcr.io/google_samples/gb-redisslave:v1)" > "$img/manifest.json"
  finish_archive "$img" "$out"
}

# Debian's wget: the static busybox one crashes resolving names through
# the image's glibc NSS modules (seen in a pod with cluster DNS)
shell_packages=(busybox-static wget)
recipe_shell() {
  local root=$1 img=$2 out=$3
  debootstrap "$root" "${shell_packages[@]}"
  tidy "$root"
  # every busybox applet the essential set lacks (wget, nc, nslookup, ping,
  # vi, ...), in /usr/local/bin so no Debian tool is shadowed
  mkdir -p "$root/usr/local/bin"
  local applet name d have
  while read -r applet; do
    name=${applet##*/}
    have=""
    for d in usr/local/sbin usr/local/bin usr/sbin usr/bin sbin bin; do
      if [ -e "$root/$d/$name" ] || [ -L "$root/$d/$name" ]; then have=1; break; fi
    done
    [ -n "$have" ] || ln -s /bin/busybox "$root/usr/local/bin/$name"
  done < <(chroot "$root" /bin/busybox --list-full)

  local diff_id
  diff_id=$(pack_layer "$root" "$img")
  local env ep cmd ports workdir stopsignal
  env=$(jarr "PATH=$PATH_IN_IMAGE")
  ep=null
  cmd=$(jarr sleep infinity)
  ports=null
  workdir=/
  stopsignal=SIGTERM
  config_json "$diff_id" > "$img/shell.json"
  printf '[%s]\n' "$(manifest_entry shell.json localhost/kubus-shell:latest)" > "$img/manifest.json"
  finish_archive "$img" "$out"
}

# --- end of recipe ---

recipe_hash() {
  local name=$1
  {
    echo "format 1 $suite $arch $epoch"
    printf '%s\n' "$mirror_text"
    declare -p PATH_IN_IMAGE "${name}_packages"
    declare -f jstr jarr qualify debootstrap tidy add_user config_json pack_layer \
      manifest_entry finish_archive "recipe_$name"
  } | sha256sum | cut -d' ' -f1
}

# a temporary build dir: unmount whatever is left beneath it (a killed
# mmdebstrap may leave /proc, /sys or /dev mounted in the chroot), then remove
# it without crossing into another filesystem
work=""
cleanup() {
  [ -n "$work" ] && [ -d "$work" ] || return 0
  awk -v p="$work/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
  work=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# with --address, fail before building when there is nothing to import into
if [ -n "$address" ]; then
  command -v ctr >/dev/null || die "ctr missing (apt-get install containerd)"
  [ -S "$address" ] || die "no containerd socket at $address"
  ctr --address "$address" version >/dev/null 2>&1 || die "containerd at $address does not answer (ctr version)"
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w "$((build_timeout * 3))" 9 || die "another build holds $cache/.lock"

tars=()
for name in "${only[@]}"; do
  out="$cache/$name.tar"
  stamp="$cache/$name.stamp"
  hash=$(recipe_hash "$name")
  if [ -s "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    say "$name: cached ($out)"
    tars+=("$out"); continue
  fi
  [ "$(id -u)" -eq 0 ] || die "building $name needs root (mmdebstrap --mode=root keeps the packages' file owners)"
  command -v mmdebstrap >/dev/null || die "mmdebstrap missing (apt-get install mmdebstrap, or run deploy/install-deps.sh)"
  command -v timeout >/dev/null || die "timeout missing (coreutils)"
  say "$name: building from Debian $suite (${mirror:-default mirror}), at most ${build_timeout}s"
  started=$(date +%s)
  work=$(mktemp -d "$cache/.build-$name.XXXXXX")
  chmod 0755 "$work" # apt downloads as _apt into the rootfs beneath
  mkdir -p "$work/image"
  log="$work/build.log"
  # errexit must hold inside the recipe, so its subshell is not run as a
  # condition (bash ignores set -e there)
  set +e
  ( set -euo pipefail; "recipe_$name" "$work/rootfs" "$work/image" "$work/$name.tar" ) >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$log" >&2
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      die "$name: build timed out after ${build_timeout}s (KUBUS_IMAGE_BUILD_TIMEOUT)"
    fi
    die "$name: build failed with status $rc (last lines of its log above)"
  fi
  mv -f "$work/$name.tar" "$out"
  echo "$hash" > "$stamp"
  cleanup
  say "$name: built $out ($(du -h "$out" | cut -f1), $(( $(date +%s) - started ))s)"
  tars+=("$out")
done

if [ -n "$address" ]; then
  for t in "${tars[@]}"; do
    imported=$(ctr --address "$address" -n k8s.io images import "$t" | awk '{ print $2 }' | tr '\n' ' ')
    say "imported ${imported% } from $t"
  done
fi
printf '%s\n' "${tars[@]}"
