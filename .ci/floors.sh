#!/usr/bin/env bash
# CI: the oldest versions pyproject.toml allows really work. A fresh venv gets exactly the `>=` floor of
# every runtime dependency of the operator (pyproject.toml) and of the sandbox (sandbox/pyproject.toml),
# through a constraints file made from those bounds (test tools and transitive dependencies resolve as
# usual), then runs the tests that need no large sandbox: API, reconcile, engine, standalone, metrics
# (with a real Prometheus), SSH against sandbox sshd hosts, Kopf against the API emulator, the
# certificate stand-in and one single-server bring-up by the operator.
#   bash .ci/floors.sh                 # as root (the SSH and bring-up tests start sandbox hosts)
#   FLOORS_PYTHON=python3.11 bash .ci/floors.sh    # another interpreter (default python3)
#   bash .ci/floors.sh --print         # only print the constraints
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${FLOORS_PYTHON:-python3}

constraints() {
  "$PY" - pyproject.toml sandbox/pyproject.toml <<'EOF'
import re, sys, tomllib
floors = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    for dep in deps:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", dep).group(0)
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in ("rke2fleet",):  # the sandbox's dependency on the operator itself
            continue
        floor = re.search(r">=\s*([0-9][^,;\s]*)", dep)
        if floor is None:
            sys.exit(f"{path}: {dep!r} has no >= lower bound")
        if floors.setdefault(key, floor.group(1)) != floor.group(1):
            sys.exit(f"{path}: {name} floor {floor.group(1)} differs from {floors[key]} in another pyproject.toml")
for key, version in sorted(floors.items()):
    print(f"{key}=={version}")
EOF
}

if [ "${1:-}" = --print ]; then constraints; exit 0; fi

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/rke2fleet-floors.XXXXXX")
trap 'rm -rf "$work"' EXIT
constraints >"$work/constraints.txt"
echo "floors: $(tr '\n' ' ' <"$work/constraints.txt")"
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q -c "$work/constraints.txt" -e '.[test]' -e ./sandbox
# What got installed is exactly the floor of each (a constraint pip could not honour fails above).
"$work/venv/bin/python" - "$work/constraints.txt" <<'EOF'
import sys
from importlib.metadata import version
bad = []
for line in open(sys.argv[1]):
    name, want = line.strip().split("==")
    if version(name) != want:
        bad.append(f"{name} {version(name)} installed, {want} wanted")
sys.exit("\n".join(bad) if bad else None)
EOF
echo "floors: installed in $(( $(date +%s) - start ))s"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 --dist load \
  tests/api tests/reconcile tests/engine tests/standalone tests/metrics tests/hostaccess tests/emulator \
  tests/sandbox_standins/test_certificates.py \
  tests/e2e/test_bringup.py::test_single_server_generated_token_and_kubeconfig
echo "floors: done in $(( $(date +%s) - start ))s"
