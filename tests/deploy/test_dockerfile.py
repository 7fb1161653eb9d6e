"""The Dockerfile passes hadolint and has the shape issue 6 asks for (no docker engine here to build it)."""

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


def test_multi_stage_slim_bases() -> None:
    builder, final = _stages()
    assert builder[0] == "FROM python:3.11-slim AS builder"
    assert final[0] == "FROM python:3.11-slim"
    assert any("pip wheel" in line for line in builder)


def test_final_stage_runs_as_numeric_user_without_build_tools() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and re.fullmatch(r"10001(:10001)?", users[-1])
    run_lines = " ".join(line for line in final if line.startswith("RUN "))
    for build_tool in ("gcc", "build-essential", "make", "apt-get install", "python3-dev"):
        assert build_tool not in run_lines
    assert "COPY --from=builder /wheels /wheels" in final
    assert 'ENTRYPOINT ["rke2fleet", "run"]' in final


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "**/__pycache__", "sandbox"):
        assert entry in ignored
    for needed in ("operator", "pyproject.toml"):
        assert needed not in ignored


def test_the_image_builds_the_operator_only() -> None:
    """The sandbox (sandbox/, its own distribution) never reaches the image: only the operator's
    files are copied (tests/packaging checks what its wheel holds)."""
    builder = _stages()[0]
    copied = [line.split()[1:-1] for line in builder if line.startswith("COPY ")]
    assert copied == [["pyproject.toml", "README.md*"], ["operator/"]]
