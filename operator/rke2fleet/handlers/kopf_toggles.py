"""Kopf's start-up with many objects, made linear (Kopf's `kopf._cogs.aiokits.aiotoggles`).

Kopf holds every object's worker until every object is indexed: a worker, once its object is
indexed, drops its toggle from a shared ToggleSet, then waits on the set's condition until all
toggles are gone. Each new or dropped toggle woke every waiter to re-check, so N objects cost
O(N^2) wake-ups: about 5 s of a saturated event loop at 1,000 RKE2Nodes on the bench machine,
and more than 18 minutes without an end at 10,000. What a waiter of the set waits for depends on
the set's state alone (`is_on()`), so a wake-up when that state did not change is wasted: here a
toggle is added or dropped, and the waiters woken only when the state changed. Same semantics,
O(N). (A single Toggle's own waiters are woken by its `turn_to`, which is left as it is.)

Applied only to a ToggleSet of the shape this was written against (Kopf 1.44.0 and 1.45.2 ship the
same file); otherwise Kopf is left alone, and tests/handlers/test_kopf_toggles.py fails on that
Kopf. This file imports nothing of rke2fleet: the bench's Kopf floors load it by path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MARK = "_rke2fleet_linear"


def patch_toggle_sets() -> bool:
    """Install the linear add/drop on Kopf's ToggleSet; False when Kopf's internals differ."""
    try:
        from kopf._cogs.aiokits import aiotoggles
    except ImportError:
        return False
    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, MARK, False):
        return True
    if not all(callable(getattr(cls, n, None)) for n in ("make_toggle", "drop_toggle", "drop_toggles", "is_on")):
        return False
    toggle_cls: Any = aiotoggles.Toggle

    async def make_toggle(self: Any, __val: bool = False, *, name: str | None = None) -> Any:
        toggle = toggle_cls(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggles(self: Any, toggles: Iterable[Any]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()

    async def drop_toggle(self: Any, toggle: Any) -> None:
        await drop_toggles(self, (toggle,))

    cls.make_toggle, cls.drop_toggle, cls.drop_toggles = make_toggle, drop_toggle, drop_toggles
    setattr(cls, MARK, True)
    return True
