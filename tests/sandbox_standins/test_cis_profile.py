"""The CIS profile as RKE2 checks it (pkg/cli/cmds/profile_linux.go), and the host state it checks:
users and groups in a private /etc (copy-on-write per host), kernel parameters simulated per host
(the sysctl shim, systemd-sysctl), never the machine's."""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

import pytest

from rke2fleet_sandbox.standins import sysctl_state
from tests.sandbox_standins.hosthelpers import is_active, journal, rke2_host, start, wait_until

USERADD = 'getent passwd etcd >/dev/null || useradd -r -c "etcd user" -s /sbin/nologin -M etcd -U'
CIS_FILE = "/etc/sysctl.d/60-rke2-cis.conf"
COPY_CIS = f"cp /usr/local/share/rke2/rke2-cis-sysctl.conf {CIS_FILE}"
WANTED = {"vm.overcommit_memory": 1, "vm.panic_on_oom": 0, "kernel.panic": 10, "kernel.panic_on_oops": 1}


def machine(key: str) -> str:
    return Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def kernel_errors() -> list[str]:
    """RKE2's lines for this machine's values (a fresh host starts with them)."""
    return [f"invalid kernel parameter value {k}={machine(k)} - expected {v}"
            for k, v in WANTED.items() if int(machine(k)) != v]


