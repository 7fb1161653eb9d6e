"""conditions.py and handlers/status.py: kstatus conditions and the minimal status patch."""

from __future__ import annotations

from typing import Any

import pytest

from rke2fleet.api.conditions import Cond, merge_conditions, same_conditions, status_patch

T0, T1 = "2026-08-01T10:00:00Z", "2026-08-01T11:00:00Z"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: what the API server stores after a status merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conds}


@pytest.mark.parametrize(
    ("old_status", "new_status", "message", "ltt"),
    [
        (True, True, "same", T0),
        (True, True, "new message", T0),
        (True, False, "down", T1),
        (False, None, "unknown", T1),
        (None, None, "still unknown", T0),
    ],
)
def test_last_transition_time_changes_only_on_a_flip(
    old_status: bool | None, new_status: bool | None, message: str, ltt: str
) -> None:
    old = merge_conditions(None, [Cond("Ready", old_status, "R", "same")], 1, now=T0)
    new = by_type(merge_conditions(old, [Cond("Ready", new_status, "R", message)], 1, now=T1))["Ready"]
    assert new["lastTransitionTime"] == ltt
    assert new["message"] == message
    assert new["status"] == {True: "True", False: "False", None: "Unknown"}[new_status]


def test_merge_keeps_other_types_drops_named_ones_and_sets_observed_generation() -> None:
    old = merge_conditions(
        None, [Cond("Ready", True, "R"), Cond("Drifted", True, "D"), Cond("Other", True, "O")], 1, now=T0
    )
    new = by_type(merge_conditions(old, [Cond("Ready", True, "R")], 2, now=T1, drop=["Drifted"]))
    assert set(new) == {"Ready", "Other"}
    assert new["Ready"]["observedGeneration"] == 2
    assert new["Other"]["observedGeneration"] == 1
    assert "observedGeneration" not in merge_conditions(None, [Cond("Ready", True, "R")], None, now=T0)[0]


def test_same_conditions_ignores_order_and_timestamps() -> None:
    a = merge_conditions(None, [Cond("A", True, "x"), Cond("B", False, "y")], 1, now=T0)
    b = merge_conditions(None, [Cond("B", False, "y"), Cond("A", True, "x")], 1, now=T1)
    assert same_conditions(a, b)
    assert not same_conditions(a, merge_conditions(None, [Cond("A", True, "x"), Cond("B", True, "y")], 1, now=T0))


READY = [Cond("Ready", True, "Ready", "rke2-server is active")]
FIELDS: dict[str, Any] = {
    "phase": "Ready",
    "installedVersion": "v1.36.3+rke2r1",
    "lastError": None,
    "rollout": {"targetVersion": "v1.36.3+rke2r1", "phase": "Done", "halted": None},
}


def test_first_patch_then_nothing() -> None:
    first = status_patch({}, 3, FIELDS, READY)
    assert first["phase"] == "Ready" and first["observedGeneration"] == 3
    assert "lastError" not in first  # null for a key that is not there: nothing to delete
    assert {c["type"] for c in first["conditions"]} == {"Ready", "Reconciling", "Stalled"}
    stored = merge_patch({}, first)
    assert stored["rollout"] == {"targetVersion": "v1.36.3+rke2r1", "phase": "Done"}
    # The same pass again, against what the API server stored: an empty patch (no write at all).
    assert status_patch(stored, 3, FIELDS, READY) == {}


def test_only_what_changed() -> None:
    stored = merge_patch({}, status_patch({}, 3, FIELDS, READY))
    patch = status_patch(stored, 3, {**FIELDS, "installedVersion": "v1.36.4+rke2r1"}, READY)
    assert patch == {"installedVersion": "v1.36.4+rke2r1"}


def test_null_deletes_a_stored_key_once() -> None:
    stored = merge_patch({}, status_patch({}, 3, {**FIELDS, "lastError": "boom"}, READY))
    assert stored["lastError"] == "boom"
    patch = status_patch(stored, 3, FIELDS, READY)
    assert patch == {"lastError": None}
    stored = merge_patch(stored, patch)
    assert "lastError" not in stored
    assert status_patch(stored, 3, FIELDS, READY) == {}


def test_nested_null_clears_a_halt() -> None:
    halted = {**FIELDS, "rollout": {**FIELDS["rollout"], "phase": "Halted", "halted": {"node": "a1", "reason": "x"}}}
    stored = merge_patch({}, status_patch({}, 3, halted, READY))
    patch = status_patch(stored, 3, FIELDS, READY)
    assert set(patch) == {"rollout"}
    stored = merge_patch(stored, patch)
    assert "halted" not in stored["rollout"]
    assert status_patch(stored, 3, FIELDS, READY) == {}


def test_generation_change_updates_observed_generation_but_not_transition_times() -> None:
    stored = merge_patch({}, status_patch({}, 3, FIELDS, READY))
    patch = status_patch(stored, 4, FIELDS, READY)
    assert patch["observedGeneration"] == 4
    before, after = by_type(stored["conditions"]), by_type(patch["conditions"])
    for kind, cond in after.items():
        assert cond["observedGeneration"] == 4
        assert cond["lastTransitionTime"] == before[kind]["lastTransitionTime"]


def test_flip_to_failed_sets_stalled() -> None:
    stored = merge_patch({}, status_patch({}, 3, FIELDS, READY))
    patch = status_patch(stored, 3, {"phase": "Failed"}, [Cond("Ready", False, "InstallFailed", "install failed")])
    conds = by_type(patch["conditions"])
    assert conds["Ready"]["status"] == "False"
    assert conds["Stalled"]["status"] == "True" and conds["Stalled"]["reason"] == "InstallFailed"
    assert conds["Reconciling"]["status"] == "False"
    assert patch["phase"] == "Failed"
