"""Kopf's index readiness toggles: linear with the patch, and the same semantics."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from rke2fleet.handlers.kopf_toggles import patch_toggle_sets


def test_the_installed_kopf_takes_the_patch() -> None:
    assert patch_toggle_sets()
    assert patch_toggle_sets()  # idempotent


async def test_workers_wait_for_all_indexed_with_one_wake_up() -> None:
    """As Kopf's workers do at start-up: each adds its toggle, drops it once indexed, then waits
    for the whole set; waiters are woken once, when the last toggle goes, not per drop."""
    patch_toggle_sets()
    tset = aiotoggles.ToggleSet(all)
    blocker = await tset.make_toggle(name="orchestration blocker")
    notified = 0
    original = tset._condition.notify_all

    def counting() -> None:
        nonlocal notified
        notified += 1
        original()

    tset._condition.notify_all = counting  # type: ignore[method-assign]
    done: list[int] = []

    async def worker(i: int) -> None:
        mine = await tset.make_toggle(name=str(i))
        await asyncio.sleep(0)
        await tset.drop_toggle(mine)
        await tset.wait_for(True)
        done.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(300)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not done and tset.is_off()
    await tset.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(done) == list(range(300))
    assert notified == 1  # unpatched Kopf: 2 per worker (its add and its drop) + 1


async def test_state_changes_still_wake_waiters_both_ways() -> None:
    patch_toggle_sets()
    tset = aiotoggles.ToggleSet(any)  # as Kopf's operator pause: on while any toggle is on
    on = asyncio.create_task(tset.wait_for(True))
    await asyncio.sleep(0)
    toggle = await tset.make_toggle(True, name="paused")
    await asyncio.wait_for(on, 1)
    off = asyncio.create_task(tset.wait_for(False))
    await asyncio.sleep(0)
    await tset.drop_toggles([toggle])
    await asyncio.wait_for(off, 1)
    flip = await tset.make_toggle(False, name="later")
    on_again = asyncio.create_task(tset.wait_for(True))
    await asyncio.sleep(0)
    await flip.turn_to(True)  # a single toggle's turn is Kopf's own, unpatched
    await asyncio.wait_for(on_again, 1)
