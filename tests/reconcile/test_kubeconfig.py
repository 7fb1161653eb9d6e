"""kubeconfig.py: rke2.yaml rewritten for remote use (reference §6)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rke2fleet.reconcile.kubeconfig import KubeconfigError, rewrite_kubeconfig

CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tQ0EtREFUQQ=="
CERT = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tQ0xJRU5ULUNFUlQ="
KEY = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tU0VDUkVULUtFWQ=="

RKE2_YAML = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {CA}
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {CERT}
    client-key-data: {KEY}
""".encode()


def rewritten(address: str, name: str = "prod") -> dict[str, Any]:
    doc = yaml.safe_load(rewrite_kubeconfig(RKE2_YAML, cluster_name=name, address=address))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("address", "server"),
    [
        ("rke2.example.com", "https://rke2.example.com:6443"),
        ("192.168.1.100", "https://192.168.1.100:6443"),
        ("fd00::10", "https://[fd00::10]:6443"),
    ],
)
def test_server_url_points_at_the_address(address: str, server: str) -> None:
    assert rewritten(address)["clusters"][0]["cluster"]["server"] == server


def test_names_are_the_cluster_name_and_credentials_are_kept() -> None:
    doc = rewritten("rke2.example.com", "prod")
    assert [c["name"] for c in doc["clusters"]] == ["prod"]
    assert [u["name"] for u in doc["users"]] == ["prod"]
    assert doc["contexts"] == [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}]
    assert doc["current-context"] == "prod"
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == CA
    assert doc["users"][0]["user"] == {"client-certificate-data": CERT, "client-key-data": KEY}
    assert "default" not in yaml.safe_dump(doc)


MARK = "SECRETKEYMATERIAL"

INVALID = [
    pytest.param(b"", id="empty"),
    pytest.param(f"users: [{MARK}\n  - : :".encode(), id="not yaml"),
    pytest.param(b"\xff\xfe" + MARK.encode() + b"\x00\x81", id="not utf-8"),
    pytest.param(f"- {MARK}\n".encode(), id="a list"),
    pytest.param(f"clusters: []\nusers: [{{user: {{token: {MARK}}}}}]\n".encode(), id="no cluster"),
    pytest.param(
        f"clusters: [{{cluster: {{server: x}}}}]\nusers: [{{user: {{token: {MARK}}}}}]\n".encode(), id="no CA"
    ),
    pytest.param(
        f"clusters: [{MARK}]\nusers: [{MARK}]\n".encode(),
        id="entries not mappings",
    ),
    pytest.param(
        f"clusters: {{a: {MARK}}}\nusers: {{a: {MARK}}}\n".encode(),
        id="lists are mappings",
    ),
    pytest.param(
        f"clusters: [{{cluster: {MARK}}}]\nusers: [{{user: {MARK}}}]\n".encode(),
        id="cluster is a string",
    ),
]


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_input_is_a_kubeconfig_error_without_its_content(raw: bytes) -> None:
    with pytest.raises(KubeconfigError) as caught:
        rewrite_kubeconfig(raw, cluster_name="prod", address="rke2.example.com")
    assert MARK not in str(caught.value)
    assert caught.value.__cause__ is None  # the YAML error (which quotes the input) is not chained