def test_useradd_changes_one_host_only(make_host):
    before = {p: digest(p) for p in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")}
    a, b = make_host("users-a"), make_host("users-b")
    assert a.run("getent passwd etcd").returncode == 2
    out = a.run(USERADD)
    assert out.returncode == 0, out.stderr
    assert a.run("getent passwd etcd").stdout.startswith("etcd:x:")
    assert a.run("getent group etcd").stdout.startswith("etcd:x:")
    assert a.run("id -gn etcd").stdout.strip() == "etcd"
    assert a.run(USERADD).returncode == 0  # the guard: a second run changes nothing
    assert a.run("groupadd -r monitors && getent group monitors").returncode == 0
    # not on the other host, not on the machine
    assert b.run("getent passwd etcd").returncode == 2 and b.run("getent group monitors").returncode == 2
    with pytest.raises(KeyError):
        pwd.getpwnam("etcd")
    assert {p: digest(p) for p in before} == before
    # the rest of /etc is the machine's, readable as before; writes stay in the host
    assert a.run("cat /etc/os-release").stdout == Path("/etc/os-release").read_text()
    a.run("mkdir -p /etc/default && echo X=1 > /etc/default/rke2-server", check=True)
    assert not Path("/etc/default/rke2-server").exists()
    assert b.run("test -e /etc/default/rke2-server").returncode == 1


def test_kernel_parameters_are_simulated_per_host(make_host):
    a, b = make_host("sysctl-a"), make_host("sysctl-b")
    original = machine("vm.overcommit_memory")
    assert a.run("sysctl -n vm.overcommit_memory").stdout.strip() == original
    new = "1" if original != "1" else "2"
    out = a.run(f"sysctl -w vm.overcommit_memory={new}")
    assert out.returncode == 0 and out.stdout.strip() == f"vm.overcommit_memory = {new}"
    assert a.run("cat /proc/sys/vm/overcommit_memory").stdout.strip() == new  # what RKE2 reads
    assert a.run("sysctl vm.overcommit_memory").stdout.strip() == f"vm.overcommit_memory = {new}"
    assert b.run("sysctl -n vm.overcommit_memory").stdout.strip() == original
    assert machine("vm.overcommit_memory") == original
    # any other key: simulated too; /proc/sys itself is read-only inside the host
    pid_max = machine("kernel.pid_max")
    other = str(int(pid_max) - 1)
    assert a.run(f"sysctl kernel.pid_max={other}").returncode == 0
    assert a.run("sysctl -n kernel.pid_max").stdout.strip() == other
    assert machine("kernel.pid_max") == pid_max
    assert a.run(f"echo {other} > /proc/sys/kernel/pid_max").returncode != 0
    # even the real systemd-sysctl, run by hand inside the host, cannot write the machine's kernel
    a.run("/lib/systemd/systemd-sysctl 2>/dev/null; true")
    assert machine("kernel.pid_max") == pid_max
    # procps's refusals
    bad = a.run("sysctl -w foo.bar=1")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "sysctl: cannot stat /proc/sys/foo/bar: No such file or directory"
    bad = a.run("sysctl -w vm.overcommit_memory=lots")
    assert bad.stderr.strip() == 'sysctl: setting key "vm.overcommit_memory": Invalid argument'
    # -p FILE and --system
    a.run("printf 'kernel.panic = 10\\n# a comment\\n-foo.baz = 1\\n' > /tmp/p.conf", check=True)
    out = a.run("sysctl -p /tmp/p.conf")
    assert out.returncode == 0 and out.stdout == "kernel.panic = 10\n", out.stderr
    missing = a.run("sysctl -p /nonexistent").stderr.strip()
    assert missing == 'sysctl: cannot open "/nonexistent": No such file or directory'
    a.run("echo 'kernel.panic_on_oops = 1' > /etc/sysctl.d/70-test.conf", check=True)
    out = a.run("sysctl --system")
    assert "* Applying /etc/sysctl.d/70-test.conf ...\nkernel.panic_on_oops = 1\n" in out.stdout
    assert b.run("sysctl -n kernel.panic").stdout.strip() == machine("kernel.panic")


def test_only_root_writes_kernel_parameters(monkeypatch, tmp_path):
    monkeypatch.setattr(sysctl_state, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(sysctl_state.SysctlError, match=r'^permission denied on key "vm.panic_on_oom"$'):
        sysctl_state.write("vm.panic_on_oom", "0")
    assert sysctl_state.read("vm.panic_on_oom") == machine("vm.panic_on_oom")  # reading is for everyone
    assert not any(tmp_path.iterdir())


def test_systemd_sysctl_applies_sysctl_d(make_host, installer):
    host = make_host("sysd")
    host.install(installer.url, "INSTALL_RKE2_VERSION=v1.35.7+rke2r1")
    host.run(COPY_CIS, check=True)
    # copied but not applied: nothing changed yet
    assert host.run("sysctl -n kernel.panic").stdout.strip() == machine("kernel.panic")
    out = host.run("systemctl restart systemd-sysctl")
    assert out.returncode == 0, out.stderr
    for key, value in WANTED.items():
        assert host.run(f"cat /proc/sys/{key.replace('.', '/')}").stdout.strip() == str(value)
        assert machine(key) != str(value) or key == "vm.panic_on_oom"  # the machine is untouched
    assert host.run("systemctl is-active systemd-sysctl").stdout.strip() == "active"
    assert host.run("systemctl show -p ActiveState,SubState systemd-sysctl").stdout == (
        "ActiveState=active\nSubState=exited\n")
    assert "Finished systemd-sysctl.service - Apply Kernel Variables." in host.run(
        "journalctl -u systemd-sysctl").stdout


def test_cis_server_refused_until_the_host_is_prepared(installer, make_host):
    host = rke2_host(installer, make_host, "cis-srv", "token: s3cret\nprofile: cis", nodeReadyDelay=0)
    errors = kernel_errors()
    assert errors, "this machine's kernel already has RKE2's CIS values: nothing to refuse"
    assert start(host).returncode != 0
    expected = "\\n".join(errors) + "\\n"
    wait_until(lambda: f'level=fatal msg="{expected}"' in journal(host))
    assert 'msg="Starting rke2' not in journal(host)  # refused before anything started
    host.run("systemctl stop rke2-server", check=True)
    # the file alone is not enough: its values must be in effect
    host.run(COPY_CIS, check=True)
    assert start(host).returncode != 0
    host.run("systemctl stop rke2-server", check=True)
    host.run("systemctl restart systemd-sysctl", check=True)
    host.run("journalctl -u rke2-server > /tmp/before; : > /run/rke2fleet/units/rke2-server.service/journal.log")
    assert start(host).returncode != 0
    wait_until(lambda: 'level=fatal msg="missing required: user: unknown user etcd\\nmissing required: group: '
               'unknown group etcd\\n"' in journal(host))
    assert "invalid kernel parameter" not in journal(host)
    host.run("systemctl stop rke2-server", check=True)
    host.run(USERADD, check=True)
    assert start(host).returncode == 0, journal(host)
    assert is_active(host) == "active"


def test_cis_agent_needs_no_etcd_user_and_profile_values(installer, make_host):
    server = rke2_host(installer, make_host, "cis-a-srv", "token: s3cret", nodeReadyDelay=0)
    assert start(server).returncode == 0
    join = f"server: https://{server.address}:9345\ntoken: s3cret\nprofile: cis"
    agent = rke2_host(installer, make_host, "cis-a-ag", join, role="agent", nodeReadyDelay=0)
    agent.run(f"{COPY_CIS} && systemctl restart systemd-sysctl", check=True)
    assert start(agent, "agent").returncode == 0, journal(agent, "agent")
    assert agent.run("getent passwd etcd").returncode == 2

    other = rke2_host(installer, make_host, "cis-old", "token: s3cret\nprofile: cis-1.23")
    assert start(other).returncode != 0
    wait_until(lambda: 'level=fatal msg="invalid value provided for --profile flag"' in journal(other))
    other.run("systemctl stop rke2-server", check=True)
    other.write_config("token: s3cret\nprofile: cis\nprotect-kernel-defaults: false")
    other.run(f"{COPY_CIS} && systemctl restart systemd-sysctl && {USERADD}", check=True)
    assert start(other).returncode != 0
    wait_until(lambda: "--protect-kernel-defaults must be true when using --profile=cis" in journal(other))
    other.run("systemctl stop rke2-server", check=True)
    other.write_config("token: s3cret\nprofile: etcd")  # the etcd profile: the user only
    assert start(other).returncode == 0, journal(other)
