"""The demo's text: live table (TTY redraw vs change lines), elided kubeconfig, applied manifests."""

from __future__ import annotations

import base64
import io
from typing import Any

import yaml

from rke2fleet_sandbox.demo_view import ClusterLine, LiveView, NodeRow, elide_kubeconfig, manifests_yaml


def node(name: str, phase: str | None = None, version: str | None = None, ready: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if version:
        status["installedVersion"] = status["runningVersion"] = version
    if ready:
        status["conditions"] = [{"type": "Reachable", "status": "True"}, {"type": "Ready", "status": ready}]
    return {"metadata": {"name": name}, "spec": {"role": "server", "address": "127.0.9.10"}, "status": status}


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rows_read_the_status_fields() -> None:
    row = NodeRow.of(node("server-1", "Ready", "v1.35.7+rke2r1", "True"))
    assert (row.phase, row.installed, row.running, row.ready) == ("Ready", "v1.35.7+rke2r1", "v1.35.7+rke2r1", "True")
    empty = NodeRow.of({"metadata": {"name": "agent-1"}, "spec": {}})
    assert (empty.role, empty.phase, empty.ready) == ("-", "-", "-")
    line = ClusterLine.of("demo", {"status": {"phase": "Ready", "servers": "3/3", "agents": "2/2"}})
    assert line.text() == "cluster demo: phase Ready, servers 3/3, agents 2/2"


def test_not_a_tty_prints_a_line_only_when_something_changes() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False, started=0.0)
    pending = ClusterLine.of("demo", {"status": {"phase": "Provisioning", "servers": "0/1", "agents": "0/0"}})
    for _ in range(3):
        view.update(pending, [NodeRow.of(node("server-1", "Installing"))])
    view.update(pending, [NodeRow.of(node("server-1", "Ready", "v1.35.7+rke2r1", "True"))])
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "ADDRESS", "PHASE", "INSTALLED", "RUNNING", "READY"]
    assert len(lines) == 1 + 2 + 1  # header, two node states, one cluster line
    assert "Installing" in lines[1] and "Ready" in lines[3]
    assert "\x1b" not in out.getvalue()


def test_a_tty_is_redrawn_in_place() -> None:
    out = FakeTTY()
    view = LiveView(out, tty=True, started=0.0)
    cluster = ClusterLine.of("demo", None)
    view.update(cluster, [NodeRow.of(node("server-1"))])
    first = out.getvalue()
    assert not first.startswith("\x1b[") or first.startswith("\x1b[2K")  # nothing to move over yet
    view.update(cluster, [NodeRow.of(node("server-1", "Starting"))])
    second = out.getvalue()[len(first) :]
    drawn = first.count("\n")
    assert second.startswith(f"\x1b[{drawn}F")  # back to the table's first line
    assert second.count("\x1b[2K") == drawn  # every line cleared and rewritten
    assert "Starting" in second


def test_kubeconfig_credentials_are_elided() -> None:
    key = base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----\nsecret\n").decode()
    cert = base64.b64encode(b"client certificate").decode()
    ca = base64.b64encode(b"the CA").decode()
    text = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "demo",
        "clusters": [{"name": "demo", "cluster": {"server": "https://127.0.9.2:6443",
                                                  "certificate-authority-data": ca}}],
        "users": [{"name": "demo", "user": {"client-key-data": key, "client-certificate-data": cert,
                                            "token": "abcdefabcdefabcdef"}}],
        "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}],
    })  # fmt: skip
    shown = elide_kubeconfig(text)
    for secret in (key, cert, ca, "abcdefabcdefabcdef"):
        assert secret not in shown
    doc = yaml.safe_load(shown)
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.9.2:6443"
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == f"<present, {len(ca)} chars>"
    assert set(doc["users"][0]["user"].values()) == {"<elided>"}
    assert doc["current-context"] == "demo" and doc["contexts"][0]["context"]["user"] == "demo"


def test_applied_manifests_never_hold_the_ssh_key() -> None:
    pem = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n").decode()
    docs = [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
         "metadata": {"name": "fleet-ssh", "namespace": "default"}, "data": {"ssh-privatekey": pem}},
        {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Cluster",
         "metadata": {"name": "demo", "namespace": "default"}, "spec": {"version": "v1.35.7+rke2r1"}},
    ]  # fmt: skip
    text = manifests_yaml(docs, "/state/client_ed25519")
    assert pem not in text and "PRIVATE KEY" not in text
    assert "--from-file=ssh-privatekey=/state/client_ed25519" in text
    parsed = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in parsed] == ["RKE2Cluster"]
