"""A sandbox host's system state is its own: users and groups (/etc is copy-on-write per host) and
kernel parameters (simulated; /proc/sys read-only inside), over ssh as the operator reaches them."""

from __future__ import annotations

import hashlib
import pwd
from pathlib import Path

import pytest

from rke2fleet_sandbox import Sandbox

from .conftest import ssh

pytestmark = pytest.mark.sandbox

USERADD = 'getent passwd etcd >/dev/null || useradd -r -c "etcd user" -s /sbin/nologin -M etcd -U'


def test_users_and_kernel_parameters_are_per_host(sandbox: Sandbox, known_hosts: Path) -> None:
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    a, b = sandbox.servers
    (sudo_host,) = [h for h in sandbox.hosts if h.sudo]
    assert ssh(sandbox, a.name, USERADD, known_hosts=known_hosts).returncode == 0
    done = ssh(sandbox, sudo_host.name, f"sudo -n sh -c '{USERADD}' && getent passwd etcd", known_hosts=known_hosts)
    assert done.returncode == 0 and done.stdout.startswith("etcd:x:"), done.stderr
    assert ssh(sandbox, a.name, "getent group etcd", known_hosts=known_hosts).stdout.startswith("etcd:x:")
    assert ssh(sandbox, b.name, "getent passwd etcd", known_hosts=known_hosts).returncode == 2
    with pytest.raises(KeyError):
        pwd.getpwnam("etcd")
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd

    machine = Path("/proc/sys/kernel/panic").read_text().strip()
    set_it = ssh(sandbox, sudo_host.name, "sudo -n sysctl -w kernel.panic=10", known_hosts=known_hosts)
    assert set_it.stdout.strip() == "kernel.panic = 10", set_it.stderr
    assert ssh(sandbox, sudo_host.name, "cat /proc/sys/kernel/panic", known_hosts=known_hosts).stdout.strip() == "10"
    denied = ssh(sandbox, sudo_host.name, "/usr/sbin/sysctl -w kernel.panic=1", known_hosts=known_hosts)  # not root
    assert denied.returncode == 1 and 'permission denied on key "kernel.panic"' in denied.stderr
    assert ssh(sandbox, a.name, "sysctl -n kernel.panic", known_hosts=known_hosts).stdout.strip() == machine
    assert Path("/proc/sys/kernel/panic").read_text().strip() == machine
    assert ssh(sandbox, a.name, "echo 1 > /proc/sys/kernel/pid_max", known_hosts=known_hosts).returncode != 0


def test_var_lib_is_per_host(sandbox: Sandbox, known_hosts: Path) -> None:
    """What a tool keeps under /var/lib (the operator's air-gap assets, say) stays on its host."""
    a, b = sandbox.servers
    write = "mkdir -p /var/lib/sandbox-probe && echo a > /var/lib/sandbox-probe/mark"
    assert ssh(sandbox, a.name, write, known_hosts=known_hosts).returncode == 0
    assert ssh(sandbox, a.name, "cat /var/lib/sandbox-probe/mark", known_hosts=known_hosts).stdout == "a\n"
    assert ssh(sandbox, b.name, "test -e /var/lib/sandbox-probe", known_hosts=known_hosts).returncode == 1
    assert not Path("/var/lib/sandbox-probe").exists()
    machine = ssh(sandbox, a.name, "test -d /var/lib/rancher && test -d /var/lib/dpkg", known_hosts=known_hosts)
    assert machine.returncode == 0
