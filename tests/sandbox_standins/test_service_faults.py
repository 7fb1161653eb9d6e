"""Host fault switches and fatal configuration, seen through systemctl and journalctl."""

from __future__ import annotations

import json
import os
import time

from rke2fleet_sandbox import hostfaults
from tests.sandbox_standins.hosthelpers import V, installed_server


def test_fail_next_start_fails_once_then_the_unit_restarts(installer, make_host):
    host = installed_server(installer, make_host, "srv-f")
    hostfaults.fail_next_start(host.faults_dir)
    hostfaults.set_restart_delay(host.faults_dir, 0.5)
    out = host.run("systemctl start rke2-server", timeout=30)
    assert out.returncode == 1 and "journalctl -xeu rke2-server.service" in out.stderr
    assert not (host.faults_dir / "fail-next-start").exists()
    assert "injected start failure" in host.run("journalctl -u rke2-server -n 30").stdout
    deadline = time.monotonic() + 10
    while host.run("systemctl is-active rke2-server").stdout.strip() != "active":
        assert time.monotonic() < deadline, "the unit did not restart after RestartSec"
        time.sleep(0.1)


def test_start_delay_blocks_start_but_not_no_block(installer, make_host):
    host = installed_server(installer, make_host, "srv-f")
    hostfaults.set_start_delay(host.faults_dir, 2)
    t0 = time.monotonic()
    assert host.run("systemctl start --no-block rke2-server").returncode == 0
    assert time.monotonic() - t0 < 1.5
    assert host.run("systemctl is-active rke2-server").stdout.strip() == "activating"
    assert host.run("systemctl is-active rke2-server").returncode == 3
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0  # waits for readiness
    assert time.monotonic() - t0 >= 2
    assert host.run("systemctl is-active rke2-server").stdout.strip() == "active"
    host.run("systemctl stop rke2-server", check=True)
    assert host.run("systemctl is-active rke2-server").stdout.strip() == "inactive"


def test_malformed_config_is_fatal_and_unknown_keys_warn(installer, make_host):
    host = installed_server(installer, make_host, "srv-f")
    host.write_config("token: [unclosed\n  bad: : yaml")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 1
    log = host.run("journalctl -u rke2-server").stdout
    assert "level=fatal" in log and "config.yaml" in log
    host.run("systemctl stop rke2-server", check=True)
    host.write_config("token: s3cret\nno-such-flag: 1")
    host.write_config("node-label+:\n  - a=b", name="config.yaml.d/10-extra.yaml")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    assert "Unknown flag --no-such-flag found in config.yaml, skipping" in host.run("journalctl -u rke2-server").stdout
    assert '"a": "b"' in host.kubectl("get nodes -o json").stdout


def test_unknown_unit_and_exit_codes(installer, make_host):
    host = make_host("codes")
    out = host.run("systemctl start rke2-server")
    assert out.returncode == 5 and "Unit rke2-server.service not found." in out.stderr
    assert host.run("systemctl is-active rke2-server").returncode == 3
    assert host.run("systemctl status rke2-server").returncode == 4
    host.install(installer.url, f"INSTALL_RKE2_VERSION={V}")
    assert host.run("systemctl is-enabled rke2-agent").returncode == 1
    assert host.run("systemctl enable rke2-agent").returncode == 0
    assert host.run("systemctl is-enabled rke2-agent").stdout.strip() == "enabled"
    assert host.run("systemctl disable rke2-agent").returncode == 0
    assert host.run("systemctl is-enabled --quiet rke2-agent").returncode == 1


def test_uninstall_removes_everything(installer, make_host):
    host = installed_server(installer, make_host, "srv-f")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    status = host.run("cat /run/rke2fleet/units/rke2-server.service/status.json").stdout
    main_pid = json.loads(status)["mainPid"]
    out = host.run("/usr/local/bin/rke2-uninstall.sh")
    assert out.returncode == 0, out.stderr
    assert host.run("ls /usr/local/bin /usr/local/lib/systemd/system /etc/rancher /var/lib/rancher").stdout.split() \
        == ["/etc/rancher:", "/usr/local/bin:", "/usr/local/lib/systemd/system:", "/var/lib/rancher:"]
    assert not os.path.exists(f"/proc/{main_pid}")
    assert host.run("command -v rke2").returncode != 0
