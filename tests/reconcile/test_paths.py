"""paths.py: a node's RKE2 paths follow its `data-dir` (and `write-kubeconfig`), in every command
that reads them; the facts script finds the running version under a moved data dir."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.facts import facts_script, parse_facts
from rke2fleet.reconcile.health import health_script
from rke2fleet.reconcile.paths import DEFAULT, paths_for
from tests.reconcile.builders import V36, cluster_spec, desired, node_spec


def test_defaults_and_moved_paths() -> None:
    assert DEFAULT.token == "/var/lib/rancher/rke2/server/token"
    assert DEFAULT.kubectl == "/var/lib/rancher/rke2/bin/kubectl"
    moved = paths_for({"data-dir": "/data/rke2/", "write-kubeconfig": "/root/kube.yaml"})
    assert moved.token == "/data/rke2/server/token" and moved.data_bin == "/data/rke2/bin"
    assert moved.kubeconfig == "/root/kube.yaml" and moved.config == "/etc/rancher/rke2/config.yaml"


def test_a_nodes_data_dir_comes_from_its_role_config_then_its_own() -> None:
    cluster = cluster_spec(serverConfig={"data-dir": "/srv/rke2"})
    assert desired("server", cluster=cluster).paths.data_dir == "/srv/rke2"
    assert desired("agent", cluster=cluster).paths.data_dir == "/var/lib/rancher/rke2"
    own = node_spec("server", config={"data-dir": "/mnt/own"})
    assert desired("server", cluster=cluster, node=own).paths.token == "/mnt/own/server/token"


def test_kubectl_and_health_use_the_servers_paths() -> None:
    moved = paths_for({"data-dir": "/data/rke2"})
    expected = ["env", "KUBECONFIG=/etc/rancher/rke2/rke2.yaml", "/data/rke2/bin/kubectl"]
    assert kubectl.cordon(moved, "n1")[:3] == expected
    script = health_script(moved)
    assert "/data/rke2/bin/kubectl" in script and "/data/rke2/server/token" in script


def test_version_detection_under_a_moved_data_dir(tmp_path: Path) -> None:
    """The facts script, run in a real `sh` against a fake host tree: the running version is read
    from the moved data dir's `bin` link (it was read from the default one only)."""
    data = tmp_path / "data"
    tag = V36.replace("+", "-")
    (data / "data" / f"{tag}-abc" / "bin").mkdir(parents=True)
    (data / "bin").symlink_to(data / "data" / f"{tag}-abc" / "bin")
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "systemctl").write_text("#!/bin/sh\nprintf 'UnitFileState=enabled\\nActiveState=active\\n'\n")
    (fake / "systemctl").chmod(0o755)
    script = facts_script(("rke2-server",), paths_for({"data-dir": str(data)}))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={"PATH": f"{fake}:/usr/bin:/bin"})
    facts = parse_facts(out.stdout)
    assert facts.server.is_active and facts.running_version == V36
