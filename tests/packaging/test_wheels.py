"""The two wheels: the operator's (what the Dockerfile builds: pyproject.toml, README.md and
operator/ only) holds `rke2fleet/` and nothing of the test world; the sandbox's holds the world,
stand-ins included. `pytest -s` prints the operator wheel's file list."""

from __future__ import annotations

import configparser
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "sandbox" / "rke2fleet_sandbox" / "standins"
BUILD_LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
# Module or folder names of the test world that must never ship with the operator.
TEST_WORLD = re.compile(r"(^|/)(sandbox|standins|emulator|demo)[^/]*(/|\.py$|$)")


def _build_isolation_flags() -> list[str]:
    """Build in the venv when it has what pyproject's [build-system] asks for; otherwise let pip
    fetch setuptools and wheel into an isolated build environment (through the package index)."""
    if importlib.util.find_spec("wheel") is None:
        return []
    import setuptools

    return ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 77 else []


def _build_wheel(source: Path, out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *_build_isolation_flags(),
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def _entry_points(wheel: zipfile.ZipFile, dist_info: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    name = f"{dist_info}/entry_points.txt"
    if name in wheel.namelist():
        parser.read_string(wheel.read(name).decode())
    return parser


@pytest.fixture(scope="module")
def operator_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy holding exactly what the Dockerfile copies (no stale build/ in the tree)."""
    src = tmp_path_factory.mktemp("operator-src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "operator", src / "operator", ignore=BUILD_LEFTOVERS)
    return _build_wheel(src, tmp_path_factory.mktemp("operator-wheel"))


@pytest.fixture(scope="module")
def sandbox_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("sandbox-src") / "sandbox"
    shutil.copytree(REPO / "sandbox", src, ignore=BUILD_LEFTOVERS)
    return _build_wheel(src, tmp_path_factory.mktemp("sandbox-wheel"))


def test_the_operator_wheel_holds_the_operator_only(operator_wheel: Path) -> None:
    with zipfile.ZipFile(operator_wheel) as wheel:
        names = sorted(wheel.namelist())
        print(f"\n{operator_wheel.name}: {len(names)} files")
        for name in names:
            print(f"  {name}")
        dist_info = f"{operator_wheel.name.split('-')[0]}-{operator_wheel.name.split('-')[1]}.dist-info"
        entry_points = _entry_points(wheel, dist_info)
        metadata = Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
        license_text = wheel.read(f"{dist_info}/licenses/LICENSE").decode()
    assert operator_wheel.name.startswith("rke2fleet-0.1.0-")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert license_text == (REPO / "LICENSE").read_text() and "Apache License" in license_text
    assert {name.split("/")[0] for name in names} == {"rke2fleet", dist_info}
    for needed in ("__init__.py", "cli.py", "py.typed", "api/crdgen.py", "handlers/runner.py",
                   "hostaccess/pool.py", "reconcile/plan.py", "metrics/__init__.py"):
        assert f"rke2fleet/{needed}" in names, needed
    assert [name for name in names if TEST_WORLD.search(name)] == []
    assert [name for name in names if "rke2fleet_sandbox" in name or name.endswith(".sh")] == []
    assert entry_points.sections() == ["console_scripts"]  # declares no `rke2fleet.commands`
    assert dict(entry_points["console_scripts"]) == {"rke2fleet": "rke2fleet.cli:main"}


def test_the_sandbox_wheel_holds_the_world_and_its_standins(sandbox_wheel: Path) -> None:
    with zipfile.ZipFile(sandbox_wheel) as wheel:
        names = set(wheel.namelist())
        dist_info = "rke2fleet_sandbox-0.1.0.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
        entry_points = _entry_points(wheel, dist_info)
    assert sandbox_wheel.name.startswith("rke2fleet_sandbox-0.1.0-")
    assert {name.split("/")[0] for name in names} == {"rke2fleet_sandbox", dist_info}
    standins = {p.name for p in STANDINS.iterdir() if p.suffix in (".py", ".sh")}
    assert {"install.sh", "systemctl_query.sh", "rke2.py", "systemctl.py", "journalctl.py", "kubectl.py"} <= standins
    missing = sorted(name for name in standins if f"rke2fleet_sandbox/standins/{name}" not in names)
    assert missing == []
    for module in ("__init__.py", "py.typed", "cli.py", "demo.py", "demo_operator.py", "demo_view.py",
                   "world.py", "hosts.py", "emulator.py", "installer.py", "loadbalancer.py"):
        assert f"rke2fleet_sandbox/{module}" in names, module
    assert not any(name.startswith("rke2fleet/") for name in names)
    assert dict(entry_points["rke2fleet.commands"]) == {
        "sandbox": "rke2fleet_sandbox.cli:register",
        "demo": "rke2fleet_sandbox.demo:register",
    }
    requires = {re.split(r"[ <>=!~;\[]", req, maxsplit=1)[0].lower() for req in metadata.get_all("Requires-Dist", [])}
    assert {"rke2fleet", "kmock", "aiohttp", "pyyaml"} <= requires
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["License-Expression"] == "Apache-2.0"


def test_the_operator_wheel_alone_has_no_sandbox_commands(operator_wheel: Path, tmp_path: Path) -> None:
    """Installed without the sandbox (no site-packages: -S), `rke2fleet --help` lists run, crds and
    validate only; with the sandbox wheel next to it, both plugin entry points are found."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target),
         str(operator_wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); sys.argv[0] = 'rke2fleet'\n"
        "from rke2fleet.cli import main; sys.exit(main(sys.argv[1:]))\n"
    )
    shown = subprocess.run([sys.executable, "-S", "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "{crds,validate,run,plan,apply,export}" in shown.stdout
    assert "sandbox" not in shown.stdout and "demo" not in shown.stdout and shown.stderr == ""


def test_the_license_is_the_full_apache_2_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    for section in ("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "9. Accepting Warranty or "
                    "Additional Liability.", "END OF TERMS AND CONDITIONS", "APPENDIX: How to apply"):
        assert section in text, section
    assert len(text.splitlines()) == 202
