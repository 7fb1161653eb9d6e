"""facts.py: parsing the one facts command's output (reference §2, §7)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rke2fleet.reconcile.facts import FACTS_SCRIPT, FactsError, parse_facts
from tests.reconcile.builders import V35, V36, data_bin_link, facts_output, host_facts

RC = "v1.36.4-rc1+rke2r1"


@pytest.mark.parametrize("version", [V36, V35, RC, "v1.33.13+rke2r2"])
def test_installed_version_from_rke2_version_line(version: str) -> None:
    assert host_facts(version=version).installed_version == version


def test_no_binary_means_not_installed() -> None:
    f = host_facts(version=None, server=("disabled", "inactive"))
    assert f.installed_version is None
    assert f.running_version is None


def test_garbage_version_line_is_not_a_version() -> None:
    out = facts_output().replace(f"rke2 version {V36}", "rke2: cannot execute binary file")
    assert parse_facts(out).installed_version is None


@pytest.mark.parametrize(
    ("enabled", "active", "is_enabled", "is_active"),
    [
        ("enabled", "active", True, True),
        ("enabled", "activating", True, False),
        ("enabled", "failed", True, False),
        ("disabled", "inactive", False, False),
        ("masked", "inactive", False, False),
        ("", "", False, False),
    ],
)
def test_unit_states(enabled: str, active: str, is_enabled: bool, is_active: bool) -> None:
    f = host_facts(server=(enabled, active))
    assert f.server.enabled is is_enabled
    assert f.server.is_active is is_active
    assert f.server.active == (active or "unknown")
    assert f.unit("server") is f.server
    assert f.unit("agent") is f.agent


@pytest.mark.parametrize(
    ("server", "agent", "running"),
    [
        (("enabled", "active"), ("disabled", "inactive"), V35),
        (("disabled", "inactive"), ("enabled", "active"), V35),
        (("enabled", "activating"), ("disabled", "inactive"), None),
        (("enabled", "failed"), ("disabled", "inactive"), None),
        (("enabled", "inactive"), ("disabled", "inactive"), None),
    ],
)
def test_running_version_only_while_a_unit_is_active(
    server: tuple[str, str], agent: tuple[str, str], running: str | None
) -> None:
    # Installed v1.36 but RKE2 last started v1.35: a restart is pending, it still runs v1.35.
    f = host_facts(version=V36, running=V35, server=server, agent=agent)
    assert f.installed_version == V36
    assert f.running_version == running


@pytest.mark.parametrize(
    ("link", "running"),
    [
        (data_bin_link(V36), V36),
        (data_bin_link(RC), RC),
        ("data/v1.36.3-rke2r1-5c2f9e1ab0d3/bin", V36),  # relative readlink
        ("", None),
        ("/somewhere/else/bin", None),
    ],
)
def test_running_version_from_data_bin_link(link: str, running: str | None) -> None:
    assert host_facts(data_bin=link).running_version == running


def test_other_fields() -> None:
    f = host_facts(config_sha256="ab" * 32)
    assert f.config_sha256 == "ab" * 32
    assert (f.os, f.arch) == ("debian 12", "x86_64")
    assert host_facts().config_sha256 is None
    assert not host_facts().token_present
    extra = parse_facts("token_present=yes\nkubeconfig_sha256=" + "ab" * 32 + "\n" + facts_output())
    assert extra.token_present and extra.kubeconfig_sha256 == "ab" * 32


@pytest.mark.parametrize(
    "stdout",
    [
        "",
        facts_output(end=False),
        facts_output(end=False) + "facts_end=0\n",
        "sudo: a password is required\n",
    ],
)
def test_incomplete_output_is_a_facts_error(stdout: str) -> None:
    with pytest.raises(FactsError):
        parse_facts(stdout)


# `systemctl show -p UnitFileState -p ActiveState UNIT` as systemd prints it (its own order).
FAKE_SYSTEMCTL = """#!/bin/sh
[ "$1" = show ] || exit 1
for u; do :; done
case "$u" in
  rke2-server) printf 'ActiveState=active\\nUnitFileState=enabled\\n' ;;
  *) printf 'ActiveState=inactive\\nUnitFileState=disabled\\n' ;;
esac
"""


def test_facts_script_output_parses(tmp_path: Path) -> None:
    # The real script on this machine (no RKE2 here), with systemctl and readlink stood in on PATH:
    # the script's output format and the parser agree.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "readlink").write_text(f"#!/bin/sh\necho {data_bin_link(V36)}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run = subprocess.run(["sh", "-s"], input=FACTS_SCRIPT, text=True, capture_output=True, env=env, timeout=20)
    f = parse_facts(run.stdout)
    assert f.server.enabled and f.server.is_active
    assert not f.agent.enabled and f.agent.active == "inactive"
    assert f.running_version == V36
    assert f.arch == os.uname().machine
