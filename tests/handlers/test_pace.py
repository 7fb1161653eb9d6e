"""The pace of parked nodes' status writes."""

from __future__ import annotations

import asyncio
import time

from rke2fleet.handlers.state import Pace


async def test_turns_come_at_the_rate_in_the_order_asked() -> None:
    pace, order = Pace(100.0), []

    async def writer(i: int) -> None:
        await pace.turn()
        order.append(i)

    started = time.monotonic()
    await asyncio.gather(*(writer(i) for i in range(11)))
    assert order == list(range(11))
    assert time.monotonic() - started >= 0.095  # 10 gaps of 10 ms after the first turn


async def test_no_pace_at_rate_zero() -> None:
    pace = Pace(0.0)
    started = time.monotonic()
    for _ in range(1000):
        await pace.turn()
    assert time.monotonic() - started < 0.5
