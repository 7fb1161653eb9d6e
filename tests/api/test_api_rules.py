"""One bad input per validation rule, through the models and through `rke2fleet validate`.

Each case names the field path the error must carry and a fragment of the rule's message.
`crd=True` marks rules the generated CRD schema expresses too; for those a JSON-schema
validator must reject the object as well.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rke2fleet.api import SpecError, parse_cluster_spec, parse_node_spec
from rke2fleet.api.crdgen import crd_schema
from rke2fleet.api.manifests import validate_object

from .conftest import DELETE, HOST_KEY, mutate, run_cli

ED25519_BLOB = HOST_KEY.split()[1]
_blob = base64.b64decode(ED25519_BLOB)
# A well-formed blob whose embedded type (ssh-ed25519) contradicts the ssh-rsa in front of it.
MISMATCHED_KEY = "ssh-rsa " + base64.b64encode(_blob).decode()
TRUNCATED_KEY = "ssh-ed25519 " + base64.b64encode(struct.pack(">I", 40) + b"ssh-ed25519").decode()


@dataclass(frozen=True)
class Case:
    id: str
    base: str  # cluster | server | agent
    edits: dict[str, Any]
    path: str
    fragment: str
    crd: bool = False
    object_level: bool = field(default=False)  # outside .spec: only manifest validation sees it


CASES = [
    # --- RKE2Cluster: version / channel
    Case("version-no-build", "cluster", {"spec.version": "v1.36.3"}, "spec.version", "RKE2 release", crd=True),
    Case("version-dash-build", "cluster", {"spec.version": "v1.36.3-rke2r1"}, "spec.version", "RKE2 release", True),
    Case("version-no-v", "cluster", {"spec.version": "1.36.3+rke2r1"}, "spec.version", "RKE2 release", crd=True),
    Case("version-bad-rc", "cluster", {"spec.version": "v1.36.4-beta1+rke2r1"}, "spec.version", "v1.36.4-rc1", True),
    Case("version-and-channel", "cluster", {"spec.channel": "stable"}, "spec.channel", "exactly one of version"),
    Case("neither-version-nor-channel", "cluster", {"spec.version": DELETE}, "spec.version", "exactly one of"),
    Case(
        "channel-unknown",
        "cluster",
        {"spec.version": DELETE, "spec.channel": "beta"},
        "spec.channel",
        "stable, latest, testing",
        crd=True,
    ),
    Case(
        "channel-patch",
        "cluster",
        {"spec.version": DELETE, "spec.channel": "v1.36.3"},
        "spec.channel",
        "minor line",
        crd=True,
    ),
    # --- addresses
    Case(
        "registration-url",
        "cluster",
        {"spec.registrationAddress": "https://rke2.example.com"},
        "spec.registrationAddress",
        "not a URL",
    ),
    Case(
        "registration-port",
        "cluster",
        {"spec.registrationAddress": "rke2.example.com:9345"},
        "spec.registrationAddress",
        "hostname (RFC 1123) or an IP address",
    ),
    Case(
        "tlssan-bad-host", "cluster", {"spec.tlsSAN": ["rke2.example.com", "bad_host!"]}, "spec.tlsSAN[1]", "hostname"
    ),
    Case("tlssan-url", "cluster", {"spec.tlsSAN": ["http://rke2.example.com"]}, "spec.tlsSAN[0]", "not a URL"),
    Case("tlssan-not-list", "cluster", {"spec.tlsSAN": "rke2.example.com"}, "spec.tlsSAN", "must be a list", True),
    # --- ssh
    Case("ssh-port-zero", "cluster", {"spec.ssh.port": 0}, "spec.ssh.port", "between 1 and 65535", crd=True),
    Case("ssh-port-high", "cluster", {"spec.ssh.port": 70000}, "spec.ssh.port", "between 1 and 65535", crd=True),
    Case("ssh-port-string", "cluster", {"spec.ssh.port": "22"}, "spec.ssh.port", "must be an integer", crd=True),
    Case(
        "ssh-policy-case",
        "cluster",
        {"spec.ssh.hostKeyPolicy": "strict"},
        "spec.ssh.hostKeyPolicy",
        "'Strict' or 'AcceptNew'",
        crd=True,
    ),
    Case(
        "ssh-key-ref-missing",
        "cluster",
        {"spec.ssh.privateKeySecretRef": DELETE},
        "spec.ssh.privateKeySecretRef",
        "field is required",
        crd=True,
    ),
    Case(
        "ssh-key-ref-name",
        "cluster",
        {"spec.ssh.privateKeySecretRef.name": "Fleet_SSH"},
        "spec.ssh.privateKeySecretRef.name",
        "DNS-1123 subdomain",
    ),
    Case(
        "ssh-key-ref-key",
        "cluster",
        {"spec.ssh.privateKeySecretRef.key": "ssh key"},
        "spec.ssh.privateKeySecretRef.key",
        "Secret data key",
    ),
    Case(
        "known-hosts-ref-no-key",
        "cluster",
        {"spec.ssh.knownHostsSecretRef": {"name": "kh"}},
        "spec.ssh.knownHostsSecretRef.key",
        "field is required",
        crd=True,
    ),
    Case("ssh-user", "cluster", {"spec.ssh.user": "Root User"}, "spec.ssh.user", "Unix user name"),
    Case(
        "ssh-connect-timeout-unitless",
        "cluster",
        {"spec.ssh.connectTimeout": "10"},
        "spec.ssh.connectTimeout",
        "duration such as",
        crd=True,
    ),
    Case(
        "ssh-command-timeout-zero",
        "cluster",
        {"spec.ssh.commandTimeout": "0s"},
        "spec.ssh.commandTimeout",
        "positive duration",
    ),
    Case("ssh-missing", "cluster", {"spec.ssh": DELETE}, "spec.ssh", "field is required", crd=True),
    Case(
        "ssh-unknown-field", "cluster", {"spec.ssh.hostkeyPolicy": "Strict"}, "spec.ssh.hostkeyPolicy", "unknown field"
    ),
    # --- token
    Case(
        "token-ref-no-key",
        "cluster",
        {"spec.tokenSecretRef": {"name": "prod-token"}},
        "spec.tokenSecretRef.key",
        "field is required",
        crd=True,
    ),
    # --- install
    Case(
        "script-url-no-scheme",
        "cluster",
        {"spec.install.scriptURL": "get.rke2.io"},
        "spec.install.scriptURL",
        "http:// or https:// URL",
    ),
    Case(
        "artifact-url-ftp",
        "cluster",
        {"spec.install.artifactURL": "ftp://mirror.example.com"},
        "spec.install.artifactURL",
        "http:// or https:// URL",
    ),
    Case(
        "channel-url-bad",
        "cluster",
        {"spec.install.channelURL": "not a url"},
        "spec.install.channelURL",
        "http:// or https:// URL",
    ),
    # --- upgrade and timings
    Case(
        "server-concurrency-zero",
        "cluster",
        {"spec.upgrade.serverConcurrency": 0},
        "spec.upgrade.serverConcurrency",
        "at least 1",
        crd=True,
    ),
    Case(
        "agent-concurrency-negative",
        "cluster",
        {"spec.upgrade.agentConcurrency": -1},
        "spec.upgrade.agentConcurrency",
        "at least 1",
        crd=True,
    ),
    Case("drain-not-bool", "cluster", {"spec.upgrade.drain": "yes"}, "spec.upgrade.drain", "boolean", crd=True),
    Case(
        "drain-timeout-words",
        "cluster",
        {"spec.upgrade.drainTimeout": "5 minutes"},
        "spec.upgrade.drainTimeout",
        "duration such as",
        crd=True,
    ),
    Case("paused-string", "cluster", {"spec.paused": "false"}, "spec.paused", "boolean", crd=True),
    Case("drift-policy", "cluster", {"spec.driftPolicy": "Fix"}, "spec.driftPolicy", "'Repair' or 'Report'", True),
    Case("drift-interval", "cluster", {"spec.driftCheckInterval": "5"}, "spec.driftCheckInterval", "duration", True),
    Case("readiness-days", "cluster", {"spec.readinessTimeout": "1d"}, "spec.readinessTimeout", "duration", True),
    Case(
        "spec-typo", "cluster", {"spec.registrationAdress": "x.example.com"}, "spec.registrationAdress", "unknown field"
    ),
    # --- serverConfig / agentConfig keys
    Case(
        "server-config-token",
        "cluster",
        {"spec.serverConfig.token": "s3cr3t"},
        "spec.serverConfig.token",
        "key 'token' is managed by the operator; use spec.tokenSecretRef",
    ),
    Case(
        "server-config-token-file",
        "cluster",
        {"spec.serverConfig.token-file": "/t"},
        "spec.serverConfig.token-file",
        "use spec.tokenSecretRef",
    ),
    Case(
        "server-config-server",
        "cluster",
        {"spec.serverConfig.server": "https://x:9345"},
        "spec.serverConfig.server",
        "use spec.registrationAddress",
    ),
    Case(
        "server-config-tls-san",
        "cluster",
        {"spec.serverConfig.tls-san": ["x"]},
        "spec.serverConfig.tls-san",
        "use spec.tlsSAN",
    ),
    Case(
        "server-config-tls-san-append",
        "cluster",
        {"spec.serverConfig.tls-san+": ["x"]},
        "spec.serverConfig.tls-san+",
        "use spec.tlsSAN",
    ),
    Case(
        "server-config-cluster-reset",
        "cluster",
        {"spec.serverConfig.cluster-reset": True},
        "spec.serverConfig.cluster-reset",
        "restore",
    ),
    Case(
        "server-config-unknown",
        "cluster",
        {"spec.serverConfig.write-kubeconfig-mod": "0644"},
        "spec.serverConfig.write-kubeconfig-mod",
        "unknown RKE2 config key",
    ),
    Case(
        "server-config-nested-value",
        "cluster",
        {"spec.serverConfig.kube-apiserver-arg": [{"a": 1}]},
        "spec.serverConfig.kube-apiserver-arg",
        "string, number, boolean or a list",
    ),
    Case(
        "agent-config-node-label",
        "cluster",
        {"spec.agentConfig.node-label": ["a=b"]},
        "spec.agentConfig.node-label",
        "use spec.nodeLabels",
    ),
    Case(
        "agent-config-agent-token",
        "cluster",
        {"spec.agentConfig.agent-token": "x"},
        "spec.agentConfig.agent-token",
        "spec.tokenSecretRef",
    ),
    Case(
        "agent-config-server-only", "cluster", {"spec.agentConfig.cni": "cilium"}, "spec.agentConfig.cni", "server-only"
    ),
    Case(
        "agent-config-etcd-prefix",
        "cluster",
        {"spec.agentConfig.etcd-s3-bucket": "b"},
        "spec.agentConfig.etcd-s3-bucket",
        "server-only",
    ),
    Case(
        "config-not-object",
        "cluster",
        {"spec.serverConfig": ["cni=canal"]},
        "spec.serverConfig",
        "must be an object",
        crd=True,
    ),
    # --- RKE2Node
    Case("node-cluster-missing", "server", {"spec.cluster": DELETE}, "spec.cluster", "field is required", True),
    Case("node-cluster-name", "server", {"spec.cluster": "Prod"}, "spec.cluster", "DNS-1123 subdomain"),
    Case("node-role", "server", {"spec.role": "master"}, "spec.role", "'server' or 'agent'", crd=True),
    Case("node-address-url", "server", {"spec.address": "ssh://10.0.0.1"}, "spec.address", "not a URL"),
    Case("node-address-bad-ip", "server", {"spec.address": "10.0.0.300"}, "spec.address", "hostname"),
    Case("node-address-empty", "server", {"spec.address": ""}, "spec.address", "must not be empty", crd=True),
    Case("node-port", "server", {"spec.port": 65536}, "spec.port", "between 1 and 65535", crd=True),
    Case("node-user", "server", {"spec.user": "bad user"}, "spec.user", "Unix user name"),
    Case("hostkey-no-data", "server", {"spec.hostKey": "ssh-ed25519"}, "spec.hostKey", "OpenSSH public key line"),
    Case(
        "hostkey-dsa", "server", {"spec.hostKey": "ssh-dss " + ED25519_BLOB}, "spec.hostKey", "key type must be one of"
    ),
    Case(
        "hostkey-bad-base64", "server", {"spec.hostKey": "ssh-ed25519 not*base64!"}, "spec.hostKey", "not valid base64"
    ),
    Case(
        "hostkey-type-mismatch",
        "server",
        {"spec.hostKey": MISMATCHED_KEY},
        "spec.hostKey",
        "does not encode the key type",
    ),
    Case(
        "hostkey-truncated", "server", {"spec.hostKey": TRUNCATED_KEY}, "spec.hostKey", "does not encode the key type"
    ),
    Case("node-name", "server", {"spec.nodeName": "Node_1"}, "spec.nodeName", "DNS-1123 subdomain"),
    Case("label-no-value", "server", {"spec.nodeLabels": ["env=prod", "novalue"]}, "spec.nodeLabels[1]", "key=value"),
    Case("label-bad-key", "server", {"spec.nodeLabels": ["bad key=x"]}, "spec.nodeLabels[0]", "label key name"),
    Case("label-bad-value", "server", {"spec.nodeLabels": ["env=bad value"]}, "spec.nodeLabels[0]", "label value"),
    Case("label-long-value", "server", {"spec.nodeLabels": ["env=" + "a" * 64]}, "spec.nodeLabels[0]", "at most 63"),
    Case(
        "label-bad-prefix",
        "server",
        {"spec.nodeLabels": ["Bad_Prefix/x=y"]},
        "spec.nodeLabels[0]",
        "prefix must be a DNS-1123 subdomain",
    ),
    Case(
        "label-kubelet-restricted",
        "server",
        {"spec.nodeLabels": ["node-role.kubernetes.io/worker=true"]},
        "spec.nodeLabels[0]",
        "kubelet refuses",
    ),
    Case("labels-not-list", "server", {"spec.nodeLabels": "env=prod"}, "spec.nodeLabels", "must be a list", True),
    Case(
        "taint-no-effect", "server", {"spec.nodeTaints": ["dedicated=gpu"]}, "spec.nodeTaints[0]", "key[=value]:Effect"
    ),
    Case(
        "taint-bad-effect",
        "server",
        {"spec.nodeTaints": ["a=b:NoSchedule", "dedicated=gpu:NoSchedul"]},
        "spec.nodeTaints[1]",
        "taint effect must be one of NoSchedule, PreferNoSchedule, NoExecute",
    ),
    Case(
        "taint-bad-key", "server", {"spec.nodeTaints": ["bad key:NoSchedule"]}, "spec.nodeTaints[0]", "label key name"
    ),
    Case("node-ip-hostname", "server", {"spec.nodeIP": "node-1.example.com"}, "spec.nodeIP", "IPv4 or IPv6"),
    Case("node-external-ip", "server", {"spec.nodeExternalIP": "1.2.3"}, "spec.nodeExternalIP", "IPv4 or IPv6"),
    Case(
        "node-config-node-name", "server", {"spec.config.node-name": "x"}, "spec.config.node-name", "use spec.nodeName"
    ),
    Case(
        "node-config-node-ip", "server", {"spec.config.node-ip": "10.0.0.1"}, "spec.config.node-ip", "use spec.nodeIP"
    ),
    Case(
        "node-config-node-taint",
        "server",
        {"spec.config.node-taint": ["a:NoSchedule"]},
        "spec.config.node-taint",
        "use spec.nodeTaints",
    ),
    Case(
        "node-config-with-node-id",
        "server",
        {"spec.config.with-node-id": True},
        "spec.config.with-node-id",
        "use spec.nodeName",
    ),
    Case("node-config-token", "agent", {"spec.config.token": "s3cr3t"}, "spec.config.token", "use spec.tokenSecretRef"),
    Case("agent-config-cni", "agent", {"spec.config.cni": "cilium"}, "spec.config.cni", "server-only"),
    Case(
        "agent-config-append",
        "agent",
        {"spec.config.kube-apiserver-arg+": ["x=y"]},
        "spec.config.kube-apiserver-arg+",
        "server-only",
    ),
    Case(
        "node-config-unknown",
        "agent",
        {"spec.config.kubelet-args": ["x=y"]},
        "spec.config.kubelet-args",
        "unknown RKE2 config key",
    ),
    Case(
        "deletion-policy",
        "server",
        {"spec.deletionPolicy": "Delete"},
        "spec.deletionPolicy",
        "'Uninstall' or 'Retain'",
        crd=True,
    ),
    Case("node-typo", "agent", {"spec.nodeLabel": ["a=b"]}, "spec.nodeLabel", "unknown field"),
    # --- object level (manifest validation)
    Case(
        "api-version",
        "cluster",
        {"apiVersion": "rke2fleet.io/v1"},
        "apiVersion",
        "must be rke2fleet.io/v1alpha1",
        object_level=True,
    ),
    Case(
        "metadata-name",
        "cluster",
        {"metadata.name": "Prod_1"},
        "metadata.name",
        "DNS-1123 subdomain",
        object_level=True,
    ),
    Case(
        "metadata-name-missing",
        "server",
        {"metadata.name": DELETE},
        "metadata.name",
        "field is required",
        object_level=True,
    ),
    Case(
        "metadata-namespace",
        "server",
        {"metadata.namespace": "Fleet"},
        "metadata.namespace",
        "DNS-1123 label",
        object_level=True,
    ),
    Case("top-level-typo", "agent", {"specs": {}}, "specs", "unknown field", object_level=True),
    Case("spec-missing", "agent", {"spec": DELETE}, "spec", "field is required", crd=True, object_level=True),
]


def model_errors(case: Case) -> list[tuple[str, str]]:
    doc = mutate(case.base, case.edits)
    if case.object_level:
        return [(e.path, e.message) for e in validate_object(doc)]
    parse = parse_cluster_spec if case.base == "cluster" else parse_node_spec
    with pytest.raises(SpecError) as info:
        parse(doc["spec"])
    assert str(info.value) == "; ".join(f"{e.path}: {e.message}" for e in info.value.errors)
    return [(e.path, e.message) for e in info.value.errors]


def test_case_ids_unique() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("base", ["cluster", "server", "agent"])
def test_bases_are_valid(base: str) -> None:
    """Every case is one edit away from a valid object, so the error is caused by that edit."""
    doc = mutate(base, {})
    assert validate_object(doc) == []
    kind = doc["kind"]
    jsonschema.Draft7Validator(crd_schema(kind)).validate(doc)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_through_models(case: Case) -> None:
    errors = model_errors(case)
    matching = [msg for path, msg in errors if path == case.path]
    assert matching, f"no error at {case.path}; got {errors}"
    assert any(case.fragment in msg for msg in matching), f"{case.fragment!r} not in {matching}"


@pytest.mark.parametrize("case", [c for c in CASES if c.crd], ids=lambda c: c.id)
def test_rule_in_crd_schema(case: Case) -> None:
    doc = mutate(case.base, case.edits)
    errors = list(jsonschema.Draft7Validator(crd_schema(doc["kind"])).iter_errors(doc))
    assert errors, "the CRD schema should reject this too"


@pytest.fixture(scope="module")
def cli_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, list[str]]]:
    """All case files through one `rke2fleet validate -f … -f …` run: (exit code, stderr lines per file)."""
    folder = tmp_path_factory.mktemp("cases")
    args: list[str] = []
    files: dict[str, Path] = {}
    for case in CASES:
        path = folder / f"{case.id}.yaml"
        path.write_text(yaml.safe_dump(mutate(case.base, case.edits), sort_keys=False))
        files[case.id] = path
        args += ["-f", str(path)]
    result = run_cli("validate", *args)
    by_case = {
        cid: [line for line in result.stderr.splitlines() if line.startswith(f"{path}: ")]
        for cid, path in files.items()
    }
    return result.returncode, by_case


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_through_cli(case: Case, cli_batch: tuple[int, dict[str, list[str]]]) -> None:
    returncode, lines = cli_batch
    assert returncode == 1
    doc = mutate(case.base, case.edits)
    name = doc.get("metadata", {}).get("name") or "<no name>"
    prefix = f"{doc['kind']}/{name}: {case.path}: "
    hits = [line for line in lines[case.id] if prefix in line]
    assert hits, f"no line with {prefix!r} in {lines[case.id]}"
    assert any(case.fragment in line for line in hits)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.id in ("ssh-port-zero", "label-no-value", "api-version")], ids=lambda c: c.id
)
def test_single_file_exit_code(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(mutate(case.base, case.edits)))
    result = run_cli("validate", "-f", str(path))
    assert result.returncode == 1
    assert f"{path}: " in result.stderr and f": {case.path}: " in result.stderr
    assert "Traceback" not in result.stderr
