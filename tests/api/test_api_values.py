"""Accepted values and the helpers others call (durations, version ordering, host keys, manifests)."""

from __future__ import annotations

from typing import Any

import pytest

from rke2fleet.api import RKE2ClusterStatus, RKE2NodeStatus, parse_cluster_spec, parse_duration, parse_node_spec
from rke2fleet.api.common import host_key_problem, version_key
from rke2fleet.api.manifests import validate_files, validate_text

from .conftest import HOST_KEY, mutate, run_cli


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300.0), ("300s", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("250ms", 0.25), ("2h", 7200.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 m", "1d", "m5", "-5m", "5M", "PT5M"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_version_ordering() -> None:
    versions = [
        "v1.36.3+rke2r1",
        "v1.35.7+rke2r1",
        "v1.36.4-rc1+rke2r1",
        "v1.36.4+rke2r1",
        "v1.33.13+rke2r2",
        "v1.33.13+rke2r1",
        "v1.36.4-rc2+rke2r1",
    ]
    assert sorted(versions, key=version_key) == [
        "v1.33.13+rke2r1",
        "v1.33.13+rke2r2",
        "v1.35.7+rke2r1",
        "v1.36.3+rke2r1",
        "v1.36.4-rc1+rke2r1",
        "v1.36.4-rc2+rke2r1",
        "v1.36.4+rke2r1",
    ]
    with pytest.raises(ValueError):
        version_key("v1.36")


@pytest.mark.parametrize(
    "edits",
    [
        {"spec.version": "v1.36.4-rc1+rke2r1"},
        {"spec.version": None, "spec.channel": "v1.36"},
        {"spec.version": None, "spec.channel": "latest"},
        {"spec.registrationAddress": "fd00::100", "spec.tlsSAN": ["fd00::100", "LB.Example.COM", "lb"]},
        {"spec.registrationAddress": None},
        {"spec.ssh.hostKeyPolicy": "AcceptNew", "spec.ssh.connectTimeout": "1m30s", "spec.ssh.user": "ops"},
        {"spec.install.artifactURL": "http://mirror.internal:8080/rke2"},
        {"spec.serverConfig.etcd-s3-bucket": "snaps", "spec.serverConfig.kube-apiserver-arg+": ["a=b"]},
        {"spec.serverConfig.selinux": True, "spec.serverConfig.etcd-snapshot-retention": 10},
        {"spec.agentConfig.data-dir": "/data/rke2", "spec.agentConfig.profile": "cis"},
    ],
)
def test_cluster_accepts(edits: dict[str, Any]) -> None:
    spec = mutate("cluster", {k: v for k, v in edits.items() if v is not None})["spec"]
    for key, value in edits.items():
        if value is None:
            spec.pop(key.split(".")[1])
    parse_cluster_spec(spec)


@pytest.mark.parametrize(
    "edits",
    [
        {"spec.port": 2222, "spec.user": "ubuntu"},
        {"spec.user": "", "spec.nodeIP": "", "spec.hostKey": "", "spec.nodeName": ""},  # "" means unset
        {"spec.hostKey": HOST_KEY + " root@cp-1 with spaces"},
        {"spec.nodeLabels": ["example.com/tier=", "topology.kubernetes.io/zone=a", "node.kubernetes.io/pool=x"]},
        {"spec.nodeTaints": ["dedicated:NoSchedule", "example.com/gpu=true:NoExecute", "a=b:PreferNoSchedule"]},
        {"spec.nodeIP": "2001:db8::10", "spec.nodeExternalIP": "203.0.113.7"},
        {"spec.config.cni": "cilium", "spec.config.etcd-arg": ["quota-backend-bytes=8589934592"]},
        {"spec.deletionPolicy": "Retain", "spec.nodeName": "cp-1.example.com"},
    ],
)
def test_server_node_accepts(edits: dict[str, Any]) -> None:
    spec = parse_node_spec(mutate("server", edits)["spec"])
    if edits.get("spec.user") == "":
        assert spec.user is None and spec.node_ip is None and spec.host_key is None


def test_agent_accepts_both_role_keys() -> None:
    parse_node_spec(mutate("agent", {"spec.config": {"kubelet-arg": ["max-pods=200"], "selinux": True}})["spec"])


def test_host_key_types() -> None:
    assert host_key_problem(HOST_KEY) is None
    assert host_key_problem("ecdsa-sha2-nistp256 " + HOST_KEY.split()[1]) == (
        "key data does not encode the key type named in front of it"
    )


def test_status_models_are_lenient_and_camel_case() -> None:
    status = RKE2ClusterStatus.model_validate(
        {
            "phase": "Ready",
            "servers": "3/3",
            "readyServers": 3,
            "futureField": 1,
            "rollout": {"targetVersion": "v1.36.3+rke2r1", "done": ["cp-1"], "halted": {"node": "cp-2"}, "extra": 1},
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-08-01T00:00:00Z"}],
        }
    )
    assert status.ready_servers == 3 and status.rollout is not None and status.rollout.done == ["cp-1"]
    dumped = status.model_dump(exclude_none=True)
    assert dumped["rollout"]["extra"] == 1 and dumped["conditions"][0]["lastTransitionTime"]
    node = RKE2NodeStatus(phase="Installing", installed_version="v1.36.3+rke2r1")
    assert node.model_dump(exclude_none=True, exclude_defaults=True) == {
        "phase": "Installing",
        "installedVersion": "v1.36.3+rke2r1",
    }


def test_manifest_skips_other_kinds_and_expands_lists() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Checked}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: rke2fleet.io/v1alpha1\n  kind: RKE2Node\n  metadata: {name: n1}\n"
        "  spec: {cluster: prod, role: agent, address: 10.0.0.1, deletionPolicy: Keep}\n"
        "---\n- not an object\n"
    )
    assert validate_text(text, "f.yaml") == [
        "f.yaml: RKE2Node/n1: spec.deletionPolicy: must be one of 'Uninstall' or 'Retain'",
        "f.yaml: document 3: must be a mapping (a Kubernetes object)",
    ]


def test_duplicate_keys_are_errors() -> None:
    lines = validate_text("kind: RKE2Node\nkind: RKE2Cluster\n", "d.yaml")
    assert lines == ["d.yaml: YAML syntax error at line 2, column 1: duplicate key 'kind'"]


def test_unreadable_file() -> None:
    assert validate_files(["/nonexistent/m.yaml"]) == [
        "/nonexistent/m.yaml: cannot read file: No such file or directory"
    ]


def test_cli_reads_stdin_and_multiple_files(tmp_path: Any) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: fleet}\n")
    bad = (
        "apiVersion: rke2fleet.io/v1alpha1\nkind: RKE2Node\nmetadata: {name: n}\n"
        "spec: {cluster: p, role: x, address: h}\n"
    )
    result = run_cli("validate", "-f", str(good), "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "<stdin>: RKE2Node/n: spec.role: must be one of 'server' or 'agent'",
        "1 error(s) found",
    ]


def test_parse_accepts_read_only_mappings() -> None:
    """Kopf hands handlers Mapping views (kopf.Spec), not dicts."""
    from types import MappingProxyType

    spec = mutate("server", {})["spec"]
    view = MappingProxyType(
        {**spec, "nodeLabels": tuple(spec["nodeLabels"]), "config": MappingProxyType(spec["config"])}
    )
    assert parse_node_spec(view) == parse_node_spec(spec)


def test_parse_accepts_kopf_spec() -> None:
    import kopf

    body = kopf.Body(mutate("cluster", {}))
    assert parse_cluster_spec(body.spec) == parse_cluster_spec(mutate("cluster", {})["spec"])
