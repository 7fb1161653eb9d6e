"""Network sites: air-gapped hosts (network "isolated") and hosts behind an SSH bastion ("bastion")."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from rke2fleet_sandbox import Sandbox, SandboxError, SandboxHost
from rke2fleet_sandbox.hosts import STANDINS_DIR
from rke2fleet_sandbox.installer import write_airgap_bundle
from rke2fleet_sandbox.network import GATEWAY_OCTET, ifindex
from rke2fleet_sandbox.state import SiteRecord

from .conftest import MakeSandbox, Snapshot, assert_gone, ssh

pytestmark = pytest.mark.sandbox

V = "v1.35.7+rke2r1"
FAST = 3.0  # seconds: a refusal, not a connect timeout


# ---------------------------------------------------------------- helpers


def root_links() -> set[str]:
    """The link names `ip link` lists in the root namespace."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def on_host(sandbox: Sandbox, host: SandboxHost | str, cmd: str, timeout: float = 30) -> tuple[int, str, float]:
    """(exit code, stdout + stderr, seconds) of `cmd` run inside the host, without ssh."""
    started = time.monotonic()
    done = sandbox.run_on_host(host, cmd, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace"), time.monotonic() - started


def tcp_from_host(sandbox: Sandbox, host: SandboxHost | str, address: str, port: int) -> tuple[int, str, float]:
    """Open a TCP connection from inside the host and print the first bytes the peer sends."""
    return on_host(sandbox, host, f"timeout 10 bash -c 'exec 3<>/dev/tcp/{address}/{port} && head -c 7 <&3'")


def connect_from_root(address: str, port: int = 22) -> tuple[bytes | OSError, float]:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=10) as sock:
            sock.settimeout(5)
            return sock.recv(7), time.monotonic() - started
    except OSError as exc:
        return exc, time.monotonic() - started


def write_known_hosts(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def assert_site_gone(site: SiteRecord, links_before: set[str]) -> None:
    assert site.link in links_before
    assert site.link not in root_links(), f"{site.link} is still in `ip link`"
    assert not site.holder.alive()


def bastion_ssh_config(sandbox: Sandbox, tmp_path: Path) -> Path:
    """An OpenSSH config for both hops (`ssh -J` hands `-F` to the jump's ssh, not `-o`/`-i`)."""
    known = write_known_hosts(tmp_path / "known_hosts_all", sandbox.bastion_known_hosts + sandbox.known_hosts())
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host *\n"
        f"  IdentityFile {sandbox.client_key_path}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
    )
    return config


