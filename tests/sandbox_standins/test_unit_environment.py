"""A unit's environment as systemd builds it: the EnvironmentFile= lines of rke2-server/rke2-agent
(``-/etc/default/%N``, ``-/etc/sysconfig/%N``, the tarball's ``%N.env``), read at every start; never the
environment of whoever ran ``systemctl start``. The proxy settings reach the rke2 process."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from rke2fleet_sandbox.standins import unitstate
from tests.sandbox_standins.hosthelpers import installed_server, start


def _supervisor_module():
    """standins/unitsupervisor.py imports its siblings by their bare names, as the shim runs it."""
    standins = str(Path(unitstate.__file__).parent)
    sys.path.insert(0, standins)
    try:
        return importlib.import_module("rke2fleet_sandbox.standins.unitsupervisor")
    finally:
        sys.path.remove(standins)


unitsupervisor = _supervisor_module()

PROXY = ("HTTP_PROXY=http://proxy.site:3128\nHTTPS_PROXY=http://proxy.site:3128\n"
         "NO_PROXY=127.0.0.0/8,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local\n")


def rke2_environ(host, role: str = "server") -> dict[str, str]:
    status = json.loads(host.run(f"cat /run/rke2fleet/units/rke2-{role}.service/status.json").stdout)
    raw = host.run(f"cat /proc/{status['mainPid']}/environ").stdout
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_proxy_environment_reaches_the_rke2_process(installer, make_host):
    host = installed_server(installer, make_host, "env-a")
    host.run(f"mkdir -p /etc/default && cat > /etc/default/rke2-server <<'EOF'\n# proxy\n{PROXY}EOF", check=True)
    assert host.run("FROM_MY_SHELL=1 HTTP_PROXY=http://wrong:1 systemctl start rke2-server", timeout=60).returncode == 0
    env = rke2_environ(host)
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://proxy.site:3128"
    assert env["NO_PROXY"] == "127.0.0.0/8,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local"
    assert env["HOME"] == "/root"  # from /usr/local/lib/systemd/system/rke2-server.env
    assert env["PATH"] == unitsupervisor.DEFAULT_PATH and "FROM_MY_SHELL" not in env
    assert "NOTIFY_FILE" in env
    # /etc/sysconfig comes after /etc/default: it wins; files are read again at every start
    host.run("mkdir -p /etc/sysconfig && printf 'HTTPS_PROXY=\"http://other.site:8080\"\\n' "
             "> /etc/sysconfig/rke2-server", check=True)
    assert host.run("systemctl restart rke2-server", timeout=60).returncode == 0
    env = rke2_environ(host)
    assert env["HTTPS_PROXY"] == "http://other.site:8080" and env["HTTP_PROXY"] == "http://proxy.site:3128"
    host.run("rm /etc/default/rke2-server /etc/sysconfig/rke2-server", check=True)
    assert host.run("systemctl restart rke2-server", timeout=60).returncode == 0
    assert "HTTP_PROXY" not in rke2_environ(host)


def test_missing_required_environment_file_fails_the_unit(installer, make_host):
    host = installed_server(installer, make_host, "env-b")
    required = "s|^EnvironmentFile=-/etc/default/%N|EnvironmentFile=/etc/default/%N|"
    host.run(f"mkdir -p /etc/systemd/system && sed '{required}' /usr/local/lib/systemd/system/rke2-server.service "
             "> /etc/systemd/system/rke2-server.service", check=True)
    assert start(host).returncode != 0
    log = host.run("journalctl -u rke2-server").stdout
    assert "rke2-server.service: Failed to load environment files: No such file or directory" in log
    assert host.run("systemctl is-active rke2-server").stdout.strip() == "failed"


@pytest.mark.parametrize("line, expected", [
    ("A=1", {"A": "1"}), ('B="two words"', {"B": "two words"}), ("C='x y'", {"C": "x y"}),
    ("  D = spaced ", {"D": "spaced"}), ("# E=1", {}), ("; F=1", {}), ("no-assignment", {}),
    ('G="with \\"quote\\""', {"G": 'with "quote"'}),
])
def test_environment_file_lines(tmp_path, line, expected):
    path = tmp_path / "env"
    path.write_text(line + "\n")
    assert unitsupervisor.read_environment_file(str(path)) == expected


def test_unit_environment_order_and_specifiers(tmp_path):
    (tmp_path / "rke2-agent").write_text("X=file\nY=file\n")
    entries = [("Environment", 'X=unit "Z=with space" U=%n'), ("EnvironmentFile", f"-{tmp_path}/%N"),
               ("EnvironmentFile", f"-{tmp_path}/missing-%N")]
    env = unitsupervisor.unit_environment("rke2-agent.service", entries, {"RKE2FLEET_UNITS_DIR": "/u", "LANG": "x"})
    assert env == {"RKE2FLEET_UNITS_DIR": "/u", "PATH": unitsupervisor.DEFAULT_PATH, "X": "file", "Y": "file",
                   "Z": "with space", "U": "rke2-agent.service"}
    with pytest.raises(FileNotFoundError):
        unitsupervisor.unit_environment("rke2-agent.service", [("EnvironmentFile", f"{tmp_path}/nope")], {})
