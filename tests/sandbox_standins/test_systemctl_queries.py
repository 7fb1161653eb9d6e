"""systemctl's query verbs (is-active, is-enabled, is-failed, show) in every unit state, and their cost."""

from __future__ import annotations

import json
import time

import pytest

from rke2fleet_sandbox import hostfaults
from rke2fleet_sandbox.standins import unitstate
from tests.sandbox_standins.hosthelpers import V, installed_server, wait_until

PROPS = "-p MainPID,NRestarts,LoadState,ActiveState,SubState,UnitFileState"
HEAVY_MODULES = ("json", "subprocess", "pathlib", "typing", "signal", "re")


def sc(host, args):
    """One query through the shim's shell fast path and through the Python stand-in: same answer.
    A unit in transition may move between the two calls: asked again, a real difference stays."""
    for _ in range(3):
        fast = host.run(f"systemctl {args}")
        slow = host.run(f"RKE2FLEET_SYSTEMCTL_PYTHON=1 systemctl {args}")
        if (fast.stdout, fast.stderr, fast.returncode) == (slow.stdout, slow.stderr, slow.returncode):
            return fast
    raise AssertionError(f"systemctl {args}: the shell says {fast}, Python says {slow}")


def show(host, unit="rke2-server", props=PROPS):
    out = sc(host, f"show {props} {unit}")
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def answers(host, unit="rke2-server"):
    """What the query verbs say: (is-active out, rc), (is-failed out, rc), ActiveState, SubState."""
    active = sc(host, f"is-active {unit}")
    failed = sc(host, f"is-failed {unit}")
    props = show(host, unit)
    return (active.stdout.strip(), active.returncode), (failed.stdout.strip(), failed.returncode), \
        props["ActiveState"], props["SubState"]


def main_pid(host):
    return json.loads(host.run("cat /run/rke2fleet/units/rke2-server.service/status.json").stdout)["mainPid"]


def test_show_of_a_unit_that_does_not_exist(make_host):
    host = make_host("q-none")
    out = sc(host, f"show {PROPS} rke2-server")
    assert out.returncode == 0
    # systemd's order (Service properties, then Unit), whatever order they were asked in
    assert out.stdout.splitlines() == ["MainPID=0", "NRestarts=0", "LoadState=not-found", "ActiveState=inactive",
                                       "SubState=dead", "UnitFileState="]
    assert sc(host, "show --property=ActiveState --value rke2-server").stdout == "inactive\n"
    assert sc(host, "show -p LoadState -p UnitFileState --value nosuch").stdout == "not-found\n\n"
    assert sc(host, "show -pSubState nosuch").stdout == "SubState=dead\n"
    assert sc(host, "show -p NoSuchProperty nosuch").stdout == ""
    out = sc(host, "is-enabled rke2-server")
    assert (out.stdout, out.returncode) == ("", 1) and "No such file or directory" in out.stderr
    assert answers(host) == (("inactive", 3), ("inactive", 1), "inactive", "dead")


def test_queries_through_the_unit_lifecycle(installer, make_host):
    host = installed_server(installer, make_host, "q-life")
    assert show(host) == {"MainPID": "0", "NRestarts": "0", "LoadState": "loaded", "ActiveState": "inactive",
                          "SubState": "dead", "UnitFileState": "disabled"}
    assert (sc(host, "is-enabled rke2-server").stdout, sc(host, "is-enabled -q rke2-server")
            .returncode) == ("disabled\n", 1)
    assert host.run("systemctl enable rke2-server").returncode == 0
    assert show(host, props="-p UnitFileState")["UnitFileState"] == "enabled"
    assert (sc(host, "is-enabled rke2-server").stdout, sc(host, "is-enabled rke2-server")
            .returncode) == ("enabled\n", 0)

    hostfaults.set_start_delay(host.faults_dir, 1.5)
    assert host.run("systemctl start --no-block rke2-server").returncode == 0
    assert answers(host) == (("activating", 3), ("activating", 1), "activating", "start")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    assert answers(host) == (("active", 0), ("active", 1), "active", "running")
    props = show(host)
    assert props["MainPID"] == str(main_pid(host)) != "0"
    assert sc(host, "show -p ActiveState -p SubState --value rke2-server").stdout == "active\nrunning\n"
    two = sc(host, "show -p ActiveState rke2-server rke2-agent").stdout
    assert two == "ActiveState=active\n\nActiveState=inactive\n"

    host.run("systemctl stop rke2-server", check=True)
    assert answers(host) == (("inactive", 3), ("inactive", 1), "inactive", "dead")
    assert host.run("systemctl disable rke2-server").returncode == 0
    assert show(host, props="-p UnitFileState")["UnitFileState"] == "disabled"


