"""The cluster's own view of its nodes: each Kubernetes Node's Ready condition and, for servers,
etcd membership (the `EtcdIsVoter` Node condition RKE2's etcd leader maintains), read with the
bundled kubectl on a server (reference §7): ONE command per read covers every node.

Status never claims more than this view shows: a unit that is active says nothing about the
kubelet, CNI or etcd, and a read that fails makes the answer Unknown, not the last one seen.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rke2fleet.hostaccess import HostAccessError, HostTarget, redact
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.paths import DEFAULT, Paths
from rke2fleet.reconcile.tokens import TOK_SHA256_FN

if TYPE_CHECKING:
    from rke2fleet.engine.ports import Hosts

NODES_MARK = "--nodes--"
ETCD_CONDITION = "EtcdIsVoter"
READ_TIMEOUT = 30.0



def health_script(paths: Paths = DEFAULT) -> str:
    """One command: the Node list (kubectl answers only while etcd has quorum) and which token
    the server's datastore is encrypted with (tokens.password_sha256 of it)."""
    token = shlex.quote(paths.token)
    return (
        "set +e\n"
        + TOK_SHA256_FN
        + f'out=$({shlex.join(kubectl.kubectl(paths, "get", "nodes", "-o", "json"))} 2>&1); rc=$?\n'
        + 'echo "kubectl_rc=$rc"\n'
        + f'[ -f {token} ] && echo "token_sha256=$(tok_sha256 {token})"\n'
        + f"echo {NODES_MARK}\n"
        + 'printf "%s\\n" "$out"\n'
    )


@dataclass(frozen=True)
class NodeHealth:
    """One Kubernetes Node as the cluster reports it."""

    name: str
    ready: bool | None  # its Ready condition: True / False / Unknown (None)
    ready_reason: str
    ready_message: str
    etcd: bool | None = None  # EtcdIsVoter: True / False / absent (None)
    etcd_reason: str = ""
    etcd_message: str = ""


@dataclass(frozen=True)
class ClusterHealth:
    """A read of the cluster's Nodes; `error` set when the Kubernetes API could not be read."""

    nodes: dict[str, NodeHealth] = field(default_factory=dict)
    read_at: float = 0.0  # time.monotonic() of the read
    source: str = ""  # the RKE2Node whose kubectl answered
    error: str | None = None
    token_sha256: str | None = None  # of the answering server's token password
    reports_etcd: bool = False  # some Node carries EtcdIsVoter (RKE2 releases since late 2023)

    @property
    def available(self) -> bool:
        return self.error is None

    def node(self, name: str) -> NodeHealth | None:
        return self.nodes.get(name)

    def serving(self, name: str, role: str) -> bool:
        """The node runs its part of the cluster: its Node is Ready and, for a server, it is a
        voting etcd member (a learner or an unhealthy member is not)."""
        n = self.nodes.get(name)
        if n is None or n.ready is not True:
            return False
        return role != "server" or n.etcd is True or (n.etcd is None and not self.reports_etcd)


def _condition(node: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def _tri(value: Any) -> bool | None:
    return True if value == "True" else False if value == "False" else None


def parse_health(
    stdout: str, *, source: str = "", secrets: Sequence[str] = (), read_at: float | None = None
) -> ClusterHealth:
    """`read_at`: when the command started (what it saw is at least that old); default now."""
    at = time.monotonic() if read_at is None else read_at
    head, _, body = stdout.partition(f"\n{NODES_MARK}\n")
    values = dict(line.partition("=")[::2] for line in head.splitlines() if "=" in line)
    token = values.get("token_sha256") or None
    if values.get("kubectl_rc") != "0":
        lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
        why = redact(lines[-1] if lines else "kubectl gave no answer", list(secrets))
        return ClusterHealth(read_at=at, source=source, error=why, token_sha256=token)
    try:
        items = json.loads(body)["items"]
    except (ValueError, KeyError, TypeError):
        return ClusterHealth(
            read_at=at, source=source, error="kubectl get nodes: unreadable output", token_sha256=token
        )
    nodes: dict[str, NodeHealth] = {}
    reports_etcd = False
    for item in items if isinstance(items, list) else []:
        name = str((item.get("metadata") or {}).get("name") or "")
        if not name:
            continue
        ready = _condition(item, "Ready") or {}
        etcd = _condition(item, ETCD_CONDITION)
        reports_etcd = reports_etcd or etcd is not None
        nodes[name] = NodeHealth(
            name=name,
            ready=_tri(ready.get("status")),
            ready_reason=str(ready.get("reason") or ("NoReadyCondition" if not ready else "")),
            ready_message=str(ready.get("message") or ""),
            etcd=None if etcd is None else _tri(etcd.get("status")),
            etcd_reason=str((etcd or {}).get("reason") or ""),
            etcd_message=str((etcd or {}).get("message") or ""),
        )
    return ClusterHealth(
        nodes=nodes, read_at=at, source=source, token_sha256=token, reports_etcd=reports_etcd
    )


# (RKE2Node name, its SSH target, the health script with its paths), in the order to try them.
Candidates = Callable[[], Awaitable[list[tuple[str, HostTarget, str]]]]


class HealthReader:
    """One cluster's health, read on demand through the first server that answers.

    Callers that ask at the same time share one read; a result younger than `max_age` is
    reused (0: a read that starts now or is already under way). Gates ask with 0. `since`
    (monotonic): only a read begun at or after it will do, neither a kept result nor one under
    way: after a node's (re)start, a read begun before it may show the node as it was.
    """

    def __init__(self) -> None:
        self.last: ClusterHealth | None = None
        self._inflight: asyncio.Task[ClusterHealth] | None = None
        self._inflight_at = 0.0

    async def read(
        self, hosts: Hosts, candidates: Candidates, *, max_age: float, secrets: Sequence[str] = (),
        since: float | None = None,
    ) -> ClusterHealth:  # fmt: skip
        now, last = time.monotonic(), self.last
        after = since is None or (last is not None and last.read_at >= since)
        if last is not None and max_age > 0 and now - last.read_at <= max_age and after:
            return last
        if self._inflight is None or self._inflight.done() or (since is not None and self._inflight_at < since):
            self._inflight_at = now
            self._inflight = asyncio.ensure_future(self._read(hosts, candidates, secrets))
        return await asyncio.shield(self._inflight)

    async def _read(self, hosts: Hosts, candidates: Candidates, secrets: Sequence[str]) -> ClusterHealth:
        errors: list[str] = []
        result: ClusterHealth | None = None
        for name, target, script in await candidates():
            started = time.monotonic()
            try:
                res = await hosts.run(target, script=script, check=False, timeout=READ_TIMEOUT)
            except HostAccessError as exc:
                errors.append(f"{name}: {exc}")
                continue
            health = parse_health(res.stdout, source=name, secrets=secrets, read_at=started)
            if health.available:
                result = health
                break
            errors.append(f"{name}: {health.error}")
            result = result or health  # keep the token seen, even without an API
        if result is None or not result.available:
            why = "; ".join(errors) or "no server to read the cluster's Nodes from"
            result = ClusterHealth(
                read_at=time.monotonic(),
                error=f"Kubernetes API not readable ({why})",
                token_sha256=result.token_sha256 if result else None,
            )
        if self.last is None or result.read_at >= self.last.read_at:  # reads may overlap (`since`)
            self.last = result
        return result
