#!/usr/bin/env bash
# Installs what rke2fleet's demo and tests need on a fresh Debian machine (as root; `./dev demo|test` run it
# first): system packages through apt (only those missing; a minimal Debian 12 has none of them, not
# even python3), then a virtual environment with the project. .ci/fresh-rootfs.sh checks this on a
# debootstrap'd Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PKGS="openssh-server openssh-client curl ca-certificates prometheus iproute2 procps util-linux make sudo"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Python: any python3 >= 3.11 that can make a venv will do (Debian 12's is 3.11, and makes venvs only with
# python3-venv); without one, Debian's.
if ! command -v python3 >/dev/null 2>&1; then
  missing="$missing python3 python3-venv"
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing="$missing python3-venv"
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then echo "bootstrap: missing system packages:$missing (run as root)" >&2; exit 1; fi
  echo "bootstrap: installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: rke2fleet needs Python >= 3.11; python3 is $(python3 -V 2>&1)" >&2
  exit 1
fi
# Debian's prometheus package starts a service we do not want; the tests run their own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi
# (A venv without pip is what `python3 -m venv` leaves when python3-venv was missing: made anew.)
if [ ! -x "$VENV/bin/python" ] || [ ! -x "$VENV/bin/pip" ]; then
  python3 -m venv --clear "$VENV"
  rm -f "$VENV/.rke2fleet-installed"
fi
# The operator (with its test and bench extras) and the sandbox distribution (sandbox/: the test and
# demo world, `rke2fleet sandbox|demo`); reinstalled when either pyproject.toml changes.
stamp="$VENV/.rke2fleet-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ sandbox/pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing the project into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/pip" install -q -e '.[test,bench]' -e ./sandbox  # bench: the benchmark's smoke test runs in CI too
  touch "$stamp"
fi
