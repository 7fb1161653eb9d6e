"""health.py (the cluster's own view), readiness.py (when a node is Ready), quorum.py, and the
token hash that the hosts compute in `sh` and the operator in Python."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rke2fleet.reconcile.health import NODES_MARK, ClusterHealth, HealthReader, health_script, parse_health
from rke2fleet.reconcile.paths import Paths
from rke2fleet.reconcile.quorum import removal_verdict
from rke2fleet.reconcile.readiness import judge
from rke2fleet.reconcile.tokens import TOK_SHA256_FN, password_sha256

V = "v1.36.3+rke2r1"


def node(name: str, ready: str = "True", etcd: tuple[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    conds = [{"type": "Ready", "status": ready, "reason": {"True": "KubeletReady"}.get(ready, "KubeletNotReady"),
              "message": "kubelet is posting ready status" if ready == "True" else "cni plugin not initialized"}]
    if etcd:
        conds.append({"type": "EtcdIsVoter", "status": etcd[0], "reason": etcd[1], "message": etcd[1]})
    return {"metadata": {"name": name}, "spec": extra, "status": {"conditions": conds,
            "nodeInfo": {"kubeletVersion": V}}}  # fmt: skip


def output(items: list[dict[str, Any]], rc: int = 0, token: str | None = "ab" * 32, body: str | None = None) -> str:
    head = f"kubectl_rc={rc}\n" + (f"token_sha256={token}\n" if token else "")
    return f"{head}{NODES_MARK}\n{body if body is not None else json.dumps({'items': items})}\n"


VOTER = ("True", "MemberNotLearner")
LEARNER = ("False", "MemberIsLearner")
UNHEALTHY = ("False", "Unhealthy")


def test_parse_reads_ready_etcd_and_token() -> None:
    items = [node("s1", etcd=VOTER), node("s2", etcd=LEARNER), node("a1", "False")]
    h = parse_health(output(items))
    assert h.available and h.reports_etcd and h.token_sha256 == "ab" * 32
    assert h.serving("s1", "server") and not h.serving("s2", "server") and not h.serving("a1", "agent")
    assert h.nodes["a1"].ready is False and h.nodes["a1"].ready_reason == "KubeletNotReady"
    assert not h.serving("missing", "agent")


def test_api_errors_make_the_view_unavailable_and_are_redacted() -> None:
    body = "Error from server: etcdserver: request timed out s3cr3t"
    h = parse_health(output([], rc=1, body=body), secrets=["s3cr3t"])
    assert not h.available and "request timed out" in (h.error or "") and "s3cr3t" not in (h.error or "")
    assert h.token_sha256 == "ab" * 32  # what the server holds is known even without an API
    assert not parse_health(output([], body="not json")).available


def test_releases_without_etcd_report_count_server_nodes_as_voters() -> None:
    h = parse_health(output([node("s1"), node("s2")]))
    assert not h.reports_etcd and h.serving("s1", "server")


def judge_with(health: ClusterHealth | None, *, active: bool = True, running: str | None = V, role: str = "server",
               name: str = "s1") -> tuple[bool | None, str, str]:  # fmt: skip
    v = judge(unit="rke2-server", active=active, running=running, target=V, node_name=name, role=role, health=health)
    return v.ready.status, v.ready.reason, v.phase


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([node("s1", etcd=VOTER)], (True, "Ready", "Ready")),
        ([node("s1", "False", etcd=VOTER)], (False, "NodeNotReady", "NotReady")),
        ([node("s1", "Unknown", etcd=VOTER)], (False, "NodeNotReady", "NotReady")),
        ([node("s1", etcd=LEARNER)], (False, "EtcdMemberIsLearner", "NotReady")),
        ([node("s1", etcd=UNHEALTHY)], (False, "EtcdUnhealthy", "NotReady")),
        ([node("s2", etcd=VOTER)], (False, "NodeNotRegistered", "NotReady")),
        ([node("s1")], (True, "Ready", "Ready")),  # a release that does not report etcd membership
    ],
)
def test_ready_needs_the_cluster_to_count_the_node(items: list[dict[str, Any]], expected: tuple[Any, ...]) -> None:
    assert judge_with(parse_health(output(items))) == expected


def test_ready_needs_an_active_unit_the_target_version_and_a_readable_cluster() -> None:
    healthy = parse_health(output([node("s1", etcd=VOTER)]))
    assert judge_with(healthy, active=False) == (False, "NotActive", "Starting")
    assert judge_with(healthy, running="v1.35.7+rke2r1") == (False, "VersionMismatch", "Pending")
    down = ClusterHealth(error="Kubernetes API not readable (s1: etcdserver: request timed out)")
    assert judge_with(down) == (None, "KubernetesAPIUnavailable", "NotReady")
    agent = parse_health(output([node("a1")]))
    assert judge_with(agent, role="agent", name="a1") == (True, "Ready", "Ready")


def members(*specs: tuple[str, str, tuple[str, str]]) -> ClusterHealth:
    return parse_health(output([node(n, r, etcd=e) for n, r, e in specs]))


def test_removal_keeps_a_quorum_of_the_voters_left() -> None:
    three = members(("s1", "True", VOTER), ("s2", "True", VOTER), ("s3", "True", VOTER))
    assert removal_verdict(three, "s3", ["s1", "s2", "s3"]).allowed
    one_down = members(("s1", "True", VOTER), ("s2", "Unknown", UNHEALTHY), ("s3", "True", VOTER))
    refused = removal_verdict(one_down, "s3", ["s1", "s2", "s3"])
    assert not refused.allowed and "s2" in refused.reason and "quorum" in refused.reason
    assert removal_verdict(one_down, "s2", ["s1", "s2", "s3"]).allowed  # the broken one may go
    five = members(*[(f"s{i}", "True", VOTER) for i in range(1, 5)], ("s5", "True", LEARNER))
    assert removal_verdict(five, "s5", []).allowed  # a learner does not vote
    assert not removal_verdict(ClusterHealth(error="no API"), "s1", []).allowed


class SlowPool:
    """One server that answers every read after 50 ms; `started`: when each read began."""

    def __init__(self, started: list[float]) -> None:
        self.started = started

    async def run(self, target: Any, **kw: Any) -> Any:
        self.started.append(time.monotonic())
        await asyncio.sleep(0.05)
        return type("R", (), {"stdout": output([node("s1", etcd=VOTER)])})()


async def candidates() -> list[tuple[str, Any, str]]:
    return [("s1", object(), "script")]


def test_shared_reads_and_max_age() -> None:
    calls: list[float] = []

    def Pool() -> SlowPool:
        return SlowPool(calls)

    async def scenario() -> None:
        reader = HealthReader()
        results = await asyncio.gather(*(reader.read(Pool(), candidates, max_age=0) for _ in range(5)))  # type: ignore[arg-type]
        assert len(calls) == 1 and all(r is results[0] for r in results)
        assert await reader.read(Pool(), candidates, max_age=60) is results[0]  # type: ignore[arg-type]
        await reader.read(Pool(), candidates, max_age=0)  # type: ignore[arg-type]
        assert len(calls) == 2

    asyncio.run(scenario())


def test_a_read_begun_before_since_is_neither_kept_nor_joined() -> None:
    """After a node's restart its wait may not take a read that began before it: the node
    would be seen as it was (Ready), and the rollout's turn passed on while it is down."""
    started: list[float] = []

    def Pool() -> SlowPool:
        return SlowPool(started)

    async def scenario() -> None:
        reader = HealthReader()
        early = asyncio.ensure_future(reader.read(Pool(), candidates, max_age=0))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # under way
        since = time.monotonic()
        late = await reader.read(Pool(), candidates, max_age=60, since=since)  # type: ignore[arg-type]
        assert len(started) == 2 and late.read_at >= since
        first = await early
        assert first.read_at < since and reader.last is late  # the older read does not replace it
        assert await reader.read(Pool(), candidates, max_age=60, since=since) is late  # type: ignore[arg-type]
        assert len(started) == 2
        await reader.read(Pool(), candidates, max_age=60, since=time.monotonic())  # type: ignore[arg-type]
        assert len(started) == 3

    asyncio.run(scenario())


