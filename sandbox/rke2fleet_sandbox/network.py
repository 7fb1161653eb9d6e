"""Network sites: a sandbox's hosts in a network namespace of their own instead of the machine's.

`Sandbox.up(..., network=...)`:

* "shared" (default): no site. Hosts listen on 127.0.N.x in the machine's namespace.
* "isolated": an air-gapped site. The hosts and the load balancer share one network namespace,
  addressed on the site's /24 (10.213.N.0/24, one N per sandbox). A veth pair joins it to the root
  namespace (root end `rkf<N>s` = 10.213.N.1/24): the root namespace (pytest, the operator)
  reaches every host; the site reaches nothing outside itself. It has no default route, its only
  route to the root end answers from service ports only (policy rule: TCP from source ports
  1-49151 to 10.213.N.1, while the site's own outgoing connections take ports 49152-65535), so a
  connection opened from the site to the root namespace fails at once ("No route to host"), as
  does anything off the /24 ("Network is unreachable"); 127.0.0.0/8 is the site's own loopback.
  (So a service in the site on a port above 49151 does not answer the root namespace either.)
* "bastion": the same site without the root veth, plus a bastion: an sshd in a namespace of its
  own, dual-homed: `rkf<N>b` (root, 10.213.N.1) <-> its `eth0` (10.213.N.3, where it listens) and
  its `site0` (10.213.N.4) <-> the site's `eth0`. It does not forward (nor answer ARP for the
  site's addresses): from the root namespace, a connect to a host fails at once ("No route to
  host", after one 200 ms ARP probe). The hosts are reached through its sshd only (direct-tcpip),
  and their authorized_keys accept the client key from the bastion's addresses only.

Every namespace belongs to a holder process (`unshare -n` sleeping), never to a named
`ip netns` file: killing the processes ends the namespace, and the kernel removes the veth pairs
with it, so a crashed run leaves nothing on the machine. `down()` deletes the root veth end first
(if it is provably ours: same name and interface index as recorded) and waits until it is gone,
then ends every process left in the site's namespace, its holder last.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from rke2fleet_sandbox import netns
from rke2fleet_sandbox.hosts import SandboxError, said_ready
from rke2fleet_sandbox.state import ProcessRecord, SandboxHost, SiteRecord, StateLayout

NETWORKS = ("shared", "isolated", "bastion")
SITE_PREFIX = "10.213"
GATEWAY_OCTET = 1  # the root namespace's end
LB_OCTET = 2
BASTION_OCTET = 3  # where the bastion listens (its root-facing address)
BASTION_INNER_OCTET = 4  # the bastion's address on the site, where its connections to the hosts come from
FIRST_HOST_OCTET = 10
REPLY_TABLE = 100
NEIGH_PROBE_MS = 200
SERVICE_PORTS = "1-49151"  # replies from these source ports reach the root namespace (isolated)
EPHEMERAL_PORTS = "49152 65535"  # the site's outgoing connections: never routed to the root namespace
LINK_PREFIX = "rkf"
# A route this much wider than the site (a VPN's 10.0.0.0/8) is merely shadowed by it, not clashed with.
WIDEST_CLASHING_PREFIX = 16
IP_TIMEOUT = 10.0


def root_link_name(number: int, peer: str) -> str:
    """The root namespace's veth end: `rkf<N>s` (to the site) or `rkf<N>b` (to the bastion)."""
    return f"{LINK_PREFIX}{number}{peer[0]}"


# ---------------------------------------------------------------- allocation


def free_site_number() -> int:
    """The first N whose 10.213.N.0/24 no route of the root namespace touches and whose link names
    are free. Call under the sandboxes' address lock: the site's root link claims N once made."""
    routes = _root_routes()
    present = set(os.listdir("/sys/class/net"))
    for number in range(1, 255):
        block = ipaddress.ip_network(f"{SITE_PREFIX}.{number}.0/24")
        if any(root_link_name(number, peer) in present for peer in ("site", "bastion")):
            continue
        if any(route.overlaps(block) and route.prefixlen >= WIDEST_CLASHING_PREFIX for route in routes):
            continue
        return number
    raise SandboxError(f"no free {SITE_PREFIX}.N.0/24 block for a network site")


def _root_routes() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-j", "-4", "route", "show", "table", "all"], "listing the routes")
    nets = []
    for entry in json.loads(out or "[]"):
        dst = str(entry.get("dst", ""))
        if not dst or dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets.append(net)
    return nets


# ---------------------------------------------------------------- the site's holder


