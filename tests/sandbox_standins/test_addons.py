"""The server's deploy controller (k3s pkg/deploy) as the stand-in runs it: manifests in
server/manifests become an AddOn and their objects; a file that does not parse changes nothing but
the AddOn's events; deleting a HelmChart through the API removes it (the file alone does not), and a
server start applies every file again."""

from __future__ import annotations

import json
import time

import yaml

from rke2fleet_sandbox.standins import addons
from tests.sandbox_standins.hosthelpers import journal, rke2_host, start, wait_until

MANIFESTS = "/var/lib/rancher/rke2/server/manifests"
CHART = """apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: cert-manager
  namespace: kube-system
spec:
  repo: https://charts.jetstack.io
  chart: cert-manager
  version: {version}
  targetNamespace: cert-manager
  createNamespace: true
---
# the packaged ingress, adjusted
apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata:
  name: rke2-ingress-nginx
  namespace: kube-system
spec:
  valuesContent: |-
    controller:
      replicaCount: 2
"""


def items(server, resource: str, scope: str = "-A") -> list[dict]:
    out = server.kubectl(f"get {resource} {scope} -o json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "List" and doc["apiVersion"] == "v1"
    return list(doc["items"])


def names(server, resource: str) -> list[str]:
    return [i["metadata"]["name"] for i in items(server, resource)]


def write(server, name: str, text: str) -> None:
    tmp = f"{MANIFESTS}/.{name}.tmp"
    server.run(f"mkdir -p {MANIFESTS} && cat > {tmp} <<'EOF'\n{text}\nEOF\nmv {tmp} {MANIFESTS}/{name}", check=True)


def test_manifests_become_addons_and_objects(installer, make_host):
    server = rke2_host(installer, make_host, "addon-a", "token: s3cret", nodeReadyDelay=0)
    write(server, "cert-manager.yaml", CHART.format(version="v1.15.0"))  # before the start: applied at start
    assert start(server).returncode == 0
    wait_until(lambda: names(server, "helmcharts") == ["cert-manager"])
    chart = items(server, "helmcharts")[0]
    assert chart["apiVersion"] == "helm.cattle.io/v1" and chart["kind"] == "HelmChart"
    assert chart["spec"]["version"] == "v1.15.0" and chart["metadata"]["namespace"] == "kube-system"
    assert chart["metadata"]["annotations"]["objectset.rio.cattle.io/owner-name"] == "cert-manager"
    assert chart["status"] == {"jobName": "helm-install-cert-manager"}
    assert names(server, "helmchartconfigs") == ["rke2-ingress-nginx"]
    assert "replicaCount: 2" in items(server, "helmchartconfigs", "-n kube-system")[0]["spec"]["valuesContent"]
    addon = items(server, "addons")[0]
    assert addon["metadata"]["name"] == "cert-manager" and addon["metadata"]["namespace"] == "kube-system"
    assert addon["spec"]["source"] == f"{MANIFESTS}/cert-manager.yaml" and len(addon["spec"]["checksum"]) == 64
    assert addon["metadata"]["annotations"]["addon.k3s.cattle.io/gvks"] == (
        "helm.cattle.io/v1, Kind=HelmChart;helm.cattle.io/v1, Kind=HelmChartConfig")
    assert items(server, "helmcharts", "-n default") == []
    one = json.loads(server.kubectl("get helmchart cert-manager -n kube-system -o json").stdout)
    assert one["metadata"]["uid"] == chart["metadata"]["uid"]
    assert server.kubectl("get helmcharts -n kube-system -o name").stdout.strip() == (
        "helmchart.helm.cattle.io/cert-manager")
    table = server.kubectl("get helmcharts -A").stdout.splitlines()
    assert table[0].split()[:4] == ["NAMESPACE", "NAME", "JOB", "CHART"] and "cert-manager" in table[1]

    # while running: a new file (JSON, another extension) is applied within seconds; dotfiles are not
    doc = {"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
           "metadata": {"name": "traefik-extra", "namespace": "kube-system"}, "spec": {"chart": "traefik"}}
    write(server, "extra.chart.json", json.dumps(doc))
    write(server, ".hidden.yaml", CHART.format(version="v0").replace("cert-manager", "hidden"))
    wait_until(lambda: "traefik-extra" in names(server, "helmcharts"), timeout=10)
    assert "extra" in names(server, "addons") and "hidden" not in names(server, "helmcharts")

    # a change re-applies; an object dropped from the file is deleted (wrangler apply's pruning)
    write(server, "cert-manager.yaml", CHART.format(version="v1.16.1").split("---")[0])
    wait_until(lambda: items(server, "helmcharts", "-n kube-system")[0]["spec"]["version"] == "v1.16.1")
    wait_until(lambda: names(server, "helmchartconfigs") == [])
    changed = json.loads(server.kubectl("get helmchart cert-manager -n kube-system -o json").stdout)
    assert changed["metadata"]["uid"] == chart["metadata"]["uid"] and changed["metadata"]["generation"] == 2


def test_delete_through_the_api_file_removal_and_restart(installer, make_host):
    server = rke2_host(installer, make_host, "addon-d", "token: s3cret", nodeReadyDelay=0)
    assert start(server).returncode == 0
    write(server, "cert-manager.yaml", CHART.format(version="v1.15.0"))
    wait_until(lambda: names(server, "helmcharts") == ["cert-manager"])

    out = server.kubectl("delete helmchart -n kube-system cert-manager")
    assert (out.returncode, out.stdout.strip()) == (0, 'helmchart.helm.cattle.io "cert-manager" deleted')
    out = server.kubectl("delete helmchart -n kube-system cert-manager")
    assert out.returncode == 1
    assert out.stderr.strip() == 'Error from server (NotFound): helmcharts.helm.cattle.io "cert-manager" not found'
    out = server.kubectl("delete helmchart cert-manager -n kube-system --ignore-not-found")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    out = server.kubectl("get helmchart cert-manager -n kube-system -o json")
    assert out.returncode == 1 and "not found" in out.stderr
    time.sleep(1.5)  # the file is unchanged: the controller does not bring it back
    assert names(server, "helmcharts") == []
    assert names(server, "helmchartconfigs") == ["rke2-ingress-nginx"]

    # removing the file alone uninstalls nothing (upstream: the AddOn and its objects stay)
    server.run(f"rm {MANIFESTS}/cert-manager.yaml", check=True)
    time.sleep(1.5)
    assert names(server, "addons") == ["cert-manager"] and names(server, "helmchartconfigs") == ["rke2-ingress-nginx"]

    # the same content written again: its checksum is the AddOn's, nothing is applied
    write(server, "cert-manager.yaml", CHART.format(version="v1.15.0"))
    time.sleep(1.5)
    assert names(server, "helmcharts") == []
    # a start applies every file again: the chart deleted while its file stayed comes back
    assert server.run("systemctl restart rke2-server", timeout=60).returncode == 0
    wait_until(lambda: names(server, "helmcharts") == ["cert-manager"])
    # so does a change of the file
    server.kubectl("delete helmchart -n kube-system cert-manager")
    write(server, "cert-manager.yaml", CHART.format(version="v1.15.1"))
    wait_until(lambda: names(server, "helmcharts") == ["cert-manager"])


def test_invalid_manifest_reports_on_the_addon_and_changes_nothing(installer, make_host):
    server = rke2_host(installer, make_host, "addon-bad", "token: s3cret", nodeReadyDelay=0)
    assert start(server).returncode == 0
    write(server, "cert-manager.yaml", CHART.format(version="v1.15.0"))
    wait_until(lambda: names(server, "helmcharts") == ["cert-manager"])
    checksum = items(server, "addons")[0]["spec"]["checksum"]
    write(server, "cert-manager.yaml", "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata: [oops\n")
    write(server, "broken.yaml", "kind: HelmChart\nmetadata:\n  name: x\n  namespace: kube-system\n")

    def warnings() -> dict[str, str]:
        evs = items(server, "events", "-n kube-system --field-selector involvedObject.kind=Addon,type=Warning")
        return {e["involvedObject"]["name"]: e["message"] for e in evs}

    wait_until(lambda: set(warnings()) == {"cert-manager", "broken"}, timeout=10)
    assert warnings()["cert-manager"].startswith(
        f'Parse manifest at "{MANIFESTS}/cert-manager.yaml" failed: error converting YAML to JSON: yaml: ')
    assert warnings()["broken"] == (f'Parse manifest at "{MANIFESTS}/broken.yaml" failed: '
                                    "Object 'apiVersion' is missing in '{\"kind\":\"HelmChart\",\"metadata\":"
                                    "{\"name\":\"x\",\"namespace\":\"kube-system\"}}'")
    ev = items(server, "events", "-n kube-system --field-selector involvedObject.name=cert-manager,type=Warning")[0]
    assert (ev["reason"], ev["type"], ev["source"]) == ("ParseManifestFailed", "Warning", {"component": "deploy"})
    # nothing else changed: the chart as it was, the AddOn's checksum the last applied one
    assert items(server, "helmcharts")[0]["spec"]["version"] == "v1.15.0"
    assert {a["metadata"]["name"]: a["spec"].get("checksum") for a in items(server, "addons")} == {
        "cert-manager": checksum, "broken": None}
    assert f"Failed to process config: failed to process {MANIFESTS}/" in journal(server)


def test_parse_and_names_without_a_host():
    objects = addons.parse_manifest("---\n# nothing\n---\napiVersion: v1\nkind: List\nitems:\n"
                                    "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
                                    "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n", yaml)
    assert [o["metadata"]["name"] for o in objects] == ["a", "b"]
    assert addons.addon_name("/x/rke2fleet-helmchart-cert-manager.yaml") == "rke2fleet-helmchart-cert-manager"
    assert addons.addon_name("/x/a.b.yml") == "a"
    assert addons.gvk_string("v1", "ConfigMap") == "/v1, Kind=ConfigMap"
