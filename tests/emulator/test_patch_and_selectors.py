"""Pure patch and selector semantics."""

from __future__ import annotations

import pytest

from rke2fleet_sandbox.emulator_errors import ApiError
from rke2fleet_sandbox.emulator_patch import json_patch, merge_patch
from rke2fleet_sandbox.emulator_selectors import field_selector, label_selector


def test_merge_patch_rfc7386() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}, "e": {"f": None}}) == {"a": {"c": [3]}, "d": 1, "e": {}}
    assert doc == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # the input is untouched


def test_json_patch_operations_and_escaping() -> None:
    doc = {"metadata": {"annotations": {"a/b": "1"}, "finalizers": ["x"]}}
    out = json_patch(doc, [
        {"op": "add", "path": "/metadata/finalizers/-", "value": "y"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
        {"op": "copy", "from": "/metadata/annotations", "path": "/spec"},
        {"op": "move", "from": "/spec", "path": "/status"},
        {"op": "test", "path": "/status/a~1b", "value": "2"},
    ])
    assert out == {"metadata": {"annotations": {"a/b": "2"}, "finalizers": ["y"]}, "status": {"a/b": "2"}}


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/a", "value": 2}],
    [{"op": "remove", "path": "/missing"}],
    [{"op": "replace", "path": "/missing", "value": 1}],
    [{"op": "add", "path": "/x/y", "value": 1}],
])
def test_json_patch_failures_are_422_and_atomic(ops: list[dict[str, object]]) -> None:
    doc = {"a": 1}
    with pytest.raises(ApiError) as caught:
        json_patch(doc, [{"op": "add", "path": "/b", "value": 1}, *ops])
    assert caught.value.code == 422 and doc == {"a": 1}


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", True), ("app==web", True), ("app!=web", False), ("app in (web, db)", True),
    ("app notin (web)", False), ("app", True), ("!app", False), ("tier", False), ("!tier", True),
    ("app=web,tier!=x", True), ("app=web,tier=x", False), ("", True),
])
def test_label_selector(selector: str, expected: bool) -> None:
    assert label_selector(selector)({"metadata": {"labels": {"app": "web"}}}) is expected


def test_field_selector() -> None:
    obj = {"metadata": {"name": "n", "namespace": "ns"}, "involvedObject": {"kind": "RKE2Node"}}
    assert field_selector("metadata.name=n,metadata.namespace=ns")(obj)
    assert not field_selector("metadata.name!=n")(obj)
    assert field_selector("involvedObject.kind=RKE2Node")(obj)
    with pytest.raises(ApiError):
        field_selector("metadata.name")