def test_unreadable_from_every_server() -> None:
    class Pool:
        async def run(self, target: Any, **kw: Any) -> Any:
            return type("R", (), {"stdout": output([], rc=1, body="The connection to the server was refused")})()

    async def candidates() -> list[tuple[str, Any, str]]:
        return [("s1", object(), "script"), ("s2", object(), "script")]

    h = asyncio.run(HealthReader().read(Pool(), candidates, max_age=0))  # type: ignore[arg-type]
    assert not h.available and "s1:" in (h.error or "") and "s2:" in (h.error or "")


@pytest.mark.parametrize(
    "token",
    ["short-token", "K10" + "ab" * 32 + "::server:p4ss", "K10" + "cd" * 32 + "::node:with:colons", "t0k$n 'q\""],
)
def test_hosts_and_operator_hash_the_same_password(tmp_path: Path, token: str) -> None:
    """The facts and health scripts hash the token file in `sh`; the operator hashes its token in
    Python: a server's file holds the secure form of whatever short or secure token it was given."""
    ca = "ef" * 32
    secure = token if token.startswith("K10") else f"K10{ca}::server:{token}"
    (tmp_path / "token").write_text(secure + "\n")
    script = TOK_SHA256_FN + f'tok_sha256 {tmp_path / "token"}\ntok_sha256 {tmp_path / "missing"}\n'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == [password_sha256(token)]


def test_health_script_is_valid_sh() -> None:
    subprocess.run(["sh", "-n", "-c", health_script()], check=True)
    moved = health_script(Paths(data_dir="/data/rke2 x"))
    assert "'/data/rke2 x/server/token'" in moved and "'/data/rke2 x/bin/kubectl'" in moved
