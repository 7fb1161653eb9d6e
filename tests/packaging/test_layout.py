"""The operator and the sandbox are two distributions: nothing in the operator package reaches
into the sandbox (it is in neither the operator's wheel nor its image); the sandbox lives in sandbox/."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPERATOR_PKG = REPO / "operator" / "rke2fleet"
SANDBOX_PKG = REPO / "sandbox" / "rke2fleet_sandbox"
FORBIDDEN = "rke2fleet_sandbox"


def _names_the_sandbox(name: str) -> bool:
    return name == FORBIDDEN or name.startswith((FORBIDDEN + ".", FORBIDDEN + ":"))


def sandbox_references(source: str, label: str) -> list[str]:
    """Imports of the sandbox (anywhere, also inside functions or TYPE_CHECKING), and string
    constants naming it (`importlib.import_module(...)`, `find_spec(...)`, `python -m ...`)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=label)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = node.value.split()
        found += [f"{label}:{node.lineno}: {name}" for name in names if _names_the_sandbox(name)]
    return found


def test_nothing_in_the_operator_package_imports_the_sandbox() -> None:
    sources = sorted(OPERATOR_PKG.rglob("*.py"))
    assert len(sources) > 20
    offenders = [
        hit for path in sources for hit in sandbox_references(path.read_text(), str(path.relative_to(REPO)))
    ]
    assert offenders == []


def test_the_check_would_catch_an_import() -> None:
    source = (
        "import rke2fleet_sandbox\n"
        "from rke2fleet_sandbox.world import Sandbox\n"
        "def f():\n    from rke2fleet_sandbox import hosts\n"
        "MOD = 'rke2fleet_sandbox.emulator'\n"
        "from rke2fleet_sandboxes import other  # another name: not a hit\n"
        "from rke2fleet import cli  # the operator itself: not a hit\n"
    )
    hits = sorted(hit.split(":", 1)[1] for hit in sandbox_references(source, "probe.py"))
    assert hits == [
        "1: rke2fleet_sandbox", "2: rke2fleet_sandbox.world", "4: rke2fleet_sandbox", "5: rke2fleet_sandbox.emulator",
    ]


def test_the_sandbox_and_the_demo_left_the_operator_package() -> None:
    assert not (OPERATOR_PKG / "sandbox").exists()
    assert not list(OPERATOR_PKG.glob("demo*.py"))
    for name in ("demo.py", "demo_operator.py", "demo_view.py", "cli.py", "world.py", "emulator.py", "py.typed"):
        assert (SANDBOX_PKG / name).is_file(), name
    for name in ("install.sh", "systemctl_query.sh", "rke2.py", "systemctl.py", "kubectl.py"):
        assert (SANDBOX_PKG / "standins" / name).is_file(), name
