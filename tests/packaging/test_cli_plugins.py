"""The operator's CLI and its plugin contract: entry point group `rke2fleet.commands`, each
entry point a `register(subparsers) -> None`. The sandbox distribution adds `sandbox` and `demo`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from rke2fleet import cli

OPERATOR_SRC = Path(__file__).resolve().parents[2] / "operator"


def _run(code: str, *python_flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *python_flags, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_sandbox_declares_its_commands() -> None:
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group=cli.COMMANDS_GROUP)}
    assert declared == {"sandbox": "rke2fleet_sandbox.cli:register", "demo": "rke2fleet_sandbox.demo:register"}


def test_help_lists_the_plugins_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "rke2fleet", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "{crds,validate,run,plan,apply,export,demo,sandbox}" in result.stdout
    assert result.stderr == ""


def test_building_the_parser_imports_neither_kopf_nor_the_emulator() -> None:
    """Every invocation (`rke2fleet validate` too) loads the plugins: they must stay cheap."""
    code = (
        "import sys, json; from rke2fleet.cli import build_parser; build_parser()\n"
        "heavy = ('kopf', 'kmock', 'aiohttp', 'asyncssh', 'kubernetes', 'rke2fleet_sandbox.emulator')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_without_the_sandbox_installed_only_the_operators_commands() -> None:
    """No site-packages (-S) and only the operator's source on sys.path: no distribution declares
    `rke2fleet.commands` (the operator's CLI needs nothing outside the standard library for --help)."""
    code = (
        f"import sys; sys.path.insert(0, {str(OPERATOR_SRC)!r})\n"
        "from importlib.metadata import entry_points\n"
        "assert not list(entry_points(group='rke2fleet.commands'))\n"
        "from rke2fleet.cli import main\n"
        "sys.argv[0] = 'rke2fleet'; main(sys.argv[1:])\n"
    )
    shown = subprocess.run([sys.executable, "-S", "-c", code, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "{crds,validate,run,plan,apply,export}" in shown.stdout
    assert "sandbox" not in shown.stdout and "demo" not in shown.stdout
    refused = subprocess.run([sys.executable, "-S", "-c", code, "demo"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "invalid choice: 'demo'" in refused.stderr


def test_a_broken_plugin_is_skipped_and_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    group = cli.COMMANDS_GROUP
    broken = EntryPoint("broken", "rke2fleet_no_such_module:register", group)
    good = EntryPoint("good", "tests.packaging.test_cli_plugins:register_hello", group)
    monkeypatch.setattr(cli, "entry_points", lambda group: [good, broken] if group == cli.COMMANDS_GROUP else [])
    parser = cli.build_parser()
    assert "plugin broken (rke2fleet_no_such_module:register) skipped: ModuleNotFoundError" in capsys.readouterr().err
    args = parser.parse_args(["hello", "--name", "fleet"])
    assert args.func(args) == 0
    assert capsys.readouterr().out == "hello fleet\n"
    with pytest.raises(SystemExit):
        parser.parse_args(["broken"])


def register_hello(subparsers: cli.Subparsers) -> None:
    """A plugin as the contract describes it."""

    def hello(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 0

    p = subparsers.add_parser("hello", help="say hello")
    p.add_argument("--name", required=True)
    p.set_defaults(func=hello)