def start_site_holder(layout: StateLayout) -> subprocess.Popen[bytes]:
    """`unshare -n` sleeping: the site's network namespace lives as long as this process (and
    whatever else runs in it)."""
    with open(layout.logs / "site.holder.log", "ab") as log:
        return subprocess.Popen(
            ["unshare", "-n", "--", "sh", "-c", "echo ready; exec sleep infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )


def await_site_holder(proc: subprocess.Popen[bytes]) -> str:
    """Wait for the holder's `ready`; returns its network namespace link."""
    if not said_ready(proc):
        raise SandboxError("the network site's namespace could not be made (see logs/site.holder.log)")
    ns = netns.net_namespace(proc.pid)
    if ns is None or ns == netns.net_namespace(os.getpid()):
        raise SandboxError("the network site's holder has no network namespace of its own")
    return ns


# ---------------------------------------------------------------- wiring


def build_site(
    site: SiteRecord,
    host_addresses: Sequence[str],
    *,
    load_balancer: bool,
    bastion: SandboxHost | None = None,
) -> None:
    """Make the veth pairs and give every namespace its addresses, routes and rules.

    Sets `site.link` before making it, so that a failure half-way is still torn down. IPv6 is off
    on every veth (link-local addresses would be a way out of the site).
    """
    number = int(site.block.rsplit(".", 1)[1])
    gateway = site.address(GATEWAY_OCTET)
    site_lines = ["link set lo up", "link set eth0 up"]
    if load_balancer:
        site_lines.append(f"address add {site.address(LB_OCTET)}/24 dev eth0")
    site_lines += [f"address add {a}/24 dev eth0" for a in host_addresses]
    # Nothing in the site reaches the root namespace's end (the only route out it could have).
    site_lines.append(f"route add unreachable {gateway}/32")
    if bastion is None:
        site.link, site.link_peer = root_link_name(number, "site"), "site"
        _ip_batch(None, [
            f"link add {site.link} type veth peer name eth0 netns {site.holder.pid}",
            f"address add {gateway}/24 dev {site.link}",
            f"link set {site.link} up",
        ], sysctls=_no_ipv6(site.link), sysctls_after=True)  # fmt: skip
        site.link_index = ifindex(site.link) or 0
        # ... except the replies of the site's services to connections the root namespace opened.
        site_lines += [
            f"route add {gateway}/32 dev eth0 table {REPLY_TABLE}",
            f"rule add pref 100 to {gateway}/32 ipproto tcp sport {SERVICE_PORTS} lookup {REPLY_TABLE}",
        ]
    else:
        outer, inner = site.address(BASTION_OCTET), site.address(BASTION_INNER_OCTET)
        site.link, site.link_peer = root_link_name(number, "bastion"), "bastion"
        root_mac, bastion_mac = f"02:72:6b:{number:02x}:00:01", f"02:72:6b:{number:02x}:00:03"
        _ip_batch(None, [
            f"link add {site.link} address {root_mac} type veth"
            f" peer name eth0 address {bastion_mac} netns {bastion.pid}",
            f"link add site0 netns {bastion.pid} type veth peer name eth0 netns {site.holder.pid}",
            f"address add {gateway} peer {outer}/32 dev {site.link}",
            f"link set {site.link} up",
            # The bastion's address is pinned; the rest of the site is on-link here, and no one
            # answers ARP for it (the bastion is not a router, nor a proxy): a direct connect to a
            # host fails with "No route to host" once the one probe (NEIGH_PROBE_MS) goes unanswered.
            f"neighbour replace {outer} lladdr {bastion_mac} dev {site.link} nud permanent",
            f"route add {site.subnet} dev {site.link}",
        ], sysctls={
            **_no_ipv6(site.link),
            f"ipv4/neigh/{site.link}/mcast_solicit": "1",
            f"ipv4/neigh/{site.link}/retrans_time_ms": str(NEIGH_PROBE_MS),
        }, sysctls_after=True)  # fmt: skip
        site.link_index = ifindex(site.link) or 0
        _ip_batch(bastion.pid, [
            "link set lo up",
            "link set eth0 up",
            "link set site0 up",
            f"address add {outer}/32 peer {gateway}/32 dev eth0",
            f"address add {inner}/24 dev site0",
        ], sysctls={**_no_ipv6("eth0"), **_no_ipv6("site0")})  # fmt: skip
    _ip_batch(site.holder.pid, site_lines, sysctls={
        **_no_ipv6("eth0"),
        "ipv4/ip_local_port_range": EPHEMERAL_PORTS,
        "ipv4/conf/all/rp_filter": "0",
        "ipv4/conf/default/rp_filter": "0",
    })  # fmt: skip


def _no_ipv6(link: str) -> dict[str, str]:
    return {f"ipv6/conf/{link}/disable_ipv6": "1"} if os.path.isdir("/proc/sys/net/ipv6") else {}


def _ip_batch(
    pid: int | None, lines: Sequence[str], sysctls: dict[str, str] | None = None, sysctls_after: bool = False
) -> None:
    """`ip -batch -` in the network namespace of `pid` (None: this one), and set `sysctls` (paths
    under /proc/sys/net, which shows the namespace of the process reading it) before it, or after
    it (`sysctls_after`: the keys of a link the batch makes)."""
    writes = " && ".join(f"echo {shlex.quote(v)} > /proc/sys/net/{k}" for k, v in (sysctls or {}).items())
    if not writes:
        script = "exec ip -batch -"
    elif sysctls_after:
        script = f"ip -batch - && {writes}"
    else:
        script = f"{writes} && exec ip -batch -"
    argv = ["sh", "-c", script]
    if pid is not None:
        argv = ["nsenter", "-t", str(pid), "-n", "--", *argv]
    _run(argv, "wiring the network site", "\n".join(lines) + "\n")


def _run(argv: list[str], what: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise SandboxError(f"{what} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


# ---------------------------------------------------------------- teardown


def link_exists(name: str) -> bool:
    return bool(name) and os.path.exists(f"/sys/class/net/{name}")


def ifindex(name: str) -> int | None:
    """The interface index of a link of the root namespace (None: no such link)."""
    try:
        return int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    except (OSError, ValueError):
        return None


def _anchor(net_ns: str, records: Sequence[ProcessRecord | None]) -> ProcessRecord | None:
    """A live process of ours in the network namespace `net_ns`: while there is one, the namespace
    (whose inode could otherwise be recycled) is provably ours."""
    for record in records:
        if net_ns and record is not None and record.alive() and netns.net_namespace(record.pid) == net_ns:
            return record
    return None


def _site_records(site: SiteRecord, hosts: Sequence[SandboxHost]) -> list[ProcessRecord | None]:
    return [site.holder, *(r for h in hosts if h.net_ns == site.net_ns for r in (h.holder, h.sshd))]


def remove_root_link(
    site: SiteRecord | None, bastion: SandboxHost | None, hosts: Sequence[SandboxHost], timeout: float = 5.0
) -> bool:
    """Delete the root veth end, and wait until it is gone: the pair goes now, not whenever the
    kernel dismantles the namespaces. Only if it is provably ours: same name and interface index,
    or (index not recorded: setup failed half-way) a process we started lives at its other end.
    Otherwise the link went (or goes) with its namespace, and a link of that name may by now be
    another sandbox's: it is left alone. Returns False if our link is still there at the timeout."""
    if site is None or not link_exists(site.link):
        return True
    if site.link_index:
        owned = ifindex(site.link) == site.link_index
    elif site.link_peer == "bastion":
        owned = bastion is not None and _anchor(bastion.net_ns, [bastion.holder, bastion.sshd]) is not None
    else:
        owned = _anchor(site.net_ns, _site_records(site, hosts)) is not None
    if not owned:
        return True
    deadline = time.monotonic() + timeout
    while True:
        if site.link_index and ifindex(site.link) != site.link_index:
            return True  # gone (and maybe another sandbox's by now)
        subprocess.run(["ip", "link", "delete", site.link], capture_output=True, timeout=IP_TIMEOUT, check=False)
        if not link_exists(site.link):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def end_site(site: SiteRecord | None, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process left in the site's network namespace, its holder last (the namespace
    dies with it). Call after the hosts are ended. Returns the pids that would not die (empty on
    success)."""
    if site is None:
        return []
    deadline = time.monotonic() + timeout
    if _anchor(site.net_ns, [site.holder]) is not None:
        while left := [p for p in netns.pids_in_net_namespaces([site.net_ns])[site.net_ns] if p != site.holder.pid]:
            if time.monotonic() > deadline:
                return left
            _kill_all(left)
            time.sleep(0.01)
    # A holder whose namespace was never recorded (setup failed) is ended all the same.
    _kill_all([site.holder.pid] if site.holder.alive() else [])
    while site.holder.alive():
        if time.monotonic() > deadline:
            return [site.holder.pid]
        time.sleep(0.01)
    return []


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- the bastion's log

_LOGIN = re.compile(r"^Accepted \S+ for \S+ from ", re.MULTILINE)
# The originator is what the client says it is: OpenSSH's `-W` sends 127.0.0.1, asyncssh nothing.
_CHANNEL = re.compile(r"server_request_direct_tcpip\(\).*?: originator \S* ?port \d+, target (\S+) port (\d+)")


def bastion_logins(log: Path) -> int:
    """Accepted authentications in the bastion's sshd log (one per SSH connection that logged in)."""
    try:
        return len(_LOGIN.findall(log.read_text(errors="replace")))
    except FileNotFoundError:
        return 0


def bastion_channels(log: Path) -> list[str]:
    """`address:port` of every direct-tcpip channel the bastion opened, in order."""
    try:
        return [f"{a}:{p}" for a, p in _CHANNEL.findall(log.read_text(errors="replace"))]
    except FileNotFoundError:
        return []
