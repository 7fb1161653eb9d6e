"""desired.py: config.yaml rendering and the installer's environment (reference §1, §3, §5)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from rke2fleet.reconcile.desired import desired_node, install_environment, join_url, render_config
from tests.reconcile.builders import TOKEN, V35, V36, cluster_spec, desired, node_spec


def config_of(role: str = "server", *, is_init: bool = False, cluster: Any = None, node: Any = None) -> dict[str, Any]:
    d = desired(role, is_init=is_init, cluster=cluster, node=node)
    doc = yaml.safe_load(d.config)
    assert isinstance(doc, dict)
    return doc


def test_init_server_has_no_server_key_and_joiners_do() -> None:
    assert "server" not in config_of("server", is_init=True)
    assert config_of("server")["server"] == "https://rke2.example.com:9345"
    assert config_of("agent")["server"] == "https://rke2.example.com:9345"


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("rke2.example.com", "https://rke2.example.com:9345"),
        ("192.168.1.100", "https://192.168.1.100:9345"),
        ("fd00::10", "https://[fd00::10]:9345"),
        ("2001:db8::1", "https://[2001:db8::1]:9345"),
    ],
)
def test_join_url_brackets_ipv6(address: str, url: str) -> None:
    assert join_url(address) == url


def test_joiner_without_registration_address_is_refused() -> None:
    with pytest.raises(ValueError, match="registration address"):
        render_config(cluster_spec(), node_spec(), node_name="n1", token=TOKEN, is_init=False, join_address=None)


@pytest.mark.parametrize(
    "token",
    [TOKEN, "plain-short-token", "yes", "0644", "null", "a: b # c", "'quoted\" value'", "line1\nline2"],
)
def test_token_survives_yaml_round_trip(token: str) -> None:
    # Values YAML would re-type (yes, 0644, null) or re-structure must come back as the same string.
    cfg = render_config(cluster_spec(), node_spec(), node_name="n1", token=token, is_init=True, join_address=None)
    assert yaml.safe_load(cfg)["token"] == token


def test_node_name_defaults_to_object_name_and_is_overridable() -> None:
    assert config_of()["node-name"] == "n1"
    assert config_of(node=node_spec(nodeName="worker-7"))["node-name"] == "worker-7"


@pytest.mark.parametrize(
    ("cluster_changes", "expected"),
    [
        ({}, ["rke2.example.com"]),
        ({"tlsSAN": ["rke2.example.com", "10.0.0.100"]}, ["rke2.example.com", "10.0.0.100"]),
        ({"tlsSAN": ["a.example.com", "rke2.example.com", "a.example.com"]}, ["rke2.example.com", "a.example.com"]),
        ({"registrationAddress": None, "tlsSAN": ["a.example.com"]}, ["a.example.com"]),
        ({"registrationAddress": "fd00::10"}, ["fd00::10"]),
    ],
)
def test_tls_san_is_registration_address_plus_extras_deduplicated(
    cluster_changes: dict[str, Any], expected: list[str]
) -> None:
    cluster = cluster_spec(**cluster_changes)
    assert config_of("server", is_init=True, cluster=cluster)["tls-san"] == expected


def test_single_server_without_any_san_has_no_tls_san_key() -> None:
    assert "tls-san" not in config_of("server", is_init=True, cluster=cluster_spec(registrationAddress=None))


def test_agents_get_no_tls_san() -> None:
    assert "tls-san" not in config_of("agent", cluster=cluster_spec(tlsSAN=["x.example.com"]))


def test_labels_taints_and_ips() -> None:
    node = node_spec(
        "agent",
        nodeLabels=["tier=web", "zone=a"],
        nodeTaints=["dedicated=web:NoSchedule"],
        nodeIP="10.0.0.5",
        nodeExternalIP="203.0.113.5",
    )
    cfg = config_of("agent", node=node)
    assert cfg["node-label"] == ["tier=web", "zone=a"]
    assert cfg["node-taint"] == ["dedicated=web:NoSchedule"]
    assert cfg["node-ip"] == "10.0.0.5"
    assert cfg["node-external-ip"] == "203.0.113.5"
    bare = config_of("agent")
    assert not {"node-label", "node-taint", "node-ip", "node-external-ip"} & bare.keys()


def test_passthrough_keys_by_role_and_per_node_override() -> None:
    cluster = cluster_spec(
        serverConfig={"cni": "cilium", "write-kubeconfig-mode": "0644"},
        agentConfig={"kubelet-arg": ["max-pods=150"]},
    )
    server = config_of("server", cluster=cluster)
    agent = config_of("agent", cluster=cluster)
    assert server["cni"] == "cilium"
    assert server["write-kubeconfig-mode"] == "0644"  # stays a string, not octal 420
    assert "kubelet-arg" not in server
    assert agent["kubelet-arg"] == ["max-pods=150"]
    assert "cni" not in agent
    override = config_of(
        "server", cluster=cluster, node=node_spec(config={"cni": "calico", "kubelet-arg": ["max-pods=50"]})
    )
    assert override["cni"] == "calico"
    assert override["kubelet-arg"] == ["max-pods=50"]
    assert override["write-kubeconfig-mode"] == "0644"


def test_output_is_deterministic_and_hashed() -> None:
    a = desired(cluster=cluster_spec(serverConfig={"write-kubeconfig-mode": "0644", "cni": "canal"}))
    b = desired(cluster=cluster_spec(serverConfig={"cni": "canal", "write-kubeconfig-mode": "0644"}))
    assert a.config == b.config
    assert a.config_sha256 == hashlib.sha256(a.config).hexdigest()
    c = desired(cluster=cluster_spec(serverConfig={"cni": "cilium", "write-kubeconfig-mode": "0644"}))
    assert c.config_sha256 != a.config_sha256


def test_token_is_kept_out_of_repr() -> None:
    assert "s3cr3t" not in repr(desired())
    assert b"s3cr3t-password" in desired().config


@pytest.mark.parametrize(
    ("cluster_changes", "role", "expected"),
    [
        ({}, "server", {"INSTALL_RKE2_TYPE": "server", "INSTALL_RKE2_VERSION": V36}),
        ({}, "agent", {"INSTALL_RKE2_TYPE": "agent", "INSTALL_RKE2_VERSION": V36}),
        (
            {"version": None, "channel": "stable"},
            "server",
            {"INSTALL_RKE2_TYPE": "server", "INSTALL_RKE2_CHANNEL": "stable"},
        ),
        (
            {
                "version": None,
                "channel": "v1.35",
                "install": {
                    "channelURL": "https://mirror.example.com/channels",
                    "artifactURL": "https://mirror.example.com/releases",
                },
            },
            "agent",
            {
                "INSTALL_RKE2_TYPE": "agent",
                "INSTALL_RKE2_CHANNEL": "v1.35",
                "INSTALL_RKE2_CHANNEL_URL": "https://mirror.example.com/channels",
                "INSTALL_RKE2_ARTIFACT_URL": "https://mirror.example.com/releases",
            },
        ),
    ],
)
def test_install_environment(cluster_changes: dict[str, Any], role: str, expected: dict[str, str]) -> None:
    assert install_environment(cluster_spec(**cluster_changes), role) == expected


def test_resolved_version_replaces_the_channel() -> None:
    cluster = cluster_spec(version=None, channel="stable")
    d = desired_node(cluster, node_spec("agent"), name="a1", token=TOKEN, is_init=False, join_address="lb", version=V35)
    assert d.install_env == {"INSTALL_RKE2_TYPE": "agent", "INSTALL_RKE2_VERSION": V35}
    assert (d.version, d.channel) == (V35, None)
    unresolved = desired_node(cluster, node_spec(), name="s1", token=TOKEN, is_init=True, join_address=None)
    assert (unresolved.version, unresolved.channel, unresolved.target_label) == (None, "stable", "channel stable")


def test_script_url_and_unit() -> None:
    d = desired("agent", cluster=cluster_spec(install={"scriptURL": "https://mirror.example.com/install.sh"}))
    assert d.script_url == "https://mirror.example.com/install.sh"
    assert d.unit == "rke2-agent"
    assert desired("server").unit == "rke2-server"