def ssh_jump(sandbox: Sandbox, host: SandboxHost, config: Path, command: str) -> subprocess.CompletedProcess[str]:
    assert sandbox.bastion is not None
    jump = f"{sandbox.bastion.user}@{sandbox.bastion.address}:{sandbox.bastion.port}"
    return subprocess.run(
        ["ssh", "-F", str(config), "-J", jump, "-p", str(host.port), f"{host.user}@{host.address}", command],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def asyncssh_options(sandbox: Sandbox, known_hosts: str) -> dict[str, object]:
    return {
        "client_keys": [asyncssh.import_private_key(sandbox.client_key_pem())],
        "known_hosts": asyncssh.import_known_hosts(known_hosts),
        "agent_path": None,
        "connect_timeout": 10,
    }


# ---------------------------------------------------------------- isolated


def test_isolated_hosts_answer_the_root_namespace_and_reach_nothing_outside(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox(1, 1, network="isolated", installer=True)
    site = sandbox.site
    assert site is not None and sandbox.network == "isolated" and sandbox.bastion is None
    server, agent = sandbox.hosts
    for address in (server.address, agent.address, sandbox.load_balancer_address):
        assert address.startswith(site.block + "."), address
    assert site.link in root_links()
    doc = json.loads(sandbox.sandbox_json_path.read_text())
    assert (doc["network"], doc["siteSubnet"]) == ("isolated", site.subnet)

    # The root namespace (pytest, the operator) logs in to every host at host.address:host.port.
    known_hosts = write_known_hosts(tmp_path / "known_hosts", sandbox.known_hosts())
    for host in sandbox.hosts:
        result = ssh(sandbox, host.name, "hostname", known_hosts=known_hosts)
        assert (result.returncode, result.stdout.strip()) == (0, host.name), result.stderr

    # The installer answers the root namespace, but from a host it is not there, at once.
    with urllib.request.urlopen(f"{sandbox.installer_url}/install.sh", timeout=10) as answer:
        assert answer.status == 200
    code, out, seconds = on_host(sandbox, server, f"curl -sS --max-time 20 {sandbox.installer_url}/install.sh")
    assert code != 0 and seconds < FAST, (code, out, seconds)
    assert "Couldn't connect" in out or "Failed to connect" in out, out

    # Nor does anything else outside the site answer: a root-namespace service on every address
    # (so also on the root end of the veth), or an address beyond.
    with socket.create_server(("0.0.0.0", 0)) as listener:
        port = listener.getsockname()[1]
        code, out, seconds = tcp_from_host(sandbox, agent, site.address(GATEWAY_OCTET), port)
        assert code != 0 and seconds < FAST and "No route to host" in out, (code, out, seconds)
    code, out, seconds = tcp_from_host(sandbox, agent, "192.0.2.1", 80)
    assert code != 0 and seconds < FAST and "unreachable" in out, (code, out, seconds)

    # Inside the site, hosts reach each other.
    code, out, _ = tcp_from_host(sandbox, agent, server.address, 22)
    assert (code, out) == (0, "SSH-2.0"), out


def test_isolated_stand_in_cluster_joins_through_the_site_load_balancer(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """Air-gapped install from an artifacts directory, then an agent joins over the balancer (9345)."""
    sandbox = make_sandbox(1, 1, network="isolated")
    server, agent = sandbox.hosts
    bundle = write_airgap_bundle(tmp_path / "airgap", V)
    for host, config in (
        (server, "token: s3cret"),
        (agent, f"server: https://{sandbox.load_balancer_address}:9345\ntoken: s3cret"),
    ):
        code, out, _ = on_host(
            sandbox, host,
            f"INSTALL_RKE2_ARTIFACT_PATH={bundle} INSTALL_RKE2_TYPE={host.role} sh {STANDINS_DIR}/install.sh"
            f" && mkdir -p /etc/rancher/rke2 && printf '%s\\n' '{config}' > /etc/rancher/rke2/config.yaml"
            f" && systemctl start rke2-{host.role}",
            timeout=90,
        )  # fmt: skip
        assert code == 0, out
    kubectl = "KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl get nodes -o json"
    deadline = time.monotonic() + 30
    ready: dict[str, str] = {}
    while time.monotonic() < deadline:
        code, out, _ = on_host(sandbox, server, f"{kubectl} 2>/dev/null")
        if code == 0:
            nodes = json.loads(out)["items"]
            ready = {
                n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready")
                for n in nodes
            }
            if ready == {server.name: "True", agent.name: "True"}:
                break
        time.sleep(0.2)
    assert ready == {server.name: "True", agent.name: "True"}


def test_isolated_host_verbs_load_and_down(tmp_path: Path) -> None:
    sandbox = Sandbox.up(tmp_path / "sb", 1, 0, emulator=False, installer=False, network="isolated")
    try:
        site = sandbox.site
        assert site is not None
        (host,) = sandbox.hosts
        known_hosts = write_known_hosts(tmp_path / "known_hosts", sandbox.known_hosts())
        # run_on_host runs in the site's network namespace.
        code, out, _ = on_host(sandbox, host, "ip -o -4 address show dev eth0")
        assert code == 0 and f" {host.address}/24 " in out, out
        # A killed sshd refuses at once (its RST reaches the root namespace); started, it answers.
        sandbox.kill_sshd(host)
        answer, seconds = connect_from_root(host.address)
        assert isinstance(answer, ConnectionRefusedError) and seconds < FAST, answer
        sandbox.start_sshd(host)
        assert connect_from_root(host.address)[0] == b"SSH-2.0"
        # Frozen: the handshake completes, the banner never comes; thawed, it does.
        sandbox.freeze(host)
        with socket.create_connection((host.address, 22), timeout=5) as sock:
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(7)
            sandbox.thaw(host)
            sock.settimeout(5)
            assert sock.recv(7) == b"SSH-2.0"
        old_key = host.host_key_line
        assert sandbox.replace_host_key(host) != old_key
        assert ssh(sandbox, host.name, "true", known_hosts=known_hosts).returncode == 255  # the old pin
        known_hosts.write_text(sandbox.known_hosts())
        assert ssh(sandbox, host.name, "hostname", known_hosts=known_hosts).stdout.strip() == host.name

        # Loaded from its state file (as `rke2fleet sandbox down` does), then downed from there.
        loaded = Sandbox.load(sandbox.state_dir)
        assert loaded.site == site and loaded.hosts[0].net_ns == site.net_ns
        assert loaded.run_on_host(host.name, "hostname").stdout.decode().strip() == host.name
        links = root_links()
        before = Snapshot(loaded)
        assert before.links and before.net_namespaces
        assert loaded.down() == []
        assert_gone(before, sandbox.state_dir)
        assert_site_gone(site, links)
    finally:
        sandbox.down()


def test_parallel_sites_get_their_own_blocks(tmp_path: Path) -> None:
    made: list[Sandbox] = []
    errors: list[BaseException] = []

    def up(i: int) -> None:
        try:
            made.append(Sandbox.up(tmp_path / f"sb{i}", 1, 0, emulator=False, installer=False, network="isolated"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=up, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        sites = [sb.site for sb in made]
        assert all(sites) and len({s.block for s in sites if s}) == 2 and len({s.link for s in sites if s}) == 2
        for sandbox in made:
            assert connect_from_root(sandbox.hosts[0].address)[0] == b"SSH-2.0"
        links = root_links()
        for sandbox in made:
            site = sandbox.site
            assert site is not None
            before = Snapshot(sandbox)
            assert sandbox.down() == []
            assert_gone(before, sandbox.state_dir)
            assert_site_gone(site, links)
    finally:
        for sandbox in made:
            sandbox.down()


# ---------------------------------------------------------------- bastion


async def test_bastion_is_the_only_way_in_and_one_connection_serves_every_host(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    sandbox = make_sandbox(1, 1, network="bastion", installer=True)
    bastion, site = sandbox.bastion, sandbox.site
    assert bastion is not None and site is not None and sandbox.network == "bastion"
    assert (bastion.user, bastion.port) == ("root", 22) and bastion.address.startswith(site.block + ".")
    assert sandbox.bastion_known_hosts == f"{bastion.address} {bastion.host_key_line}\n"
    assert all(h.via == "bastion" for h in sandbox.hosts)
    assert sandbox.known_hosts() == "".join(f"{h.address} {h.host_key_line}\n" for h in sandbox.hosts)
    assert json.loads(sandbox.sandbox_json_path.read_text())["bastion"]["address"] == bastion.address

    # From the root namespace: the bastion answers; no host (nor the balancer) does, at once.
    assert connect_from_root(bastion.address)[0] == b"SSH-2.0"
    for address in [h.address for h in sandbox.hosts] + [sandbox.load_balancer_address]:
        answer, seconds = connect_from_root(address)
        assert isinstance(answer, OSError) and seconds < FAST, (address, answer, seconds)
        assert answer.errno == errno.EHOSTUNREACH, answer
    direct = ssh(sandbox, sandbox.hosts[0].name, "true", known_hosts=write_known_hosts(
        tmp_path / "known_hosts", sandbox.known_hosts()))  # fmt: skip
    assert direct.returncode == 255

    # OpenSSH through the bastion (ssh -J): one login on the bastion per ssh run.
    config = bastion_ssh_config(sandbox, tmp_path)
    logins = sandbox.bastion_logins()
    for host in sandbox.hosts:
        result = ssh_jump(sandbox, host, config, "hostname")
        assert (result.returncode, result.stdout.strip()) == (0, host.name), result.stderr
    assert sandbox.bastion_logins() == logins + len(sandbox.hosts)
    assert sandbox.bastion_channels() == [f"{h.address}:22" for h in sandbox.hosts]

    # asyncssh: one bastion connection tunnels to every host, and the bastion saw one login.
    logins, channels = sandbox.bastion_logins(), len(sandbox.bastion_channels())
    known = sandbox.bastion_known_hosts + sandbox.known_hosts()
    async with asyncssh.connect(bastion.address, bastion.port, username=bastion.user,
                                **asyncssh_options(sandbox, known)) as jump:
        for host in sandbox.hosts:
            async with asyncssh.connect(host.address, host.port, username=host.user, tunnel=jump,
                                        **asyncssh_options(sandbox, known)) as conn:
                assert (await conn.run("hostname", check=True)).stdout == f"{host.name}\n"
    assert sandbox.bastion_logins() == logins + 1
    assert sandbox.bastion_channels()[channels:] == [f"{h.address}:22" for h in sandbox.hosts]

    # Second guard: inside the site, a host's sshd answers, but the key logs in from the bastion only.
    server, agent = sandbox.hosts
    code, out, _ = on_host(sandbox, agent, "cat /run/rke2fleet/ssh/authorized_keys")
    assert out.startswith(f'from="{bastion.address},{site.address(4)}" ssh-ed25519 '), out
    assert tcp_from_host(sandbox, server, agent.address, 22)[:2] == (0, "SSH-2.0")
    code, out, _ = on_host(sandbox, server, (
        f"ssh -F /dev/null -i {sandbox.client_key_path} -o BatchMode=yes -o StrictHostKeyChecking=no"
        f" -o UserKnownHostsFile=/dev/null root@{agent.address} true"))  # fmt: skip
    assert code == 255 and "Permission denied" in out, out

    # The hosts are air-gapped too.
    code, out, seconds = on_host(sandbox, server, f"curl -sS --max-time 20 {sandbox.installer_url}/install.sh")
    assert code != 0 and seconds < FAST, (code, out, seconds)
    code, out, seconds = tcp_from_host(sandbox, server, site.address(GATEWAY_OCTET), 22)
    assert code != 0 and seconds < FAST, (code, out, seconds)


async def test_bastion_host_verbs_load_and_down(tmp_path: Path) -> None:
    sandbox = Sandbox.up(tmp_path / "sb", 1, 0, emulator=False, installer=False, network="bastion")
    try:
        site, bastion = sandbox.site, sandbox.bastion
        assert site is not None and bastion is not None
        (host,) = sandbox.hosts
        known = sandbox.bastion_known_hosts + sandbox.known_hosts()

        async def hostname(known_hosts: str) -> str:
            async with asyncssh.connect(bastion.address, username="root",
                                        **asyncssh_options(sandbox, known_hosts)) as jump:
                async with asyncssh.connect(host.address, username=host.user, tunnel=jump,
                                            **asyncssh_options(sandbox, known_hosts)) as conn:
                    return str((await conn.run("hostname", check=True)).stdout).strip()

        assert await hostname(known) == host.name
        # sshd restarts behind the bastion (start_sshd waits for it from inside the site).
        sandbox.stop_sshd(host)
        code, out, _ = tcp_from_host(sandbox, "bastion", host.address, 22)
        assert code != 0 and "refused" in out, out
        sandbox.start_sshd(host)
        sandbox.freeze(host)
        sandbox.thaw(host)
        old = host.host_key_line
        assert sandbox.replace_host_key(host) != old
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await hostname(known)
        known = sandbox.bastion_known_hosts + sandbox.known_hosts()
        assert await hostname(known) == host.name
        # The bastion takes the host verbs too.
        assert sandbox.run_on_host("bastion", "hostname").stdout.decode().strip() == "bastion"
        sandbox.kill_sshd("bastion")
        assert isinstance(connect_from_root(bastion.address)[0], ConnectionRefusedError)
        sandbox.start_sshd("bastion")
        assert await hostname(known) == host.name

        loaded = Sandbox.load(sandbox.state_dir)
        assert loaded.bastion == sandbox.bastion and loaded.site == site
        assert loaded.bastion_logins() == sandbox.bastion_logins() >= 3
        links = root_links()
        before = Snapshot(loaded)
        assert len(before.net_namespaces) == 2  # the site's and the bastion's
        assert loaded.down() == []
        assert_gone(before, sandbox.state_dir)
        assert_site_gone(site, links)
    finally:
        sandbox.down()


@pytest.mark.parametrize("network", ["isolated", "bastion"])
def test_down_after_the_namespace_holders_were_killed(tmp_path: Path, network: str) -> None:
    """The holders die first (a crash, a kill by hand): the namespaces live on in the hosts'
    processes, and down() still ends them and removes the veth."""
    sandbox = Sandbox.up(tmp_path / "sb", 1, 1, emulator=False, installer=False, network=network)
    try:
        site = sandbox.site
        assert site is not None
        links = root_links()
        before = Snapshot(sandbox)
        holders = [site.holder, *([sandbox.bastion.holder] if sandbox.bastion else [])]
        for record in holders:
            os.kill(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(r.alive() for r in holders) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sandbox.running()
        assert Sandbox.load(sandbox.state_dir).down() == []
        assert_gone(before, sandbox.state_dir)
        assert_site_gone(site, links)
    finally:
        sandbox.down()


@pytest.mark.parametrize("network", ["isolated", "bastion"])
def test_failed_site_up_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network: str) -> None:
    """sshd cannot start once the site is wired: `up` fails, and the namespaces and veth are gone."""
    from rke2fleet_sandbox import hosts
    from rke2fleet_sandbox import network as site_network

    sites: list[SiteRecord] = []
    real_build_site = site_network.build_site

    def recording_build_site(site: SiteRecord, *args: Any, **kwargs: Any) -> None:
        sites.append(site)
        real_build_site(site, *args, **kwargs)

    monkeypatch.setattr(site_network, "build_site", recording_build_site)
    monkeypatch.setattr(hosts, "SSHD", "/nonexistent/sshd")
    with pytest.raises(SandboxError, match="sshd"):
        Sandbox.up(tmp_path / "sb", 1, 1, emulator=False, installer=False, network=network)
    (site,) = sites
    assert site.link_index and ifindex(site.link) != site.link_index
    assert not site.holder.alive()
    assert not (tmp_path / "sb").exists()
