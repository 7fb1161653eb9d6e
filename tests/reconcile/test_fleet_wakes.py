"""FleetState's two wake-ups: node timers woken together by a cluster change (a wake with no
waiter is dropped), and the cluster's timer marked dirty by node changes (the mark stays set
while the timer is busy, so a change during a pass is never lost)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rke2fleet.engine.records import NodeRecord
from rke2fleet.engine.turns import init_starting, until
from rke2fleet.handlers.indexes import summary_stamp
from rke2fleet.handlers.state import FleetState

C = ("default", "c1")


def fleet() -> FleetState:
    return FleetState(engine=None, store=None)  # type: ignore[arg-type]  # neither is used here


async def waited(coro: Any) -> float:
    t0 = time.monotonic()
    await coro
    return time.monotonic() - t0


async def test_nodes_woken_together_and_only_when_waiting() -> None:
    f, stopped = fleet(), asyncio.Event()
    waiters = [asyncio.ensure_future(waited(f.until_woken(C, 5.0, stopped))) for _ in range(3)]
    await asyncio.sleep(0.05)
    f.wake_nodes(C)
    assert all(t < 1.0 for t in await asyncio.gather(*waiters))
    f.wake_nodes(C)  # nobody waits: a node timer's next due pass reads the new state anyway
    assert await waited(f.until_woken(C, 0.3, stopped)) >= 0.25


async def test_cluster_dirty_mark_survives_a_busy_timer() -> None:
    f, stopped = fleet(), asyncio.Event()
    f.mark_cluster_dirty(C)  # while the timer was busy with a pass
    assert await waited(f.until_cluster_dirty(C, 5.0, stopped)) < 0.1
    # the mark was taken by that pass: the next wait lasts until a new change or the tick
    assert await waited(f.until_cluster_dirty(C, 0.3, stopped)) >= 0.25
    later = asyncio.ensure_future(waited(f.until_cluster_dirty(C, 5.0, stopped)))
    await asyncio.sleep(0.05)
    f.mark_cluster_dirty(C)
    assert await later < 1.0


async def test_stop_ends_both_waits() -> None:
    f, stopped = fleet(), asyncio.Event()
    waits = [asyncio.ensure_future(waited(f.until_woken(C, 5.0, stopped))),
             asyncio.ensure_future(waited(f.until_cluster_dirty(C, 5.0, stopped)))]
    await asyncio.sleep(0.05)
    stopped.set()
    assert all(t < 1.0 for t in await asyncio.gather(*waits))


def node(status: dict[str, Any], generation: int = 1, deleting: bool = False) -> NodeRecord:
    return NodeRecord("default", "n1", {"cluster": "c1", "role": "agent"}, status, generation, deleting)


def test_summary_stamp_ignores_what_the_cluster_does_not_read() -> None:
    base = {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}], "runningVersion": "v1", "plan": []}
    same = {**base, "plan": ["x"], "lastError": "old"}
    assert summary_stamp(node(base)) == summary_stamp(node(same))
    not_ready = {**base, "conditions": [{"type": "Ready", "status": "False"}]}
    assert summary_stamp(node(base)) != summary_stamp(node(not_ready))
    assert summary_stamp(node(base)) != summary_stamp(node(base, generation=2))  # a spec change
    assert summary_stamp(node(base)) != summary_stamp(node(base, deleting=True))


async def test_agents_stage_once_the_init_server_is_starting() -> None:
    def servers(phase: str | None) -> list[NodeRecord]:
        return [NodeRecord("default", "s1", {"cluster": "c1", "role": "server"}, {"phase": phase} if phase else {})]

    for phase in ("Starting", "Ready", "Failed", "Unreachable"):
        assert init_starting(servers(phase), "s1")
    assert init_starting(servers("Ready"), "gone")  # no such init server: no wait
    assert not init_starting(servers("Installing"), "s1")  # its install goes first
    listing = servers("Installing")
    later = asyncio.ensure_future(waited(until(lambda: init_starting(listing, "s1"))))
    await asyncio.sleep(0.5)
    assert not later.done()
    listing[0] = servers("Starting")[0]
    assert 0.5 <= await later < 1.5
