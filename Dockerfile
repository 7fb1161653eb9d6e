# syntax=docker/dockerfile:1
# rke2fleet operator image: docker build -t rke2fleet:0.1.0 .

# --- builder: build wheels for the project and its dependencies --------------
# Only the operator: sandbox/ (rke2fleet-sandbox, the test/demo world) is not copied.
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels .

# --- final: only the wheels, no compilers, numeric non-root user --------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp
# The user is numeric so the kubelet can verify runAsNonRoot without /etc/passwd lookups.
RUN groupadd --system --gid 10001 rke2fleet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin rke2fleet
COPY --from=builder /wheels /wheels
# Every wheel was resolved and pinned by the builder stage; no index is consulted here.
RUN pip install --no-index /wheels/*.whl \
    && rm -rf /wheels
USER 10001:10001
EXPOSE 8000 8080
ENTRYPOINT ["rke2fleet", "run"]
CMD ["--all-namespaces"]
