# syntax=docker/dockerfile:1
# rke2fleet operator image: docker build -t rke2fleet:0.1.0 .
#
# Base: the official python:3.11-slim-bookworm (CPython 3.11.16, Debian 12), pinned by the digest of its
# multi-platform index (amd64 and arm64), so a build is repeatable and a moved tag changes nothing.
# No Docker engine or registry is reachable where this was written: the digest is the one public
# Dockerfiles and an ADR of 2026-08-24 record for that tag, checked against the registry on that date.
# Refresh it (base image security updates) with
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
# and put the new digest on both FROM lines (tests/deploy/test_dockerfile.py wants them equal).

# --- builder: a venv with the locked dependencies and the operator --------------------------------------
# Only the operator: sandbox/ (rke2fleet-sandbox, the test/demo world) is not copied.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every package comes from a lock with hashes (bash .ci/lock.sh): pip refuses any file whose hash differs,
# and --no-deps keeps it from resolving anything the lock does not name.
COPY requirements-build.lock requirements.lock ./
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements-build.lock \
    && python -m venv /opt/rke2fleet \
    && /opt/rke2fleet/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md* LICENSE ./
COPY operator/ operator/
# The operator's wheel, built with the locked backend (no build isolation: nothing fetched), then installed
# alone; pip and setuptools leave the venv, which is all the final stage takes.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/rke2fleet/bin/pip install --no-cache-dir --no-deps /wheels/rke2fleet-*.whl \
    && /opt/rke2fleet/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/rke2fleet/bin/rke2fleet --version

# --- final: the venv only; no pip, no compilers, numeric non-root user ----------------------------------
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PATH=/opt/rke2fleet/bin:$PATH
# The user is numeric so the kubelet can verify runAsNonRoot without /etc/passwd lookups. The base image's
# own pip (and ensurepip's copy of it) go too: nothing is installed at run time.
RUN groupadd --system --gid 10001 rke2fleet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin rke2fleet \
    && python -m pip uninstall --yes --no-input pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.11/ensurepip
COPY --from=builder /opt/rke2fleet /opt/rke2fleet
USER 10001:10001
EXPOSE 8000 8080
ENTRYPOINT ["rke2fleet", "run"]
CMD ["--all-namespaces"]
