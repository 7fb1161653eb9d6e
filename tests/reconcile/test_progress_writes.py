"""Which steps of a pass get a progress write (steps.writes_progress)."""

from __future__ import annotations

import pytest

from rke2fleet.reconcile.steps import Step, writes_progress

BRING_UP = (Step.INSTALL, Step.WRITE_CONFIG, Step.ENABLE, Step.START, Step.WAIT_READY)
STAGED = (Step.ENABLE, Step.START, Step.WAIT_READY)
CONFIG_CHANGE = (Step.WRITE_CONFIG, Step.RESTART, Step.WAIT_READY)
UPGRADE = (Step.CORDON, Step.DRAIN, Step.INSTALL, Step.RESTART, Step.WAIT_READY, Step.UNCORDON)


@pytest.mark.parametrize(
    ("steps", "written"),
    [
        (BRING_UP, [Step.INSTALL, Step.START, Step.WAIT_READY]),
        (STAGED, [Step.START, Step.WAIT_READY]),
        (CONFIG_CHANGE, [Step.RESTART, Step.WAIT_READY]),
        # cordon carries `cordoned` (a restarted operator must know); uncordon is last, so written
        (UPGRADE, [Step.CORDON, Step.DRAIN, Step.INSTALL, Step.RESTART, Step.WAIT_READY, Step.UNCORDON]),
        ((Step.ENABLE,), [Step.ENABLE]),  # nothing slow follows: its phase is the pass's phase
        ((Step.WRITE_CONFIG, Step.ENABLE), [Step.WRITE_CONFIG, Step.ENABLE]),
    ],
)
def test_quick_steps_before_a_slow_one_are_not_written(steps: tuple[Step, ...], written: list[Step]) -> None:
    assert [s for s in steps if writes_progress(s, steps)] == written
