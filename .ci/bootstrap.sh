#!/usr/bin/env bash
# Installs what rke2fleet's demo and tests need on a fresh Debian machine (as root):
# system packages through apt (only those missing), then a virtual environment with the project.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PKGS="openssh-server openssh-client curl prometheus iproute2 procps util-linux make sudo"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then echo "bootstrap: missing system packages:$missing (run as root)" >&2; exit 1; fi
  echo "bootstrap: installing$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Debian's prometheus package starts a service we do not want; the tests run their own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The operator (with its test and bench extras) and the sandbox distribution (sandbox/: the test and
# demo world, `rke2fleet sandbox|demo`); reinstalled when either pyproject.toml changes.
stamp="$VENV/.rke2fleet-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ sandbox/pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/pip" install -q -e '.[test,bench]' -e ./sandbox  # bench: the benchmark's smoke test runs in CI too
  touch "$stamp"
fi
