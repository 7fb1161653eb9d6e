"""The join-token guard of a node pass: never a token the cluster does not run with."""

from __future__ import annotations

from rke2fleet.engine.node_context import NodeContext
from rke2fleet.reconcile.facts import HostFacts
from rke2fleet.reconcile.plan import Plan
from rke2fleet.reconcile.steps import Step
from rke2fleet.reconcile.tokens import password_sha256


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