def test_a_dead_supervisor_reads_as_failed(installer, make_host):
    host = installed_server(installer, make_host, "q-failed")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    status = json.loads(host.run("cat /run/rke2fleet/units/rke2-server.service/status.json").stdout)
    host.run(f"kill -9 {status['supervisorPid']} {status['mainPid']}", check=True)
    wait_until(lambda: sc(host, "is-failed rke2-server").returncode == 0)
    assert answers(host) == (("failed", 3), ("failed", 0), "failed", "failed")


def test_nrestarts_grows_on_auto_restart(installer, make_host):
    host = installed_server(installer, make_host, "q-restart")
    hostfaults.set_restart_delay(host.faults_dir, 1.0)
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    assert show(host)["NRestarts"] == "0"
    for restarts in (1, 2):
        host.run(f"kill -9 {main_pid(host)}", check=True)
        # while waiting out RestartSec the counter has not moved yet (systemd bumps it when the job runs)
        wait_until(lambda: show(host)["SubState"] == "auto-restart")
        assert show(host)["ActiveState"] == "activating" and show(host)["NRestarts"] == str(restarts - 1)
        wait_until(lambda: show(host)["ActiveState"] == "active")
        assert show(host)["NRestarts"] == str(restarts)
    journal = host.run("journalctl -u rke2-server").stdout
    assert "restart counter is at 2" in journal


@pytest.mark.parametrize("command", ["is-active rke2-server", "is-enabled rke2-server", "is-failed rke2-server",
                                     f"show {PROPS} rke2-server", "enable rke2-server", "daemon-reload"])
def test_query_verbs_import_nothing_heavy(installer, make_host, command):
    host = installed_server(installer, make_host, "q-imports")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    python, script = host.run("cat /usr/bin/systemctl").stdout.split("exec ", 1)[1].split()[:3:2]
    out = host.run(f"{python} -S -X importtime {script} {command}")
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "unitstate" in imported
    assert not imported & set(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))


def test_rke2_version_imports_nothing_heavy(installer, make_host):
    host = installed_server(installer, make_host, "q-rke2")
    python, flag, script = host.run("cat /usr/local/bin/rke2").stdout.split("exec ", 1)[1].split()[:3]
    assert flag == "-S"
    out = host.run(f"{python} -S -X importtime {script} --standin-version {V} --version")
    assert out.stdout.startswith(f"rke2 version {V} (")
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {*HEAVY_MODULES, "rke2_node", "yaml"}


# -- status.txt, without a host ----------------------------------------------------------------------
def test_status_round_trips_through_status_txt(tmp_path, monkeypatch):
    monkeypatch.setattr(unitstate, "UNITS_DIR", str(tmp_path))
    unitstate.write_status("u.service", state="activating", substate="auto-restart", supervisorPid=0,
                           pending=True, exits=3, lastExit=-9, result="exit-code")
    from_txt = unitstate.decode_status((tmp_path / "u.service" / "status.txt").read_text())
    assert from_txt == json.loads((tmp_path / "u.service" / "status.json").read_text())
    assert unitstate.restart_count(from_txt) == 2


def test_status_json_alone_is_still_read(tmp_path, monkeypatch):
    """A unit started by the stand-in of before status.txt (a sandbox kept across an upgrade)."""
    monkeypatch.setattr(unitstate, "UNITS_DIR", str(tmp_path))
    (tmp_path / "u.service").mkdir()
    (tmp_path / "u.service" / "status.json").write_text(json.dumps({"state": "inactive", "substate": "dead",
                                                                     "exits": 4, "since": 1.0}))
    assert unitstate.read_status("u.service")["exits"] == 4
    (tmp_path / "u.service" / "status.json").write_text(json.dumps({"state": "active", "supervisorPid": 0,
                                                                     "since": 1.0}))
    assert unitstate.read_status("u.service")["state"] == "failed"  # no supervisor: crashed
    assert unitstate.read_status("other.service") == {"state": "inactive", "substate": "dead"}


def test_enable_now_no_block_returns_before_the_unit_is_active(installer, make_host):
    """`systemctl enable --now --no-block` (the operator's enable + start): enabled, and the start
    queued without waiting for readiness, as systemd does; without --no-block it waits."""
    host = installed_server(installer, make_host, "q-now")
    hostfaults.set_start_delay(host.faults_dir, 1.5)
    t0 = time.monotonic()
    assert host.run("systemctl enable --now --no-block rke2-server").returncode == 0
    assert time.monotonic() - t0 < 1.5
    assert sc(host, "is-enabled rke2-server").stdout == "enabled\n"
    assert sc(host, "is-active rke2-server").stdout == "activating\n"
    wait_until(lambda: sc(host, "is-active rke2-server").stdout == "active\n")
    host.run("systemctl stop rke2-server", check=True)
    t0 = time.monotonic()
    assert host.run("systemctl enable --now rke2-server", timeout=30).returncode == 0
    assert time.monotonic() - t0 >= 1.5 and sc(host, "is-active rke2-server").stdout == "active\n"
