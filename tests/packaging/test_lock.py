"""The image's lock files agree with pyproject.toml (checked without the network; `bash .ci/lock.sh`
regenerates them): requirements.lock pins exactly the operator's runtime dependencies and what they
pull in, each with hashes; requirements-build.lock pins the [build-system] backend."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SANDBOX_PYPROJECT = tomllib.loads((REPO / "sandbox" / "pyproject.toml").read_text())
FROM_PYPROJECT = "rke2fleet (pyproject.toml)"
# The image's interpreter and platform (python:3.11-slim-bookworm), for the markers of requirements.
IMAGE_ENV = {"python_version": "3.11", "python_full_version": "3.11.16", "sys_platform": "linux",
             "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
             "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


@dataclass
class Pin:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[str, Pin]:
    """uv/pip-compile output: `name==version \\`, `--hash=sha256:…` lines, `# via` annotations."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw.startswith((" ", "#")):
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(\s*;[^\\]*)?\s*\\?", line)
            assert match, f"not an exact pin: {line!r}"
            current = Pin(canonicalize_name(match.group(1)), match.group(2))
            assert current.name not in pins, f"{current.name} pinned twice"
            pins[current.name] = current
            in_via = False
        elif current is not None and line.startswith("--hash="):
            current.hashes.append(line.removeprefix("--hash=").rstrip(" \\"))
        elif current is not None and line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.append(rest)
        elif current is not None and in_via and line.startswith("#   "):
            current.via.append(line.removeprefix("#").strip())
    return pins


RUNTIME = parse_lock((REPO / "requirements.lock").read_text())
BUILD = parse_lock((REPO / "requirements-build.lock").read_text())
DEPENDENCIES = [Requirement(dep) for dep in PYPROJECT["project"]["dependencies"]]


@pytest.mark.parametrize("pins", [RUNTIME, BUILD], ids=["requirements.lock", "requirements-build.lock"])
def test_every_pin_is_exact_and_hashed(pins: dict[str, Pin]) -> None:
    assert pins
    for pin in pins.values():
        assert pin.hashes, f"{pin.name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), pin.name
        assert pin.via, f"{pin.name}: no `# via` (regenerate with bash .ci/lock.sh)"


def test_every_runtime_dependency_is_locked_within_its_bounds() -> None:
    for req in DEPENDENCIES:
        name = canonicalize_name(req.name)
        assert name in RUNTIME, f"{req.name} is in pyproject.toml but not in requirements.lock: bash .ci/lock.sh"
        pin = RUNTIME[name]
        assert req.specifier.contains(pin.version, prereleases=True), (
            f"requirements.lock has {name}=={pin.version}, pyproject.toml wants {req}: bash .ci/lock.sh")
        assert FROM_PYPROJECT in pin.via, name


def test_the_lock_holds_nothing_the_operator_does_not_pull_in() -> None:
    """Direct pins are exactly pyproject's dependencies; every other pin is wanted by a locked one."""
    direct = {canonicalize_name(r.name) for r in DEPENDENCIES}
    assert {name for name, pin in RUNTIME.items() if FROM_PYPROJECT in pin.via} == direct
    for pin in RUNTIME.values():
        for parent in pin.via:
            assert parent == FROM_PYPROJECT or canonicalize_name(parent) in RUNTIME, (pin.name, parent)
    reached, todo = set(direct), list(direct)
    children: dict[str, set[str]] = {}
    for pin in RUNTIME.values():
        for parent in pin.via:
            children.setdefault(canonicalize_name(parent), set()).add(pin.name)
    while todo:
        for child in children.get(todo.pop(), set()) - reached:
            reached.add(child)
            todo.append(child)
    assert reached == set(RUNTIME)


def test_nothing_of_the_sandbox_or_the_tests_is_locked() -> None:
    sandbox = {canonicalize_name(Requirement(r).name) for r in SANDBOX_PYPROJECT["project"]["dependencies"]}
    tools = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    for name in {"rke2fleet", "rke2fleet-sandbox", "kmock", "pytest", "mypy", "ruff", "hypothesis"}:
        assert name in sandbox | tools | {"rke2fleet-sandbox"}
        assert name not in RUNTIME, f"{name} is the sandbox's or a test tool, not the operator's"


def test_what_the_installed_locked_versions_require_is_locked() -> None:
    """Where this venv has a package at its locked version, its own requirements (for the image's
    platform) are in the lock too, within their bounds: a lock edited by hand would miss some."""
    checked = 0
    for pin in RUNTIME.values():
        try:
            dist = distribution(pin.name)
        except PackageNotFoundError:
            continue
        if dist.version != pin.version:
            continue
        checked += 1
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(IMAGE_ENV):
                continue
            name = canonicalize_name(req.name)
            assert name in RUNTIME, f"{pin.name}=={pin.version} requires {req}, which is not locked"
            assert req.specifier.contains(RUNTIME[name].version, prereleases=True), (pin.name, str(req))
    assert checked >= 1


def test_the_build_lock_satisfies_the_build_system() -> None:
    for line in PYPROJECT["build-system"]["requires"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in BUILD, f"{req.name} of [build-system] is not in requirements-build.lock: bash .ci/lock.sh"
        assert req.specifier.contains(BUILD[name].version, prereleases=True), (str(req), BUILD[name].version)


def test_the_parser_reads_what_it_should() -> None:
    pins = parse_lock(
        "# header\n"
        "foo-bar==1.2 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "    # via\n    #   rke2fleet (pyproject.toml)\n    #   baz\n"
        "baz==3.0 \\\n    --hash=sha256:" + "c" * 64 + "\n    # via rke2fleet (pyproject.toml)\n"
    )
    assert pins["foo-bar"] == Pin("foo-bar", "1.2", ["sha256:" + "a" * 64, "sha256:" + "b" * 64],
                                  [FROM_PYPROJECT, "baz"])
    assert pins["baz"].via == [FROM_PYPROJECT]
    with pytest.raises(AssertionError):
        parse_lock("foo>=1.0\n")
