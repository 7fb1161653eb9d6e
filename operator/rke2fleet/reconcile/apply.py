"""Apply: run a plan's steps on a host, in order, each as its description says (steps.STEPS)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rke2fleet.hostaccess import CommandFailed, CommandTimeout
from rke2fleet.reconcile.plan import Plan
from rke2fleet.reconcile.steps import STEPS, Step, StepContext, StepFailed


@dataclass
class ApplyResult:
    done: list[Step] = field(default_factory=list)
    facts_after: str | None = None  # the facts script's output, when the plan ended with the wait


async def apply_plan(
    plan: Plan, ctx: StepContext, *, on_step: Callable[[Step], Awaitable[None]] | None = None
) -> ApplyResult:
    """`ctx.kubectl_target`: a serving server to cordon, drain and uncordon through (None: those
    steps are skipped, there is no server to ask). `ctx.facts_after`: a facts script run when a
    final readiness wait succeeds (its output in `result.facts_after`)."""
    result = ApplyResult()
    done_with_another: set[Step] = set()
    ctx.announce = on_step
    steps = plan.steps
    for index, step in enumerate(steps):
        kind = STEPS[step]
        if step in done_with_another or (kind.via_kubectl and ctx.kubectl_target is None):
            continue
        if on_step:
            await on_step(step)
        ctx.next_step = steps[index + 1] if index + 1 < len(steps) else None
        ctx.following = steps[index + 1 :]
        ctx.last = index == len(steps) - 1
        try:
            also = await kind.run(ctx)
        except CommandFailed as exc:
            failing = ctx.next_step if step is Step.ENABLE and ctx.next_step is Step.START else step
            raise StepFailed(failing, STEPS[failing].failure, f"{failing.value} failed: {exc}") from None
        except CommandTimeout as exc:
            if not kind.timeout_fails:
                raise
            # The host answered; what hangs is a download: not an unreachable host.
            msg = f"{step.value} did not finish within {exc.timeout:g}s (installer endpoint or mirror not answering?)"
            raise StepFailed(step, kind.failure, msg) from None
        result.done.append(step)
        result.done += also
        done_with_another.update(also)
    result.facts_after = ctx.facts_output
    return result
