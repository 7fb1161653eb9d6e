"""The pass proper, over a node whose context is settled: facts → plan → guard and go-ahead →
stage or apply → the cluster's verdict."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from typing import Any

from rke2fleet.api import SpecError, parse_duration, parse_node_spec
from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import CertificatesStatus
from rke2fleet.engine.access import Waiting, cluster_health, node_paths, target_of
from rke2fleet.engine.core import Engine
from rke2fleet.engine.node_context import NodeContext
from rke2fleet.engine.node_results import (
    access_failure,
    drift_report,
    facts_status,
    judged,
    steady_conditions,
    step_failed,
)
from rke2fleet.engine.outcome import Event, NodeOutcome
from rke2fleet.engine.turns import await_turn, init_starting, until, verdict
from rke2fleet.hostaccess import CommandTimeout, HostAccessError, HostTarget, HostUnreachable
from rke2fleet.reconcile import certificates as certs
from rke2fleet.reconcile.apply import apply_plan
from rke2fleet.reconcile.facts import FactsError, HostFacts, facts_for, parse_facts
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.ordering import GoAhead
from rke2fleet.reconcile.paths import Paths
from rke2fleet.reconcile.plan import Action, Plan, plan_node
from rke2fleet.reconcile.readiness import Verdict, judge, kubernetes_conditions
from rke2fleet.reconcile.steps import STEPS, Step, StepContext, StepFailed, writes_progress
from rke2fleet.reconcile.tokens import password_sha256


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# Polls of the cluster's view while a started node's Kubernetes Node comes up (seconds; the
# reads are shared between the nodes waiting in the same cluster).
SERVING_POLLS = (0.2, 0.3, 0.5)
SERVING_POLL = 1.0


def token_guard(ctx: NodeContext, facts: HostFacts, plan: Plan, cluster_token: str | None) -> str | None:
    """None when the plan may write the desired token; else "unknown" (the cluster's token has
    not been read from a server yet) or "rotating" (the cluster does not run with the desired
    token yet: a node restarted with it would be refused; the cluster pass rotates it first)."""
    if Step.WRITE_CONFIG not in plan.steps:
        return None  # a config with a new token always shows as a config write
    if cluster_token is None:
        return None if ctx.is_init and not facts.token_present else "unknown"
    return None if cluster_token == password_sha256(ctx.token) else "rotating"


TOKEN_WAITS = {
    "unknown": "reading the cluster's join token from a server first",
    "rotating": "waiting for the cluster to rotate its join token to the new one",
}
SERVERS_FIRST = "waiting: the servers take the new join token first"


class Pass:
    def __init__(self, engine: Engine, ctx: NodeContext) -> None:
        self.engine = engine
        self.ctx = ctx
        self.desired = ctx.desired
        self.cluster = ctx.cluster
        self.out = NodeOutcome()
        self.health_max_age = parse_duration(ctx.cluster.health_check_interval)
        self.facts: HostFacts | None = None

    async def health(self, max_age: float) -> ClusterHealth:
        ns, cname = self.ctx.ckey
        return await cluster_health(
            self.engine, ns, cname, self.cluster, max_age=max_age, secrets=self.ctx.secrets, init=self.ctx.init
        )

    async def verdict(self, facts: HostFacts, health: ClusterHealth | None = None) -> Verdict:
        """Ready as the host and the cluster see it; the cluster is asked only about a running unit."""
        active = facts.unit(self.desired.role).is_active
        if active and health is None:
            health = await self.health(self.health_max_age)
        return judge(
            unit=self.desired.unit,
            active=active,
            running=facts.running_version if active else None,
            target=self.desired.version,
            node_name=self.desired.node_name,
            role=self.desired.role,
            health=health,
        )

    async def read_facts(self) -> HostFacts:
        script = facts_for(self.desired)
        self.facts = parse_facts((await self.engine.hosts.run(self.ctx.target, script=script)).stdout)
        return self.facts

    async def run(self) -> NodeOutcome:
        ctx, out = self.ctx, self.out
        try:
            facts = await self.read_facts()
        except HostAccessError as exc:
            lost = access_failure(exc, ctx.target)
            if isinstance(exc, HostUnreachable | CommandTimeout):
                # The cluster can still say how its Node fares without this host's answer.
                lost.conditions += kubernetes_conditions(
                    self.desired.node_name, self.desired.role, await self.health(self.health_max_age)
                )
            return lost
        except FactsError as exc:
            out.status.phase = "Failed"
            out.status.last_error = str(exc)
            out.retry_after = 15.0
            out.conditions.append(Cond("Reachable", True, "BadFacts", str(exc)))
            return out
        cordoned = bool(ctx.record.status.get("cordoned"))
        plan = plan_node(self.desired, facts, cordoned=cordoned, drain=self.cluster.upgrade.drain)
        out.token_sha256 = facts.token_sha256
        facts_status(out.status, facts, self.desired.addons_dir)
        out.status.plan = plan.summary()
        out.status.config_hash = facts.config_sha256
        settled = ctx.timer and ctx.record.phase in ("Ready", "Paused")
        report_only = self.cluster.paused or (ctx.timer and self.cluster.drift_policy == "Report")
        cluster_token = self.engine.memory.cluster_tokens.get(ctx.ckey)
        guard = token_guard(ctx, facts, plan, cluster_token) if plan and not report_only else None
        if settled:
            drift_report(out, plan.summary(), plan.drift_kinds(), report_only=report_only,
                         was_drifted=ctx.record.condition_true("Drifted"))  # fmt: skip
        if not plan and not report_only and facts.unit(self.desired.role).is_active:
            plan = self.certificate_rotation()
        if not plan:
            await self.read_certificates(facts, force=False)
            return judged(out, self.desired, facts, ctx.target, await self.verdict(facts))
        if report_only:
            v = await self.verdict(facts)
            out.conditions += [*steady_conditions(self.desired, facts, ctx.target), *v.parts, v.ready]
            out.status.phase = "Paused" if self.cluster.paused else v.phase
            return out
        return await self.change(facts, plan, guard)

    def certificate_rotation(self) -> Plan:
        """A settled node whose first certificate expires within rotateBeforeDays: rotate them
        (the service stopped), start it, wait for it; the rollout's gates apply."""
        days = self.cluster.certificates.rotate_before_days
        why = certs.rotation_due(self.known_certificates(), days, now())
        if why is None:
            return Plan(())
        if self.desired.role == "agent":  # servers first, as for upgrades
            servers = [r for r in self.engine.store.nodes(*self.ctx.ckey) if r.role == "server"]
            if any(certs.rotation_due(certs.certificates_of(r.status), days, now()) for r in servers):
                self.out.retry_after = 10.0
                return Plan(())
        unit = self.desired.unit
        actions = (
            Action(Step.ROTATE_CERTIFICATES, why),
            Action(Step.START, f"{unit} with new certificates"),
            Action(Step.WAIT_READY, f"{unit} starting"),
        )
        self.out.status.plan = [str(a) for a in actions]
        return Plan(actions)

    def known_certificates(self) -> CertificatesStatus | None:
        return certs.certificates_of(self.ctx.record.status)

    async def read_certificates(self, facts: HostFacts, *, force: bool) -> None:
        """The first certificate to expire, read about once per checkInterval (and after a start:
        RKE2 renews the ones close to expiry as it starts)."""
        known = self.known_certificates()
        if not facts.unit(self.desired.role).is_active:
            return
        if not force and not certs.check_due(known, self.cluster.certificates.check_interval, now()):
            return
        checked = CertificatesStatus(checked_at=certs.rfc3339(now()))
        try:
            res = await self.engine.hosts.run(self.ctx.target, script=certs.CHECK_SCRIPT, check=False)
            expiry = certs.parse_check(res.stdout) if res.exit_status == 0 else None
        except (HostAccessError, ValueError):
            expiry = None
        if expiry is not None:
            checked.not_after, checked.certificate = certs.rfc3339(expiry.not_after), expiry.certificate
        elif known is not None:  # unreadable now: keep what was read last, look again in an interval
            checked.not_after, checked.certificate = known.not_after, known.certificate
        self.out.status.certificates = checked

    async def go_ahead(self, plan: Plan) -> GoAhead:
        """Claim the node's turn (released at the end of the pass)."""
        ns, cname = self.ctx.ckey
        me = self.ctx.record.name
        fresh: ClusterHealth | None = None
        if any(r.serving or r.status.get("runningVersion") for r in self.engine.store.nodes(ns, cname) if r.name != me):
            # A live cluster: who serves is read from it now, never from a status written earlier
            # (never two servers down, agents only behind serving servers).
            fresh = await self.health(0)
            if not fresh.available:
                return GoAhead(False, f"cannot check the cluster before changing a node: {fresh.error}")
        rotating = (self.ctx.cluster_record.status.get("tokenRotation") or {}).get("phase")
        if rotating in ("Rotating", "Servers") and self.desired.role == "agent" and Step.WRITE_CONFIG in plan.steps:
            return GoAhead(False, SERVERS_FIRST)
        busy = self.engine.memory.busy[self.ctx.ckey]
        # The listing now, not at pass start (another pass may have claimed its turn meanwhile).
        records = self.engine.store.nodes(ns, cname)
        upgrade_to = self.ctx.version if plan.upgrades else None
        rolling = rotating == "Agents" or Step.ROTATE_CERTIFICATES in plan.steps
        allowed = verdict(me, records, busy, self.ctx.init, self.cluster, upgrade_to=upgrade_to, health=fresh,
                          rolling=rolling)  # fmt: skip
        if allowed.allowed:
            busy.add(me)
        return allowed

    async def change(self, facts: HostFacts, plan: Plan, guard: str | None) -> NodeOutcome:
        claims = plan.disruptive  # an allowed go-ahead claims the turn: released at the end
        if claims or guard:
            allowed = GoAhead(False, TOKEN_WAITS[guard]) if guard else await self.go_ahead(plan)
            active = facts.unit(self.desired.role).is_active
            if not allowed.allowed and not active:
                # Not running yet: install and configure now, so that only the start waits for
                # the turn (the fleet's downloads overlap the servers' bring-up) ...
                failed = await self.stage(plan, config=guard is None)
                if failed is not None:
                    return failed
                # ... and when the turn comes soon, go on with what we know of the host (just
                # staged) rather than another pass that would re-read it. A node with nothing
                # left to stage has just waited for its turn before the pass: not a second time.
                if guard is None and self.out.host_actions and await self.await_turn():
                    allowed = await self.go_ahead(plan)
                    if allowed.allowed:
                        plan = plan.only(lambda s: not STEPS[s].stage)
            if not allowed.allowed:
                return await self.wait_for_turn(facts, allowed, active)
        try:
            return await self.apply(plan)
        finally:
            if claims:
                self.engine.memory.busy[self.ctx.ckey].discard(self.ctx.record.name)

    async def await_turn(self) -> bool:
        return await await_turn(self.engine, self.ctx.record, self.ctx.init, self.cluster)

    async def wait_for_turn(self, facts: HostFacts, allowed: GoAhead, active: bool) -> NodeOutcome:
        out = self.out
        out.conditions += steady_conditions(self.desired, facts, self.ctx.target)
        if active:
            out.conditions += kubernetes_conditions(
                self.desired.node_name, self.desired.role, await self.health(self.health_max_age)
            )
        # A change is pending: not converged, whatever the node serves meanwhile.
        out.conditions.append(Cond("Ready", False, "Waiting", allowed.reason))
        out.status.phase = "Pending" if active else "Staged"
        out.retry_after = 3.0
        return out

    def step_context(self, **kw: Any) -> StepContext:
        return StepContext(
            hosts=self.engine.hosts,
            target=self.ctx.target,
            desired=self.desired,
            secrets=self.ctx.secrets,
            readiness_timeout=parse_duration(self.cluster.readiness_timeout),
            drain_timeout=parse_duration(self.cluster.upgrade.drain_timeout),
            facts=self.facts,
            **kw,
        )

    async def stage(self, plan: Plan, *, config: bool) -> NodeOutcome | None:
        """Run the plan's install and (unless `config` is False: its token is not confirmed yet)
        config steps on a node that is not running; the outcome of a failure, else None. Neither
        starts anything: RKE2 reads config.yaml only when it starts."""
        if self.desired.role != "server":  # the init server's own download goes first
            ns, cname = self.ctx.ckey
            await until(lambda: init_starting(self.engine.store.nodes(ns, cname), self.ctx.init))
        staged = plan.only(lambda s: STEPS[s].stage and (config or s is not Step.WRITE_CONFIG))
        if not staged:
            return None
        try:
            await apply_plan(staged, self.step_context(background=True))
        except StepFailed as exc:
            return step_failed(self.out, self.ctx.target, exc)
        except HostAccessError as exc:
            return access_failure(exc, self.ctx.target)
        self.out.host_actions = len(staged.actions)
        self.out.status.plan = [a for a in plan.summary() if a not in staged.summary()]
        return None

    async def kubectl_on(self) -> tuple[HostTarget | None, Paths]:
        """A serving server to cordon, drain and uncordon through (another one when there is
        one; a server itself otherwise), with its paths."""
        ns, cname = self.ctx.ckey
        me = self.ctx.record.name
        serving = sorted(
            (r for r in self.engine.store.nodes(ns, cname) if r.name != me and r.role == "server" and r.serving),
            key=lambda r: r.name,
        )
        if serving:
            with contextlib.suppress(Waiting, SpecError):  # no credentials for it: this node then
                node = parse_node_spec(serving[0].spec)
                return await target_of(self.engine, self.cluster, serving[0]), node_paths(self.cluster, node)
        if self.desired.role == "server":
            return self.ctx.target, self.desired.paths
        return None, self.desired.paths

    async def progress(self, plan: Plan, step: Step, written: list[str]) -> None:
        """Progress for people watching `kubectl get rkn -w`, and what a restarted operator must
        know (cordoned): written before the step and before the final status."""
        kind = STEPS[step]
        if not writes_progress(step, plan.steps) or (not kind.progress and written and written[-1] == kind.phase):
            return
        written.append(kind.phase)
        fields = {"phase": kind.phase, "plan": plan.summary(), **kind.progress}
        try:
            await self.engine.store.patch_status("rke2nodes", self.ctx.record.namespace, self.ctx.record.name, fields)
            self.out.progress.update(fields)
        except Exception:  # progress is a nicety: never fail the pass over it
            return

    async def apply(self, plan: Plan) -> NodeOutcome:
        out, target = self.out, self.ctx.target
        written: list[str] = []
        started = time.monotonic()
        readiness_timeout = parse_duration(self.cluster.readiness_timeout)
        kubectl_target, kubectl_paths = (
            await self.kubectl_on() if any(STEPS[s].via_kubectl for s in plan.steps) else (None, self.desired.paths)
        )
        ctx = self.step_context(
            kubectl_target=kubectl_target,
            kubectl_paths=kubectl_paths,
            facts_after=facts_for(self.desired),
        )
        try:
            result = await apply_plan(plan, ctx, on_step=lambda step: self.progress(plan, step, written))
        except StepFailed as exc:
            return step_failed(out, target, exc)
        except HostAccessError as exc:
            failed = access_failure(exc, target)
            for name in out.status.model_fields_set - failed.status.model_fields_set:
                setattr(failed.status, name, getattr(out.status, name))
            failed.host_actions = 1
            return failed
        out.host_actions = len(result.done)
        # Re-read so the status reports what is on the host, not what we hoped for (read by the
        # readiness wait when the plan ended with it).
        try:
            after = parse_facts(result.facts_after) if result.facts_after is not None else await self.read_facts()
        except HostAccessError as exc:
            return access_failure(exc, target)
        except FactsError:
            return out
        return await self.judge_after(plan, result.done, after, started + readiness_timeout, readiness_timeout)

    async def judge_after(self, plan: Plan, done: list[Step], after: HostFacts, deadline: float,
                          readiness_timeout: float) -> NodeOutcome:  # fmt: skip
        out, desired = self.out, self.desired
        active = after.unit(desired.role).is_active
        facts_status(out.status, after, self.desired.addons_dir)
        out.status.config_hash = after.config_sha256
        out.status.running_version = after.running_version if active else None
        out.token_sha256 = after.token_sha256
        if Step.UNCORDON in done:
            out.status.cordoned = False
        if desired.version and active and after.running_version != desired.version:
            msg = f"{desired.unit} is active but runs {after.running_version}, not {desired.version}"
            return step_failed(out, self.ctx.target, StepFailed(Step.WAIT_READY, "VersionMismatch", msg))
        health: ClusterHealth | None = None
        if Step.WAIT_READY in done and active:
            # The turn is held until the cluster says the node serves: the next server may not join
            # while this one is an etcd learner, and a rollout halts on a node that never comes back.
            v, health = await self.await_serving(after, deadline)
            if not v.is_ready:
                out.conditions += v.parts
                msg = (
                    f"{desired.unit} is active but the node is not Ready after {readiness_timeout:.0f}s: "
                    f"{v.ready.message}"
                )
                return step_failed(out, self.ctx.target, StepFailed(Step.WAIT_READY, v.ready.reason, msg))
        await self.read_certificates(after, force=any(s in done for s in (Step.START, Step.RESTART)))
        took = time.monotonic() - (deadline - readiness_timeout)
        out.events.append(Event("Normal", "Reconciled", f"{', '.join(s.value for s in done)} done in {took:.1f}s"))
        out.status.plan = []
        return judged(out, desired, after, self.ctx.target, await self.verdict(after, health))

    async def await_serving(self, facts: HostFacts, deadline: float) -> tuple[Verdict, ClusterHealth | None]:
        """After a start: until the cluster says the node serves (its Node Ready, a server a
        voting etcd member) or `deadline` (monotonic) passed; the last verdict either way. Its
        unit being active says neither: the kubelet, CNI and etcd's promotion come after it."""
        polls = iter(SERVING_POLLS)
        while True:
            health = await self.health(0.5)
            v = await self.verdict(facts, health)
            if v.is_ready or time.monotonic() >= deadline or v.ready.reason == "VersionMismatch":
                return v, health
            await asyncio.sleep(min(next(polls, SERVING_POLL), max(deadline - time.monotonic(), 0.0)))
