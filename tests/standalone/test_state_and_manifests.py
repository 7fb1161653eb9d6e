"""The standalone driver's pieces: manifests as `validate` reads them, the state directory's
walls (permissions, one cluster), the file store, and plan's redaction."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest
import yaml

from rke2fleet.engine.records import NodeRecord
from rke2fleet.standalone.manifests import ManifestError, load
from rke2fleet.standalone.plan import REDACTED, config_diff, join_order, redact
from rke2fleet.standalone.state import FileStore, StateDir, StateError

SSH = {"privateKeySecretRef": {"name": "k", "key": "key"}}
CLUSTER = {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Cluster", "metadata": {"name": "c", "namespace": "f"},
           "spec": {"version": "v1.35.7+rke2r1", "ssh": SSH}}  # fmt: skip


def node(name: str, cluster: str = "c", ns: str = "f") -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Node", "metadata": {"name": name, "namespace": ns},
            "spec": {"cluster": cluster, "role": "server", "address": "10.0.0.1"}}  # fmt: skip


def secret(name: str, **data: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "f"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


def files(tmp_path: Path, *docs: dict) -> list[str]:  # type: ignore[type-arg]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(list(docs)))
    return [str(path)]


def test_manifests_hold_one_cluster_its_nodes_and_secrets(tmp_path: Path) -> None:
    m = load(files(tmp_path, CLUSTER, node("s1"), secret("k", key="PEM"), {"kind": "ConfigMap"}))
    assert (m.namespace, m.name, list(m.nodes), m.secrets) == ("f", "c", ["s1"], {"k": {"key": b"PEM"}})
    with pytest.raises(ManifestError, match="exactly one RKE2Cluster"):
        load(files(tmp_path, node("s1")))
    with pytest.raises(ManifestError, match="names RKE2Cluster f/other"):
        load(files(tmp_path, CLUSTER, node("s1", cluster="other")))
    with pytest.raises(ManifestError) as err:
        load(files(tmp_path, {**CLUSTER, "spec": {**CLUSTER["spec"], "version": "1.35"}}))
    assert err.value.lines[0].endswith("RKE2Cluster/c: spec.version: " + err.value.lines[0].split("spec.version: ")[1])
    bad = secret("k")
    bad["data"] = {"key": "not base64!"}
    with pytest.raises(ManifestError, match=r"data\.key: must be base64"):
        load(files(tmp_path, CLUSTER, bad))


def test_the_state_directory_is_private_and_belongs_to_one_cluster(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "s", "f", "c")
    state.write({"a": 1}, "status", "rke2nodes", "n1.json")
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode)[-3:] for p in (tmp_path / "s").rglob("*")}
    assert oct((tmp_path / "s").stat().st_mode)[-3:] == "700"
    assert set(modes.values()) <= {"700", "600"} and modes["s/status/rke2nodes/n1.json"] == "600"
    with pytest.raises(StateError, match="holds the state of RKE2Cluster f/c, not f/d"):
        StateDir.open(tmp_path / "s", "f", "d")
    os.chmod(tmp_path / "s" / "status" / "rke2nodes" / "n1.json", 0o644)
    with pytest.raises(StateError, match="mode 644: it holds secrets; chmod 600"):
        StateDir.open(tmp_path / "s", "f", "c")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(StateError, match="not empty"):
        StateDir.open(tmp_path / "busy", "f", "c")
    with pytest.raises(StateError, match="invalid name"):
        state.write({}, "status", "../x")


def test_the_file_store_keeps_statuses_and_the_secrets_it_creates(tmp_path: Path) -> None:
    m = load(files(tmp_path, CLUSTER, node("s1"), secret("k", key="PEM")))
    store = FileStore(m, StateDir.open(tmp_path / "s", "f", "c"))

    async def scenario() -> None:
        await store.patch_status("rke2nodes", "f", "s1", {"phase": "Ready", "plan": ["x"]})
        await store.patch_status("rke2nodes", "f", "s1", {"plan": None})
        assert store.nodes("f", "c") == [NodeRecord("f", "s1", m.nodes["s1"]["spec"], {"phase": "Ready"}, 1)]
        created = await store.apply_secret("f", "c-token", {"token": b"t"}, owner={}, component="t", create_only=True)
        assert created
        assert not await store.apply_secret("f", "c-token", {"token": b"u"}, owner={}, component="x", create_only=True)
        assert await store.read_secret("f", "c-token") == {"token": b"t"}
        assert not await store.apply_secret("f", "k", {"key": b"y"}, owner={}, component="x")  # given: never rewritten
        assert await store.read_secret("f", "k") == {"key": b"PEM"}

    asyncio.run(scenario())
    assert store.cluster("f", "other") is None and store.nodes("f", "other") == []


def test_plan_redacts_tokens_and_secret_keys() -> None:
    text = "token: s3cr3t\nagent-token: a9\nnode-name: n1\netcd-s3-secret-key: x\nlabel: s3cr3t-in-a-value\n"
    out = redact(text, ["s3cr3t"])
    assert "s3cr3t" not in out and "a9" not in out and "x\n" not in out and "node-name: n1" in out
    assert out.count(REDACTED) == 4
    diff = config_diff("token: old\n", "token: new\nnode-label:\n- a\n", ["old", "new"])
    assert "+node-label:" in diff and not any("old" in ln or "new" in ln for ln in diff[2:])


def test_join_order_reads_as_the_operator_goes() -> None:
    def rec(name: str, role: str) -> NodeRecord:
        return NodeRecord("f", name, {"cluster": "c", "role": role})

    records = [rec("s2", "server"), rec("a1", "agent"), rec("s1", "server"), rec("s3", "server")]
    assert join_order(records, "s2") == "s2 → s1 → s3, then agents a1 (at most 50 at a time)"
