#!/usr/bin/env bash
# The README's commands on a truly fresh machine: a minimal Debian 12 (debootstrap --variant=minbase
# bookworm: no python3, make, sudo, ssh or ca-certificates), with a copy of this working tree in
# /root/rke2fleet, entered (pivot_root) in mount and PID namespaces of its own (the processes it starts
# end with it) with an empty environment, as root.
#   1. `./dev test $FRESH_TESTS` as the README says, bootstrap included (apt, venv, pip: all for
#      real, from the network), then a short part of the suite (default: tests/api).
#   2. unless FRESH_EXTRA=0: in a network namespace of its own (the sandbox hosts' 127.x addresses
#      cannot meet anyone else's), `./dev test $FRESH_EXTRA_TESTS` (tests that start sandbox sshd
#      hosts and the operator) and `./dev demo`.
# .ci/run runs it (about 2 minutes, most of it downloads; 40 s more when the minbase tarball is not
# cached yet). As root:
#   bash .ci/fresh-rootfs.sh                     # FRESH_TESTS='tests/api tests/reconcile' to widen the smoke
#   FRESH_KEEP=1 bash .ci/fresh-rootfs.sh        # keep the root filesystem (its path is printed)
# The minbase root filesystem is cached as a tarball in $FRESH_CACHE (default /var/cache/rke2fleet-fresh;
# FRESH_REFRESH=1 builds it anew); the mirror is the first one apt is configured with here.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
[ "$(id -u)" = 0 ] || { echo "fresh-rootfs: run as root (debootstrap, pivot_root, namespaces)" >&2; exit 1; }

SUITE=bookworm
ARCH=$(dpkg --print-architecture)
CACHE=${FRESH_CACHE:-/var/cache/rke2fleet-fresh}
TARBALL=$CACHE/$SUITE-minbase-$ARCH.tar.gz
FRESH_TESTS=${FRESH_TESTS:-tests/api}
FRESH_EXTRA=${FRESH_EXTRA:-1}
FRESH_EXTRA_TESTS=${FRESH_EXTRA_TESTS:-tests/hostaccess/test_hostkeys.py tests/e2e/test_bringup.py::test_single_server_generated_token_and_kubeconfig}
mirror_here() {  # the first Debian mirror apt is configured with on this machine (not the security one)
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    awk '/^URIs:/ || /^deb / { print $2 }' | grep -v security | head -n1 || true
}
MIRROR=${FRESH_MIRROR:-$(mirror_here)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

t0=$(date +%s)
say() { echo "[fresh $(( $(date +%s) - t0 ))s] $*"; }

command -v debootstrap >/dev/null || {
  say "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

ROOT=$(mktemp -d "${FRESH_TMP:-/var/tmp}/rke2fleet-fresh.XXXXXX")
chmod 755 "$ROOT"  # a root directory every user can enter (apt's _apt, the sandbox's sudo user)
cleanup() {
  if [ "${FRESH_KEEP:-0}" = 1 ]; then say "root filesystem kept: $ROOT"; return; fi
  # The mounts lived in the namespace that ended with the run; refuse to delete through one anyway.
  if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
    echo "fresh-rootfs: mounts left under $ROOT; not deleting it" >&2
    return
  fi
  rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT

if [ -f "$TARBALL" ] && [ "${FRESH_REFRESH:-0}" != 1 ]; then
  say "unpacking the cached $SUITE minbase ($TARBALL)"
  tar -xzf "$TARBALL" -C "$ROOT"
else
  say "debootstrap --variant=minbase $SUITE from $MIRROR"
  debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
    tail -n 30 "$ROOT.debootstrap.log" >&2
    exit 1
  }
  rm -f "$ROOT.debootstrap.log"
  mkdir -p "$CACHE"
  tar -czf "$TARBALL.tmp" -C "$ROOT" . && mv "$TARBALL.tmp" "$TARBALL"
  say "cached as $TARBALL"
fi
chmod 755 "$ROOT"
for tool in python3 make sudo sshd curl; do  # what a fresh machine does not have
  if chroot "$ROOT" sh -c "command -v $tool" >/dev/null 2>&1; then echo "fresh-rootfs: $tool is in minbase?" >&2; exit 1; fi
done
say "fresh root: $(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME"), Debian $(cat "$ROOT/etc/debian_version"), $(chroot "$ROOT" dpkg-query -W | wc -l) packages, no python3/make/sudo/sshd/curl"

# What makes the root filesystem a machine, as the Debian installer or a cloud image leaves it:
# a hostname and /etc/hosts (debootstrap writes neither; the sandbox hosts bind their own over it).
echo fresh-debian >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tfresh-debian\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
# This root runs no init: services that packages would start (ssh, prometheus) are not started, as in a
# container. Everything else is as debootstrap left it.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# Where this machine's HTTPS goes through a proxy with a CA of its own (PIP_CERT or SSL_CERT_FILE set
# here), pip in the fresh root is given that bundle, as its own file: the one thing a fresh machine on
# an ordinary network would not need. apt fetches over plain http (signed Release files).
pip_cert=()
host_ca=${FRESH_CA:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
  cp "$host_ca" "$ROOT/etc/fresh-host-ca.pem"
  pip_cert=(PIP_CERT=/etc/fresh-host-ca.pem)
  say "pip in the fresh root trusts this network's CA bundle ($host_ca, as PIP_CERT)"
fi
# The working tree as a clone would have it (without the venv, caches and build leftovers).
mkdir -p "$ROOT/root/rke2fleet"
tar -C "$REPO" --exclude-vcs --exclude=./.venv --exclude=./.sandbox --exclude='__pycache__' \
  --exclude='*.egg-info' --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache \
  --exclude=.hypothesis --exclude=./build --exclude=./dist -cf - . | tar -C "$ROOT/root/rke2fleet" -xf -

inside() {  # inside NET SCRIPT: run SCRIPT (sh) in the fresh root, NET=shared|own network namespace
  local net=() script=$2
  [ "$1" = own ] && net=(--net)
  # pivot_root rather than a bare chroot: the sandbox enters its hosts' mount namespaces (nsenter), which
  # puts a process at the root of the namespace, and that root must be the fresh one, as on a machine.
  unshare --mount --pid --fork --propagation private "${net[@]}" -- /bin/sh -ec '
    root=$1 script=$2; shift 2
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
    mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
    mount -t tmpfs -o mode=755 tmpfs "$root/run"
    cd "$root"
    pivot_root . mnt
    exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 TERM=dumb "$@" /bin/sh -ec "umount -l /mnt; cd /root/rke2fleet; $script"
  ' sh "$ROOT" "$script" ${pip_cert[@]+"${pip_cert[@]}"}
}

say "1/2: ./dev test $FRESH_TESTS   (bootstrap from nothing, then the tests)"
inside shared "./dev test $FRESH_TESTS"
say "python in the venv: $(chroot "$ROOT" /root/rke2fleet/.venv/bin/python -VV | head -n1)"
if [ "$FRESH_EXTRA" != 0 ]; then
  say "2/2: own network namespace: ./dev test $FRESH_EXTRA_TESTS; ./dev demo"
  inside own "ip link set lo up; ./dev test $FRESH_EXTRA_TESTS; ./dev demo"
fi
say "done"
