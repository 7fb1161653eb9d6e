"""The Dockerfile passes hadolint and has the shape issues 6 and 17 ask for (no docker engine here to build it):
multi-stage on a digest-pinned base, dependencies only from the hashed locks, no pip in the final stage."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from deploy_testlib import REPO, tool

DOCKERFILE = REPO / "Dockerfile"


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(path)],
        capture_output=True, text=True, timeout=60,
    )


def _stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_hadolint_is_clean() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\nUSER root\n")
    result = _hadolint(bad)
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert result.returncode != 0 and {"DL3007", "DL3008"} <= codes


BASE = re.compile(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}")


def test_multi_stage_on_one_base_pinned_by_digest() -> None:
    builder, final = _stages()
    assert re.fullmatch(rf"FROM {BASE.pattern} AS builder", builder[0]), builder[0]
    assert re.fullmatch(rf"FROM {BASE.pattern}", final[0]), final[0]
    # Same interpreter in both: the venv's python links to the base image's /usr/local/bin/python3.11.
    assert builder[0].split()[1] == final[0].split()[1]
    assert "refresh" in DOCKERFILE.read_text().lower()  # the comment says how the digest is renewed


def test_builder_installs_only_what_the_locks_name_with_hashes() -> None:
    builder = _stages()[0]
    assert "COPY requirements-build.lock requirements.lock ./" in builder
    run = " ".join(line for line in builder if line.startswith("RUN "))
    installs = [part.strip() for part in re.split(r"&&|RUN ", run) if " install " in part]
    assert installs, run
    for install in installs:
        assert "--no-deps" in install and "--no-cache-dir" in install, install
        assert "--require-hashes" in install or re.search(r" /wheels/rke2fleet-\S*\.whl$", install), install
    locked = [i for i in installs if "--require-hashes" in i]
    assert {i.split()[-1] for i in locked} == {"requirements.lock", "requirements-build.lock"}
    # The operator's own wheel is built with the locked backend, not one fetched by build isolation.
    assert re.search(r"pip wheel .*--no-deps --no-build-isolation", run)
    # The venv the final stage takes leaves the builder without pip.
    assert re.search(r"/opt/rke2fleet/bin/python -m pip uninstall --yes pip setuptools", run)


def test_final_stage_runs_as_numeric_user_without_build_tools() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and re.fullmatch(r"10001(:10001)?", users[-1])
    run_lines = " ".join(line for line in final if line.startswith("RUN "))
    for build_tool in ("gcc", "build-essential", "make", "apt-get install", "python3-dev", "pip install"):
        assert build_tool not in run_lines
    # Nothing but the venv comes from the builder; the base image's pip is removed.
    assert [line for line in final if line.startswith("COPY")] == ["COPY --from=builder /opt/rke2fleet /opt/rke2fleet"]
    assert "pip uninstall --yes --no-input pip" in run_lines and "ensurepip" in run_lines
    assert any(line.startswith("ENV ") and "PATH=/opt/rke2fleet/bin:$PATH" in line for line in final)
    assert 'ENTRYPOINT ["rke2fleet", "run"]' in final


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "**/__pycache__", "sandbox"):
        assert entry in ignored
    for needed in ("operator", "pyproject.toml", "requirements.lock", "requirements-build.lock", "LICENSE"):
        assert needed not in ignored


def test_the_image_builds_the_operator_only() -> None:
    """The sandbox (sandbox/, its own distribution) never reaches the image: only the operator's
    files are copied (tests/packaging checks what its wheel holds)."""
    builder = _stages()[0]
    copied = [line.split()[1:-1] for line in builder if line.startswith("COPY ")]
    assert copied == [
        ["requirements-build.lock", "requirements.lock"], ["pyproject.toml", "README.md*", "LICENSE"], ["operator/"],
    ]
