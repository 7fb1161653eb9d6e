#!/usr/bin/env bash
# Regenerates the image's lock files from pyproject.toml (`make lock`):
#   requirements.lock        the operator's runtime dependencies (not the sandbox's, not the test tools),
#                            every one pinned with the sha256 of each of its files on the index
#   requirements-build.lock  the build backend of [build-system] (setuptools, wheel), likewise
# The Dockerfile installs both with `pip install --require-hashes --no-deps`. Kept pins stay as they are
# unless pyproject.toml asks for others; `bash .ci/lock.sh --upgrade` moves every pin to the newest release.
# The target is the image's interpreter: CPython 3.11 on Debian 12 (glibc 2.36); the hashes cover every
# file of a pinned release, so an arm64 build installs from the same lock.
# tests/packaging/test_lock.py checks the locks against pyproject.toml without the network.
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade=()
[ "${1:-}" = --upgrade ] && upgrade=(--upgrade)

UV=${UV:-$(command -v uv || true)}
if [ -z "$UV" ]; then  # uv resolves and hashes; kept in a tool venv of its own, outside the project's venv
  tools=${XDG_CACHE_HOME:-$HOME/.cache}/rke2fleet/lock-tools
  [ -x "$tools/bin/uv" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q uv; }
  UV=$tools/bin/uv
fi

compile() {
  "$UV" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
    --index-url https://pypi.org/simple --custom-compile-command "bash .ci/lock.sh" ${upgrade[@]+"${upgrade[@]}"} "$@"
}

compile pyproject.toml --output-file requirements.lock
python3 - >"${TMPDIR:-/tmp}/rke2fleet-build-requires.in" <<'EOF'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))
EOF
compile "${TMPDIR:-/tmp}/rke2fleet-build-requires.in" --output-file requirements-build.lock
sed -i "s|${TMPDIR:-/tmp}/rke2fleet-build-requires.in|pyproject.toml [build-system] requires|" requirements-build.lock
rm -f "${TMPDIR:-/tmp}/rke2fleet-build-requires.in"
echo "lock: $(grep -c '^[A-Za-z]' requirements.lock) runtime and $(grep -c '^[A-Za-z]' requirements-build.lock) build packages pinned"
