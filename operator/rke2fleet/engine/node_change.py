"""The pass proper, over a node whose context is settled: facts → plan → guard and go-ahead →
stage or apply → the cluster's verdict."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from rke2fleet.api import SpecError, parse_duration, parse_node_spec
from rke2fleet.api.conditions import Cond
from rke2fleet.engine.access import Waiting, cluster_health, node_paths, target_of
from rke2fleet.engine.core import Engine
from rke2fleet.engine.node_certs import CertificateReads
from rke2fleet.engine.node_context import NodeContext
from rke2fleet.engine.node_guard import SERVERS_FIRST, TOKEN_WAITS, token_guard
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
from rke2fleet.reconcile.plan import Plan, plan_node
from rke2fleet.reconcile.readiness import Verdict, judge, kubernetes_conditions
from rke2fleet.reconcile.steps import STEPS, Step, StepContext, StepFailed, writes_progress

# Polls of the cluster's view while a started node's Kubernetes Node comes up (seconds; one read
# at a time, shared between the nodes waiting in the same cluster, so at most about 4 reads a
# second on one server while nodes come up). The poll is the bring-up's hand-over latency: a
# server's turn passes on, and the cluster counts the last agent, only when a read sees it.
SERVING_POLLS = (0.2,)
SERVING_POLL = 0.25
CERTIFICATES_AFTER_START = 5.0  # s: the next pass, which reads the certificates a first start issued


class Pass(CertificateReads):
    def __init__(self, engine: Engine, ctx: NodeContext) -> None:
        self.engine = engine
        self.ctx = ctx
        self.desired = ctx.desired
        self.cluster = ctx.cluster
        self.out = NodeOutcome()
        self.health_max_age = parse_duration(ctx.cluster.health_check_interval)
        self.facts: HostFacts | None = None
        self.staged: list[str] = []  # the plan's actions staged in this pass

    async def health(self, max_age: float, since: float | None = None) -> ClusterHealth:
        ns, cname = self.ctx.ckey
        return await cluster_health(
            self.engine, ns, cname, self.cluster, max_age=max_age, secrets=self.ctx.secrets, init=self.ctx.init,
            since=since,
        )  # fmt: skip

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
        """The host's facts, and with them the certificate check when one is due on a running node
        (one command either way)."""
        fold = bool(self.ctx.record.status.get("runningVersion")) and self.check_due()
        script = facts_for(self.desired)
        out = (await self.engine.hosts.run(self.ctx.target, script=certs.with_check(script) if fold else script)).stdout
        facts_out, self.checked = certs.split_check(out)
        self.facts = parse_facts(facts_out)
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
            await self.read_certificates(facts, force=False, read=self.checked)
            return judged(out, self.desired, facts, ctx.target, await self.verdict(facts))
        if report_only:
            v = await self.verdict(facts)
            out.conditions += [*steady_conditions(self.desired, facts, ctx.target), *v.parts, v.ready]
            out.status.phase = "Paused" if self.cluster.paused else v.phase
            return out
        return await self.change(facts, plan, guard)

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
        # A running node's restart rolls in the upgrade's batches, like a new version: the
        # bring-up's batch of 50 agents would restart a site's agents all at once.
        rolling = rotating == "Agents" or Step.ROTATE_CERTIFICATES in plan.steps or Step.RESTART in plan.steps
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
                if (guard is None or guard == "unknown") and self.out.host_actions and await self.await_turn():
                    # The turn came after the servers: the cluster's token has been read from one
                    # by now; if it is this one, the config is staged too and the pass goes on.
                    guard = token_guard(self.ctx, facts, plan, self.engine.memory.cluster_tokens.get(self.ctx.ckey))
                    failed = await self.stage(plan, config=True, only=Step.WRITE_CONFIG) if guard is None else None
                    if failed is not None:
                        return failed
                    allowed = GoAhead(False, TOKEN_WAITS[guard]) if guard else await self.go_ahead(plan)
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

    async def stage(self, plan: Plan, *, config: bool, only: Step | None = None) -> NodeOutcome | None:
        """Run the plan's install and (unless `config` is False: its token is not confirmed yet)
        config steps (`only` that one) on a node that is not running; the outcome of a failure,
        else None. Neither starts anything: RKE2 reads config.yaml only when it starts."""
        if self.desired.role != "server":  # the init server's own download goes first
            ns, cname = self.ctx.ckey
            await until(lambda: init_starting(self.engine.store.nodes(ns, cname), self.ctx.init))
        staged = plan.only(
            lambda s: STEPS[s].stage and (config or s is not Step.WRITE_CONFIG) and only in (None, s)
        )  # fmt: skip
        if not staged:
            return None
        try:
            await apply_plan(staged, self.step_context(background=True))
        except StepFailed as exc:
            return step_failed(self.out, self.ctx.target, exc)
        except HostAccessError as exc:
            return access_failure(exc, self.ctx.target)
        self.out.host_actions += len(staged.actions)
        done = set(staged.summary()) | set(self.staged)
        self.staged = [a for a in plan.summary() if a in done]
        self.out.status.plan = [a for a in plan.summary() if a not in done]
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
        # After a start RKE2 may have renewed them: read with the facts; a first start's (just
        # issued) are read by the node's next pass, with its facts, off the bring-up's path.
        starts = (Step.START in plan.steps or Step.RESTART in plan.steps) and self.known_certificates() is not None
        facts_after = facts_for(self.desired)
        ctx = self.step_context(
            kubectl_target=kubectl_target,
            kubectl_paths=kubectl_paths,
            facts_after=certs.with_check(facts_after) if starts else facts_after,
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
        facts_out, checked = certs.split_check(result.facts_after or "")
        try:
            after = parse_facts(facts_out) if result.facts_after is not None else await self.read_facts()
        except HostAccessError as exc:
            return access_failure(exc, target)
        except FactsError:
            return out
        return await self.judge_after(plan, result.done, after, started + readiness_timeout, readiness_timeout,
                                      checked)  # fmt: skip

    async def judge_after(self, plan: Plan, done: list[Step], after: HostFacts, deadline: float,
                          readiness_timeout: float, checked: tuple[int, str] | None = None) -> NodeOutcome:  # fmt: skip
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
            v, health = await self.await_serving(after, deadline, restarted=Step.RESTART in done)
            if not v.is_ready:
                out.conditions += v.parts
                msg = (
                    f"{desired.unit} is active but the node is not Ready after {readiness_timeout:.0f}s: "
                    f"{v.ready.message}"
                )
                return step_failed(out, self.ctx.target, StepFailed(Step.WAIT_READY, v.ready.reason, msg))
        started = any(s in done for s in (Step.START, Step.RESTART))
        deferred = started and self.known_certificates() is None
        if not deferred:
            await self.read_certificates(after, force=started, read=checked)
        took = time.monotonic() - (deadline - readiness_timeout)
        out.events.append(Event("Normal", "Reconciled", f"{', '.join(s.value for s in done)} done in {took:.1f}s"))
        out.status.plan = []
        res = judged(out, desired, after, self.ctx.target, await self.verdict(after, health))
        if deferred:  # a first start's certificates: read by a pass soon after, off the bring-up's path
            res.look_again = CERTIFICATES_AFTER_START
        return res

    async def await_serving(
        self, facts: HostFacts, deadline: float, *, restarted: bool = False
    ) -> tuple[Verdict, ClusterHealth | None]:
        """After a start: until the cluster says the node serves (its Node Ready, a server a
        voting etcd member) or `deadline` (monotonic) passed; the last verdict either way. Its
        unit being active says neither: the kubelet, CNI and etcd's promotion come after it."""
        polls = iter(SERVING_POLLS)
        # After a restart a read begun earlier may show the node Ready as it was; after a first
        # start it cannot (shared reads keep a bring-up's 47 agents from each asking server 1).
        since = time.monotonic() if restarted else None
        while True:
            health = await self.health(SERVING_POLL, since=since)
            v = await self.verdict(facts, health)
            if v.is_ready or time.monotonic() >= deadline or v.ready.reason == "VersionMismatch":
                return v, health
            await asyncio.sleep(min(next(polls, SERVING_POLL), max(deadline - time.monotonic(), 0.0)))
