"""`rke2fleet plan`: what `apply` would change on each host, read and printed, nothing written
(neither to a host nor to the state directory). Secrets in config.yaml are shown redacted."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from rke2fleet.api import RKE2ClusterSpec, parse_cluster_spec, parse_node_spec
from rke2fleet.engine.access import Waiting, build_target, read_registry_credentials, read_token
from rke2fleet.engine.core import Engine, close, connect
from rke2fleet.engine.records import NodeRecord
from rke2fleet.hostaccess import HostAccessError
from rke2fleet.reconcile.desired import desired_node
from rke2fleet.reconcile.facts import FactsError, facts_for, parse_facts
from rke2fleet.reconcile.ordering import choose_init_server
from rke2fleet.reconcile.plan import Plan, plan_node
from rke2fleet.reconcile.rollout import upgrade_problem
from rke2fleet.reconcile.tokens import token_values
from rke2fleet.standalone.manifests import Manifests
from rke2fleet.standalone.state import FileStore, StateDir

GENERATED = "generated-by-apply"  # a token apply will generate: stands in for it, redacted anyway
REDACTED = "<redacted>"
# config.yaml keys whose values are secrets whatever they hold
SECRET_KEYS = re.compile(r"^(\s*)((?:agent-)?token|[\w.-]*(?:password|secret)[\w.-]*):.*$", re.MULTILINE)


@dataclass
class NodePlan:
    name: str
    role: str
    plan: Plan | None
    diff: list[str]
    error: str | None = None


def redact(text: str, secrets: list[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return SECRET_KEYS.sub(lambda m: f"{m.group(1)}{m.group(2)}: {REDACTED}", text)


class Planner:
    def __init__(self, engine: Engine, store: FileStore, cluster: RKE2ClusterSpec) -> None:
        self.engine, self.store, self.cluster = engine, store, cluster
        m = store.manifests
        self.crec = store.cluster(m.namespace, m.name)
        assert self.crec is not None
        self.records = store.nodes(m.namespace, m.name)
        servers = [(r.name, str(r.spec.get("address"))) for r in self.records if r.role == "server"]
        recorded = self.crec.status.get("initServer")
        self.init = recorded if recorded and any(n == recorded for n, _ in servers) else None
        self.init = self.init or choose_init_server(servers, cluster.registration_address, None)
        self.join = cluster.registration_address or next((a for n, a in servers if n == self.init), None)
        self.version = cluster.version or self.crec.status.get("targetVersion")

    async def token(self) -> str:
        try:
            return await read_token(self.engine, self.crec.namespace, self.crec.name, self.cluster,  # type: ignore[union-attr]
                                    verified=False)  # nothing is written: the cluster pass checks it on apply
        except Waiting:
            return GENERATED

    async def node(self, record: NodeRecord, token: str) -> NodePlan:
        node = parse_node_spec(record.spec)
        try:
            credentials = await read_registry_credentials(self.engine, record.namespace, self.cluster)
            desired = desired_node(self.cluster, node, name=record.name, token=token, is_init=record.name == self.init,
                                   join_address=self.join, version=self.version, credentials=credentials)  # fmt: skip
            target = await build_target(self.engine, record.namespace, self.cluster, node, record.status)
            res = await self.engine.hosts.run(target, script=facts_for(desired))
            facts = parse_facts(res.stdout)
            cordoned = bool(record.status.get("cordoned"))
            plan = plan_node(desired, facts, cordoned=cordoned, drain=self.cluster.upgrade.drain)
            diff: list[str] = []
            if facts.config_sha256 != desired.config_sha256:
                old = await self.engine.hosts.read_file(target, desired.paths.config) or b""
                secrets = [*token_values(token), GENERATED]
                diff = config_diff(old.decode(errors="replace"), desired.config.decode(), secrets)
        except (Waiting, HostAccessError, FactsError) as exc:
            return NodePlan(record.name, record.role, None, [], str(exc))
        return NodePlan(record.name, record.role, plan, diff)


def config_diff(old: str, new: str, secrets: list[str]) -> list[str]:
    old_lines = redact(old, secrets).splitlines(keepends=True)
    new_lines = redact(new, secrets).splitlines(keepends=True)
    diff = difflib.unified_diff(old_lines, new_lines, "config.yaml on the host", "config.yaml wanted")
    return [ln.rstrip("\n") for ln in diff]


def join_order(records: list[NodeRecord], init: str | None) -> str:
    servers = sorted((r.name for r in records if r.role == "server"), key=lambda n: (n != init, n))
    agents = sorted(r.name for r in records if r.role == "agent")
    text = " → ".join(servers)
    return text + (f", then agents {', '.join(agents)} (at most 50 at a time)" if agents else "")


async def plan(manifests: Manifests, state: StateDir, out: Callable[[str], None]) -> int:
    """Print what apply would do; 0: nothing to do, 2: changes pending, 1: a node could not be read."""
    cluster = parse_cluster_spec(manifests.cluster["spec"])
    store = FileStore(manifests, state)
    engine = connect(store)
    try:
        planner = Planner(engine, store, cluster)
        approved = planner.crec.status.get("targetVersion")  # type: ignore[union-attr]
        if approved and cluster.version and approved != cluster.version:
            problem = upgrade_problem(approved, cluster.version)
            what = f"refused: {problem[1]}" if problem else "rolling upgrade, servers first"
            out(f"version {approved} → {cluster.version}: {what}")
        token = await planner.token()
        plans = [await planner.node(r, token) for r in planner.records]
    finally:
        await close(engine)
    return report(plans, join_order(planner.records, planner.init), out)


def report(plans: list[NodePlan], order: str, out: Callable[[str], None]) -> int:
    changing = [p for p in plans if p.plan]
    for p in plans:
        if p.error:
            out(f"{p.name} ({p.role}): cannot read the host: {p.error}")
        elif p.plan:
            out(f"{p.name} ({p.role}):")
            for action in p.plan.summary():
                out(f"  {action}")
            for line in p.diff:
                out(f"    {line}")
    out(f"join order: {order}")
    out(f"{len(changing)} node(s) to change, {len(plans) - len(changing) - sum(1 for p in plans if p.error)} unchanged")
    if any(p.error for p in plans):
        return 1
    return 2 if changing else 0
