"""The README's two commands are `./dev demo` and `./dev test`, a POSIX script that needs nothing
installed (make, python3-venv, sudo come from the bootstrap); make and CI call the same script; the
dependency floors CI installs are exactly pyproject's lower bounds. (.ci/fresh-rootfs.sh runs the
commands on a debootstrap'd Debian 12; that takes minutes and runs in CI, not here.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "dev"


def test_dev_is_executable_posix_sh() -> None:
    assert DEV.stat().st_mode & 0o111
    assert DEV.read_text().startswith("#!/bin/sh\n")
    for shell in ("dash", "sh"):  # Debian's /bin/sh is dash: no bashisms before bash is known to be there
        path = shutil.which(shell)
        if path is None:
            continue
        result = subprocess.run([path, "-n", str(DEV)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", [[], ["nonsense"]])
def test_dev_without_a_known_command_prints_usage_and_installs_nothing(args: list[str]) -> None:
    result = subprocess.run([str(DEV), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "./dev demo" in result.stderr and "./dev test" in result.stderr
    assert "bootstrap:" not in result.stdout + result.stderr


def test_readme_make_and_ci_use_the_same_entry() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(\S.*?)\s+#", quick_start.split("```sh", 1)[1].split("```", 1)[0], re.M)
    assert commands == ["./dev demo", "./dev test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("bootstrap", "demo", "test"):
        assert re.search(rf"^{target}:\n\t@sh \./dev {target}$", makefile, re.M), target
    ci = (REPO / ".ci" / "run").read_text()
    assert "sh ./dev bootstrap" in ci and "sh ./dev test" in ci
    assert "bash .ci/floors.sh" in ci and "bash .ci/fresh-rootfs.sh" in ci


def test_floors_are_the_lower_bounds_of_both_pyprojects() -> None:
    printed = subprocess.run(["bash", str(REPO / ".ci" / "floors.sh"), "--print"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
    floors = dict(line.split("==") for line in printed)
    wanted: dict[str, str] = {}
    for path in (REPO / "pyproject.toml", REPO / "sandbox" / "pyproject.toml"):
        for dep in tomllib.loads(path.read_text())["project"]["dependencies"]:
            req = Requirement(dep)
            if req.name == "rke2fleet":
                continue
            (lower,) = [spec.version for spec in req.specifier if spec.operator == ">="]
            wanted[canonicalize_name(req.name)] = lower
    assert floors == wanted
    assert {"kopf", "kubernetes", "asyncssh", "pydantic", "prometheus-client", "pyyaml"} <= set(floors)
