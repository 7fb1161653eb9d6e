"""The rooms of operator/rke2fleet keep to their walls (ARCHITECTURE.md): who may import whom,
and how large a module or a function may grow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "operator" / "rke2fleet"
MODULE_LINES = 400
FUNCTION_LINES = 80
# Over the limit on purpose; ARCHITECTURE.md says why.
LARGE_MODULES: set[str] = set()

# room -> modules it must not import (outside `if TYPE_CHECKING:`)
FORBIDDEN = {
    "handlers": ("rke2fleet.hostaccess", "asyncssh", "rke2fleet.reconcile"),
    "engine": ("kopf", "kubernetes", "rke2fleet.handlers", "rke2fleet.store"),
    "reconcile": ("kopf", "kubernetes", "rke2fleet.handlers", "rke2fleet.store", "rke2fleet.engine"),
    "api": ("kopf", "asyncssh", "rke2fleet.handlers", "rke2fleet.engine", "rke2fleet.reconcile"),
    "hostaccess": ("kopf", "kubernetes", "rke2fleet.handlers", "rke2fleet.engine", "rke2fleet.reconcile"),
    # the second driver: the engine without Kopf or a Kubernetes API
    "standalone": ("kopf", "kubernetes", "rke2fleet.handlers", "rke2fleet.store.kube", "rke2fleet.store.api"),
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported at run time (imports under `if TYPE_CHECKING:` are for the type checker)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_what_they_may(room: str) -> None:
    bad = []
    for path in (PACKAGE / room).rglob("*.py"):
        for name in runtime_imports(ast.parse(path.read_text())):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[room]):
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad, bad


def test_modules_and_functions_stay_small() -> None:
    big = []
    for path in modules():
        rel = str(path.relative_to(PACKAGE))
        source = path.read_text()
        if len(source.splitlines()) > MODULE_LINES and rel not in LARGE_MODULES:
            big.append(f"{rel}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    big.append(f"{rel}: {node.name} has {length} lines")
    assert not big, big


def test_the_limits_can_see_a_breach() -> None:
    """The checks above read real code: a forbidden import and a long function are found."""
    tree = ast.parse("import kopf\nif TYPE_CHECKING:\n    import asyncssh\n" + "def f():\n" + "    x = 1\n" * 90)
    assert "kopf" in runtime_imports(tree) and "asyncssh" not in runtime_imports(tree)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    assert (fn.end_lineno or 0) - fn.lineno + 1 > FUNCTION_LINES
