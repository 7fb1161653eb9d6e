"""API-server semantics over HTTP against the in-loop emulator."""

from __future__ import annotations

import base64
import re

from tests.emulator.conftest import CLUSTERS, Api, cluster


async def test_create_sets_server_fields(api: Api) -> None:
    obj = await api.ok("POST", CLUSTERS, cluster("a"))
    meta = obj["metadata"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1 and meta["namespace"] == "default"
    other = await api.ok("POST", CLUSTERS, cluster("b"))
    assert int(other["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert other["metadata"]["uid"] != meta["uid"]


async def test_duplicate_create_is_409_already_exists(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("a"))
    status, body = await api.call("POST", CLUSTERS, cluster("a"))
    assert status == 409
    assert body["kind"] == "Status" and body["reason"] == "AlreadyExists" and body["code"] == 409
    assert body["details"]["name"] == "a"


async def test_missing_object_is_404_status(api: Api) -> None:
    status, body = await api.call("GET", f"{CLUSTERS}/nope")
    assert status == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'rke2clusters.rke2fleet.io "nope" not found', "reason": "NotFound",
                    "code": 404, "details": {"group": "rke2fleet.io", "kind": "rke2clusters", "name": "nope"}}
    status, body = await api.call("GET", "/apis/rke2fleet.io/v1alpha1/namespaces/default/unknowns")
    assert status == 404 and body["reason"] == "NotFound"


async def test_create_in_missing_namespace_is_404(api: Api) -> None:
    status, body = await api.call("POST", "/apis/rke2fleet.io/v1alpha1/namespaces/ghost/rke2clusters",
                                  cluster("a"))
    assert status == 404 and body["details"]["kind"] == "namespaces"


async def test_stale_resource_version_conflicts(api: Api) -> None:
    created = await api.ok("POST", CLUSTERS, cluster("a"))
    stale = created["metadata"]["resourceVersion"]
    await api.ok("PATCH", f"{CLUSTERS}/a", {"spec": {"version": "v1.36.3+rke2r1"}},
                 content_type="application/merge-patch+json")
    # PUT carrying the old resourceVersion
    status, body = await api.call("PUT", f"{CLUSTERS}/a", created)
    assert status == 409 and body["reason"] == "Conflict"
    # merge patch carrying the old resourceVersion
    status, body = await api.merge(f"{CLUSTERS}/a", {"metadata": {"resourceVersion": stale},
                                                     "spec": {"version": "x"}})
    assert status == 409 and body["reason"] == "Conflict"
    current = await api.ok("GET", f"{CLUSTERS}/a")
    assert current["spec"]["version"] == "v1.36.3+rke2r1"
    # PUT with the current one succeeds and bumps it
    current["spec"]["version"] = "v1.36.4+rke2r1"
    replaced = await api.ok("PUT", f"{CLUSTERS}/a", current)
    assert int(replaced["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])


async def test_json_patch_failed_test_is_rejected_unchanged(api: Api) -> None:
    created = await api.ok("POST", CLUSTERS, cluster("a"))
    await api.merge(f"{CLUSTERS}/a", {"metadata": {"labels": {"x": "1"}}})
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
           {"op": "add", "path": "/metadata/finalizers", "value": ["fleet"]}]
    status, body = await api.jsonpatch(f"{CLUSTERS}/a", ops)
    # Like the real server (and as Kopf expects): 422 Unprocessable Entity, nothing applied.
    assert status == 422 and body["kind"] == "Status"
    assert "finalizers" not in (await api.ok("GET", f"{CLUSTERS}/a"))["metadata"]
    fresh = await api.ok("GET", f"{CLUSTERS}/a")
    ops[0]["value"] = fresh["metadata"]["resourceVersion"]
    status, body = await api.jsonpatch(f"{CLUSTERS}/a", ops)
    assert status == 200 and body["metadata"]["finalizers"] == ["fleet"]


async def test_generation_tracks_spec_only(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("a"))
    _, obj = await api.merge(f"{CLUSTERS}/a", {"metadata": {"labels": {"l": "v"}, "annotations": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 1
    _, obj = await api.merge(f"{CLUSTERS}/a/status", {"status": {"phase": "Ready"}})
    assert obj["metadata"]["generation"] == 1
    _, obj = await api.merge(f"{CLUSTERS}/a", {"spec": {"version": "v1.36.3+rke2r1"}})
    assert obj["metadata"]["generation"] == 2
    rv = obj["metadata"]["resourceVersion"]
    _, obj = await api.merge(f"{CLUSTERS}/a", {"spec": {"version": "v1.36.3+rke2r1"}})  # no-op
    assert obj["metadata"]["generation"] == 2 and obj["metadata"]["resourceVersion"] == rv


async def test_status_subresource_separation(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("a", status={"phase": "ignored-on-create"}))
    obj = await api.ok("GET", f"{CLUSTERS}/a")
    assert "status" not in obj
    # /status changes status only
    _, obj = await api.merge(f"{CLUSTERS}/a/status", {"status": {"phase": "Ready"}, "spec": {"version": "x"},
                                                      "metadata": {"labels": {"sneaky": "1"}}})
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"]["version"] == "v1.35.7+rke2r1" and "labels" not in obj["metadata"]
    # the main endpoint ignores status
    _, obj = await api.merge(f"{CLUSTERS}/a", {"status": {"phase": "Broken"}, "spec": {"version": "y"}})
    assert obj["status"] == {"phase": "Ready"} and obj["spec"]["version"] == "y"
    # PUT on /status too
    obj["status"] = {"phase": "Upgrading"}
    obj["spec"]["version"] = "z"
    put = await api.ok("PUT", f"{CLUSTERS}/a/status", obj)
    assert put["status"] == {"phase": "Upgrading"} and put["spec"]["version"] == "y"
    # JSON patch on /status
    status, obj = await api.jsonpatch(f"{CLUSTERS}/a/status",
                                      [{"op": "replace", "path": "/status/phase", "value": "Ready"}])
    assert status == 200 and obj["status"]["phase"] == "Ready"


async def test_merge_patch_null_deletes_and_lists_replace(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("a", spec={"version": "v", "tls": ["a", "b"], "extra": {"k": 1}}))
    _, obj = await api.merge(f"{CLUSTERS}/a", {"spec": {"tls": ["c"], "extra": None}})
    assert obj["spec"] == {"version": "v", "tls": ["c"]}


async def test_finalizers_hold_deletion_until_removed(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("a", metadata={"name": "a", "finalizers": ["fleet.io/cleanup"]}))
    deleted = await api.ok("DELETE", f"{CLUSTERS}/a")
    assert deleted["metadata"]["deletionTimestamp"]
    held = await api.ok("GET", f"{CLUSTERS}/a")
    assert held["metadata"]["deletionTimestamp"] == deleted["metadata"]["deletionTimestamp"]
    again = await api.ok("DELETE", f"{CLUSTERS}/a")  # idempotent while terminating
    assert again["metadata"]["resourceVersion"] == held["metadata"]["resourceVersion"]
    status, _body = await api.merge(f"{CLUSTERS}/a", {"metadata": {"finalizers": ["fleet.io/cleanup", "new"]}})
    assert status == 422  # no new finalizers on a terminating object
    status, _ = await api.merge(f"{CLUSTERS}/a", {"metadata": {"finalizers": None}})
    assert status == 200
    status, _ = await api.call("GET", f"{CLUSTERS}/a")
    assert status == 404


async def test_generate_name(api: Api) -> None:
    event = {"metadata": {"generateName": "kopf-event-"}, "reason": "Test", "message": "m",
             "involvedObject": {"kind": "RKE2Cluster", "name": "a", "namespace": "default"}}
    names = set()
    for _ in range(5):
        created = await api.ok("POST", "/api/v1/namespaces/default/events", event)
        assert created["metadata"]["name"].startswith("kopf-event-")
        assert len(created["metadata"]["name"]) == len("kopf-event-") + 5
        names.add(created["metadata"]["name"])
    assert len(names) == 5
    status, body = await api.call("POST", "/api/v1/namespaces/default/events", {"metadata": {}})
    assert status == 422 and body["reason"] == "Invalid"


async def test_label_and_field_selectors_on_list(api: Api) -> None:
    for name, labels in {"a": {"tier": "prod", "zone": "x"}, "b": {"tier": "dev"}, "c": {}}.items():
        await api.ok("POST", CLUSTERS, cluster(name, metadata={"name": name, "labels": labels}))

    async def names(**params: str) -> list[str]:
        listed = await api.ok("GET", CLUSTERS, params=params)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert await names(labelSelector="tier=prod") == ["a"]
    assert await names(labelSelector="tier==dev") == ["b"]
    assert await names(labelSelector="tier!=prod") == ["b", "c"]
    assert await names(labelSelector="tier in (prod,dev)") == ["a", "b"]
    assert await names(labelSelector="tier notin (prod)") == ["b", "c"]
    assert await names(labelSelector="tier") == ["a", "b"]
    assert await names(labelSelector="!tier") == ["c"]
    assert await names(labelSelector="tier=prod,zone=x") == ["a"]
    assert await names(labelSelector="tier=prod,zone=y") == []
    assert await names(fieldSelector="metadata.name=b") == ["b"]
    assert await names(fieldSelector="metadata.name!=b,metadata.namespace=default") == ["a", "c"]
    status, body = await api.call("GET", CLUSTERS, params={"labelSelector": "tier in prod"})
    assert status == 400 and body["reason"] == "BadRequest"


async def test_list_pagination_keeps_resource_version(api: Api) -> None:
    for i in range(5):
        await api.ok("POST", CLUSTERS, cluster(f"c{i}"))
    first = await api.ok("GET", CLUSTERS, params={"limit": "2"})
    seen = [item["metadata"]["name"] for item in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = await api.ok("GET", CLUSTERS, params={"limit": "2", "continue": token})
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        seen += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == [f"c{i}" for i in range(5)]


async def test_secrets_string_data_and_events(api: Api) -> None:
    secret = await api.ok("POST", "/api/v1/namespaces/default/secrets",
                          {"metadata": {"name": "token"}, "stringData": {"token": "K10abc::server:pw"}})
    assert "stringData" not in secret and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["token"]) == b"K10abc::server:pw"
    assert "generation" not in secret["metadata"]
    await api.ok("POST", "/apis/events.k8s.io/v1/namespaces/default/events",
                 {"metadata": {"name": "e1"}, "reason": "R", "note": "n", "eventTime": None})
    listed = await api.ok("GET", "/apis/events.k8s.io/v1/events")
    assert [e["metadata"]["name"] for e in listed["items"]] == ["e1"]
    cm = await api.ok("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}, "data": {}})
    assert cm["kind"] == "ConfigMap"


async def test_discovery_and_crd_registration(api: Api) -> None:
    assert (await api.ok("GET", "/api"))["versions"] == ["v1"]
    core = {r["name"]: r for r in (await api.ok("GET", "/api/v1"))["resources"]}
    assert {"namespaces", "secrets", "events", "configmaps"} <= set(core)
    assert core["namespaces"]["namespaced"] is False and core["secrets"]["namespaced"] is True
    groups = {g["name"] for g in (await api.ok("GET", "/apis"))["groups"]}
    assert {"rke2fleet.io", "apiextensions.k8s.io", "events.k8s.io"} <= groups
    fleet = {r["name"]: r for r in (await api.ok("GET", "/apis/rke2fleet.io/v1alpha1"))["resources"]}
    assert fleet["rke2clusters"]["kind"] == "RKE2Cluster" and "rke2nodes/status" in fleet
    assert (await api.ok("GET", "/apis/rke2fleet.io"))["preferredVersion"]["version"] == "v1alpha1"
    crds = await api.ok("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert {c["metadata"]["name"] for c in crds["items"]} >= {"rke2clusters.rke2fleet.io", "rke2nodes.rke2fleet.io"}

    # a CRD created through the API is served at once, and gone when deleted
    crd = {"metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Cluster",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True}]}}
    created = await api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert created["metadata"]["name"] == "widgets.example.com"
    established = await api.ok("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert {c["type"] for c in established["status"]["conditions"]} == {"NamesAccepted", "Established"}
    widget = await api.ok("POST", "/apis/example.com/v1/widgets", {"metadata": {"name": "w"}, "spec": {"n": 1}})
    assert widget["metadata"]["generation"] == 1 and "namespace" not in widget["metadata"]
    assert "example.com" in {g["name"] for g in (await api.ok("GET", "/apis"))["groups"]}
    await api.ok("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    status, _ = await api.call("GET", "/apis/example.com/v1/widgets")
    assert status == 404


async def test_namespace_deletion_removes_contents(api: Api) -> None:
    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    ns = "/apis/rke2fleet.io/v1alpha1/namespaces/team/rke2clusters"
    await api.ok("POST", ns, cluster("a"))
    await api.ok("POST", ns, cluster("held", metadata={"name": "held", "finalizers": ["f"]}))
    await api.ok("DELETE", "/api/v1/namespaces/team")
    assert (await api.ok("GET", "/api/v1/namespaces/team"))["status"]["phase"] == "Terminating"
    status, _body = await api.call("POST", ns, cluster("late"))
    assert status == 403
    assert [o["metadata"]["name"] for o in (await api.ok("GET", ns))["items"]] == ["held"]
    await api.merge(f"{ns}/held", {"metadata": {"finalizers": None}})
    status, _ = await api.call("GET", "/api/v1/namespaces/team")
    assert status == 404


async def test_audit_log_and_write_counts(api: Api) -> None:
    await api.ok("POST", "/_sandbox/audit/reset")
    await api.ok("POST", CLUSTERS, cluster("a"))
    await api.merge(f"{CLUSTERS}/a/status", {"status": {"phase": "Ready"}})
    await api.call("GET", f"{CLUSTERS}/missing")
    await api.ok("DELETE", f"{CLUSTERS}/a")
    audit = await api.ok("GET", "/_sandbox/audit")
    assert [(e["verb"], e["resource"], e["subresource"], e["name"], e["code"]) for e in audit] == [
        ("create", "rke2clusters", None, None, 201),
        ("patch", "rke2clusters", "status", "a", 200),
        ("get", "rke2clusters", None, "missing", 404),
        ("delete", "rke2clusters", None, "a", 200),
    ]
    assert audit[0]["apiGroup"] == "rke2fleet.io" and audit[0]["namespace"] == "default"
    counts = await api.ok("GET", "/_sandbox/audit/counts")
    assert counts["writes"] == 3 and counts["byVerb"]["get"] == 1
    await api.ok("POST", "/_sandbox/audit/reset")
    assert await api.ok("GET", "/_sandbox/audit") == []


async def test_server_side_apply_creates_then_merges(api: Api) -> None:
    manifest = "apiVersion: rke2fleet.io/v1alpha1\nkind: RKE2Cluster\nmetadata: {name: a}\nspec: {version: v1}\n"
    status, obj = await api.call("PATCH", f"{CLUSTERS}/a", manifest, content_type="application/apply-patch+yaml",
                                 params={"fieldManager": "test"})
    assert status == 201 and obj["spec"] == {"version": "v1"}
    status, obj = await api.call("PATCH", f"{CLUSTERS}/a", manifest.replace("v1}", "v2}"),
                                 content_type="application/apply-patch+yaml", params={"fieldManager": "test"})
    assert status == 200 and obj["spec"] == {"version": "v2"} and obj["metadata"]["generation"] == 2
