"""A changed join token, rotated the RKE2 way (reference §4): `rke2 token rotate` on a serving
server (its datastore's bootstrap data is re-encrypted with the new token), then every node's
config.yaml and a restart, servers one at a time, then agents. Never a node restarted with a
token the datastore does not have (it would refuse to start), and never the old token again.

Which token the cluster runs with is read from its servers (the hash of their token files,
never the value, never stored): all agree, or during a rotation the server it ran on is right
(the others still hold the old one until they restart). The rotation's progress is in
`status.tokenRotation`; its intent is written before the rotate command, so a restarted
operator knows whether it happened.
"""

from __future__ import annotations

import datetime
import time

from rke2fleet.api import RKE2ClusterSpec
from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import TokenRotation
from rke2fleet.engine.access import Waiting, read_token, target_of, token_source
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import ClusterOutcome, Event
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.hostaccess import HostAccessError, redact
from rke2fleet.reconcile.tokens import ROTATE_ARGV, password_sha256, token_values

ROLLING = ("Rotating", "Servers", "Agents")


def recorded(crec: ClusterRecord) -> TokenRotation | None:
    raw = crec.status.get("tokenRotation")
    return TokenRotation.model_validate(raw) if isinstance(raw, dict) else None


def current_token(known: dict[str, str], rotation: TokenRotation | None) -> str | None:
    """The hash of the token the cluster runs with, from its servers' token files."""
    if len(set(known.values())) == 1:
        return next(iter(known.values()))
    if rotation and rotation.server in known:
        return known[rotation.server]
    return None


async def token_step(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, records: list[NodeRecord], out: ClusterOutcome
) -> tuple[str, str, bool] | None:
    """Keep the cluster on the token of its Secret. Returns (reason, message, stalled) while
    that keeps the cluster from being Ready; sets what the node passes read (the current token)."""
    try:
        token = await read_token(engine, crec.namespace, crec.name, cluster)
    except Waiting:
        return None
    want = password_sha256(token)
    servers = [r for r in records if r.role == "server"]
    files = engine.memory.server_tokens[crec.key]
    known = {s.name: files[s.name] for s in servers if s.name in files}
    rotation = recorded(crec)
    if not known:
        return None  # no server read yet (a new cluster: its init server bootstraps with the Secret's)
    current = current_token(known, rotation)
    if current is None:
        source = token_source(crec.namespace, crec.name, cluster)
        msg = ("the servers hold different join tokens and no rotation of this operator explains it (rotated by "
               f"hand?); make every server's token the one in {source}")  # fmt: skip
        return fail(crec, out, "TokenStateUnknown", msg, stalled=True)
    engine.memory.cluster_tokens[crec.key] = current
    if current == want:
        return roll(crec, records, known, want, rotation, out)
    return await rotate(engine, crec, cluster, servers, known, current, token, rotation, out)


def roll(crec: ClusterRecord, records: list[NodeRecord], known: dict[str, str], want: str,
         rotation: TokenRotation | None, out: ClusterOutcome) -> tuple[str, str, bool] | None:  # fmt: skip
    """The datastore has the new token: servers, then agents, restart with it (node passes)."""
    if rotation is None or rotation.phase not in ROLLING:
        return None

    def rolled(r: NodeRecord) -> bool:
        configured = r.condition_true("Configured") and r.serving
        return configured and (r.role != "server" or known.get(r.name) == want)

    done = sorted(r.name for r in records if rolled(r))
    servers_left = [r.name for r in records if r.role == "server" and r.name not in done]
    agents_left = [r.name for r in records if r.role == "agent" and r.name not in done]
    phase = "Servers" if servers_left else "Agents" if agents_left else "Done"
    out.status.token_rotation = rotation.model_copy(update={"phase": phase, "done": done})
    if phase != rotation.phase:  # their turn: look at them now, not at their next drift check
        out.recheck += servers_left if phase == "Servers" else agents_left
    if phase == "Done":
        out.events.append(Event("Normal", "TokenRotated", "every node runs with the new join token"))
        return None
    left = servers_left or agents_left
    return "TokenRotating", f"rolling the new join token: {len(done)}/{len(records)} nodes done, next {left[0]}", False


async def rotate(engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, servers: list[NodeRecord],
                 known: dict[str, str], current: str, token: str, rotation: TokenRotation | None,
                 out: ClusterOutcome) -> tuple[str, str, bool] | None:  # fmt: skip
    """`rke2 token rotate` on a serving server that holds the current token (rke2 reads the old
    one from its token file; the new one goes on stdin, never in argv)."""
    holders = sorted((s for s in servers if s.serving and known.get(s.name) == current),
                     key=lambda s: (rotation is None or s.name != rotation.server, s.name))  # fmt: skip
    if not holders:
        return "TokenRotationWaiting", "waiting for a serving server to rotate the join token on", False
    server = holders[0]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    intent = TokenRotation(phase="Rotating", server=server.name, done=[], started_at=now)
    await engine.store.patch_status("rke2clusters", crec.namespace, crec.name,
                                    {"tokenRotation": intent.model_dump(by_alias=True, mode="json")})  # fmt: skip
    try:
        target = await target_of(engine, cluster, server)
        res = await engine.hosts.run(target, ROTATE_ARGV, input=f"{token}\n".encode(), check=False,
                                     secret_values=token_values(token))  # fmt: skip
    except (HostAccessError, Waiting) as exc:
        return fail(crec, out, "TokenRotationFailed", f"rke2 token rotate on {server.name}: {exc}", stalled=False)
    if res.exit_status != 0:
        tail = redact(" ".join((res.stderr or res.stdout).split()[-25:]), token_values(token))
        msg = f"rke2 token rotate on {server.name} failed: {tail}"
        return fail(crec, out, "TokenRotationFailed", msg, stalled=False)
    engine.memory.saw_token(crec.key, server.name, password_sha256(token), time.monotonic())
    engine.memory.cluster_tokens[crec.key] = password_sha256(token)
    out.status.token_rotation = intent.model_copy(update={"phase": "Servers"})
    out.recheck += [s.name for s in servers]
    msg = f"rke2 token rotate on {server.name}: the datastore has the new token"
    out.events.append(Event("Normal", "TokenRotated", msg))
    return "TokenRotating", f"token rotated on {server.name}; the nodes restart with it next", False


def fail(crec: ClusterRecord, out: ClusterOutcome, reason: str, msg: str, *, stalled: bool) -> tuple[str, str, bool]:
    old = next((c for c in crec.status.get("conditions") or [] if c.get("type") == "TokenReady"), None)
    if not old or old.get("reason") != reason:
        out.events.append(Event("Warning", reason, msg))
    rotation = recorded(crec) or TokenRotation()
    out.status.token_rotation = rotation.model_copy(update={"phase": "Failed"})
    return reason, msg, stalled


def token_condition(step: tuple[str, str, bool] | None, out: ClusterOutcome) -> None:
    """TokenReady follows the rotation (the Secret's existence is judged before)."""
    if step is None:
        return
    reason, msg, _ = step
    out.conditions[:] = [c for c in out.conditions if c.type != "TokenReady"]
    out.conditions.append(Cond("TokenReady", False, reason, msg))
