"""Add-ons across the cluster: Applied once on every server, and a dropped one deleted through the
cluster's API only after no server holds its file any more (the file alone uninstalls nothing)."""

from __future__ import annotations

from typing import Any

from rke2fleet.engine.cluster_pass import cluster_pass
from rke2fleet.engine.outcome import fields_of
from tests.engine.fakes import NS, cluster_spec, serving_status, set_status, world

CHART = {"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "metadata": {"name": "cert-manager"},
         "spec": {"chart": "cert-manager"}}  # fmt: skip
FILE = "rke2fleet-helmchart-cert-manager.yaml"


def servers_hold(store: Any, files: dict[str, list[str]]) -> None:
    for name, held in files.items():
        set_status(store, name, {**serving_status(), "addons": held})


def addons(out: Any) -> list[tuple[str, str]]:
    return [(a["file"], a["state"]) for a in fields_of(out.status).get("addons", [])]


async def test_an_addon_is_applied_once_every_server_holds_it() -> None:
    engine, store, _ = world(agents=0, cluster=cluster_spec(addons=[CHART]), status={"initServer": "s1"})
    servers_hold(store, {"s1": [FILE], "s2": [FILE], "s3": []})
    assert addons(await cluster_pass(engine, store.cluster(NS, "prod"))) == [(FILE, "Pending")]
    servers_hold(store, {"s3": [FILE]})
    assert addons(await cluster_pass(engine, store.cluster(NS, "prod"))) == [(FILE, "Applied")]


async def test_a_dropped_addon_is_deleted_through_the_api_after_its_files_are_gone() -> None:
    applied = [{"name": "cert-manager", "kind": "HelmChart", "namespace": "kube-system", "file": FILE,
                "state": "Applied"}]  # fmt: skip
    engine, store, hosts = world(agents=0, cluster=cluster_spec(), status={"initServer": "s1", "addons": applied})
    servers_hold(store, {"s1": [], "s2": [FILE], "s3": []})
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    assert addons(out) == [(FILE, "Removing")]
    assert not any("delete helmchart" in c for c in hosts.commands())
    servers_hold(store, {"s2": []})
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    deletes = [c for c in hosts.commands() if "delete helmchart" in c]
    assert deletes == [
        "env KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl delete helmchart "
        "cert-manager -n kube-system --ignore-not-found"
    ]
    assert addons(out) == [] and "AddonRemoved" in [e.reason for e in out.events]


async def test_an_addon_file_found_after_a_restart_is_removed_too() -> None:
    engine, store, _ = world(agents=0, cluster=cluster_spec(), status={"initServer": "s1"})
    servers_hold(store, {"s1": ["rke2fleet-helmchartconfig-rke2-ingress-nginx.yaml"], "s2": [], "s3": []})
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    (addon,) = fields_of(out.status)["addons"]
    assert (addon["kind"], addon["name"], addon["state"]) == ("HelmChartConfig", "rke2-ingress-nginx", "Removing")
