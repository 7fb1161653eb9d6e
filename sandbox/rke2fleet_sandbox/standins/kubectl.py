"""Stand-in for RKE2's bundled kubectl (``/var/lib/rancher/rke2/bin/kubectl``) over the shared datastore.

The cluster is the one whose CA is in the kubeconfig (``certificate-authority-data``); the API must
answer on the kubeconfig's server (127.0.0.1 means this host's address), as the real kubectl needs.
``get nodes [-o json|wide|name]``, ``cordon``, ``uncordon``, ``drain``, ``delete node`` (a server's
etcd member is removed with it, under etcd's strict reconfig check); the deploy controller's objects
(standins/addons.py): ``get addons|helmcharts|helmchartconfigs|events|<any applied kind> [NAME...]
[-n NS | -A] [-o json|yaml|name] [--field-selector K=V,...]`` and ``delete KIND NAME... [-n NS]
[--ignore-not-found]``. Without etcd quorum every verb
fails as the apiserver answers then: ``Error from server: etcdserver: request timed out``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rke2fleet_sandbox.standins import addons, fleetstore
    from rke2fleet_sandbox.standins import standin_common as common
else:
    import addons
    import fleetstore
    import standin_common as common

SERVER_ROLES = ["control-plane", "etcd", "master"]


def die(msg: str) -> NoReturn:
    print(msg, file=sys.stderr)
    sys.exit(1)


def connect() -> tuple[fleetstore.Datastore, str]:
    import yaml

    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
        cluster = config["clusters"][0]["cluster"]
        server = cluster["server"]
        ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
    except FileNotFoundError:
        die("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError) as exc:
        die(f"error: error loading config file \"{path}\": {exc}")
    info = common.host_info()
    url = urllib.parse.urlsplit(server)
    host = info["address"] if url.hostname in ("127.0.0.1", "localhost") else str(url.hostname)
    try:
        socket.create_connection((host, url.port or 443), timeout=3).close()
    except OSError:
        die(f"The connection to the server {url.hostname}:{url.port} was refused - "
            "did you specify the right host or port?")
    store, cluster_id = fleetstore.Datastore(info["datastoreDir"]), fleetstore.cluster_id_for_ca(ca_pem)
    if not store.quorum(cluster_id):
        die(f"Error from server: {fleetstore.REQUEST_TIMED_OUT}")
    return store, cluster_id


def node_object(node: dict[str, Any]) -> dict[str, Any]:
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": node["name"], "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "rke2",
    }
    if node["role"] == "server":
        labels.update({f"node-role.kubernetes.io/{r}": "true" for r in SERVER_ROLES})
    labels.update(node.get("labels") or {})
    taints = list(node.get("taints") or [])
    if node.get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                       "timeAdded": _iso(node.get("cordonedAt", time.time()))})
    ready_status, ready_reason, ready_message = node["readyCondition"]
    if ready_status != "True":
        key = "unreachable" if ready_status == "Unknown" else "not-ready"
        taints.append({"key": f"node.kubernetes.io/{key}", "effect": "NoSchedule"})
    created = _iso(node.get("created", time.time()))
    annotations = {"rke2.io/node-args": "[]", "rke2.io/hostname": node["host"]}
    since = float(node.get("activeAt") or node.get("created") or time.time())
    if ready_status == "True":
        since += float(node.get("readyDelay") or 0)
    conditions = [{
        "type": "Ready", "status": ready_status, "reason": ready_reason, "message": ready_message,
        "lastTransitionTime": _iso(since),
    }]
    if node["role"] == "server":
        member = node.get("etcdMember")
        if member:
            annotations["etcd.rke2.cattle.io/node-name"] = member[0]
            annotations["etcd.rke2.cattle.io/node-address"] = member[1]
        status, reason, message = node["voterCondition"]
        conditions.append({"type": "EtcdIsVoter", "status": status, "reason": reason, "message": message,
                           "lastTransitionTime": created})
    spec: dict[str, Any] = {"podCIDR": "10.42.0.0/24"}
    if node.get("unschedulable"):
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node["name"], "labels": labels, "creationTimestamp": created,
                     "annotations": annotations},
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": node["address"]},
                          {"type": "Hostname", "address": node["host"]}],
            "conditions": conditions,
            "nodeInfo": {"kubeletVersion": node["version"], "kubeProxyVersion": node["version"],
                         "containerRuntimeVersion": "containerd://2.1.5-k3s1",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": os.uname().release,
                         "architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _age(t: float) -> str:
    s = int(time.time() - t)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def get_nodes(store: fleetstore.Datastore, cluster: str, names: list[str], output: str) -> int:
    nodes = store.nodes(cluster)
    if names:
        missing = [n for n in names if n not in {x["name"] for x in nodes}]
        if missing:
            die(f'Error from server (NotFound): nodes "{missing[0]}" not found')
        nodes = [n for n in nodes if n["name"] in names]
    objects = [node_object(n) for n in nodes]
    if output == "json":
        doc: dict[str, Any] = {"apiVersion": "v1", "kind": "List", "items": objects,
                               "metadata": {"resourceVersion": ""}}
        print(json.dumps(objects[0] if len(names) == 1 else doc, indent=4))
        return 0
    if output == "name":
        print("\n".join(f"node/{n['name']}" for n in nodes))
        return 0
    if not nodes:
        print("No resources found", file=sys.stderr)
        return 0
    rows = [["NAME", "STATUS", "ROLES", "AGE", "VERSION"]]
    if output == "wide":
        rows[0] += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    for n, obj in zip(nodes, objects, strict=True):
        status = "Ready" if n["ready"] else "NotReady"
        if n.get("unschedulable"):
            status += ",SchedulingDisabled"
        roles = ",".join(SERVER_ROLES) if n["role"] == "server" else "<none>"
        row = [n["name"], status, roles, _age(n.get("created", time.time())), n["version"]]
        if output == "wide":
            info = obj["status"]["nodeInfo"]
            row += [n["address"], "<none>", info["osImage"], info["kernelVersion"], info["containerRuntimeVersion"]]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def set_schedulable(store: fleetstore.Datastore, cluster: str, name: str, cordon: bool, event: str) -> None:
    known = {n["name"]: n for n in store.nodes(cluster)}
    if name not in known:
        die(f'Error from server (NotFound): nodes "{name}" not found')
    if bool(known[name].get("unschedulable")) == cordon and event != "drain":
        print(f"node/{name} already {'cordoned' if cordon else 'uncordoned'}")
        return
    store.mark(cluster, name, event, unschedulable=cordon, cordonedAt=time.time())
    if event != "drain":
        print(f"node/{name} {'cordoned' if cordon else 'uncordoned'}")


# -- the deploy controller's objects ------------------------------------------------------------------
# resource (plural) -> (apiVersion, Kind); the names kubectl accepts for each are derived from it.
RESOURCES = {
    "addons": ("k3s.cattle.io/v1", "Addon"),
    "helmcharts": ("helm.cattle.io/v1", "HelmChart"),
    "helmchartconfigs": ("helm.cattle.io/v1", "HelmChartConfig"),
    "events": ("v1", "Event"),
    "namespaces": ("v1", "Namespace"),
    "configmaps": ("v1", "ConfigMap"),
    "secrets": ("v1", "Secret"),
}
SHORT_NAMES = {"ev": "events", "ns": "namespaces", "cm": "configmaps"}


def plural(kind: str) -> str:
    lower = kind.lower()
    return lower + ("es" if lower.endswith("s") else "s")


def resolve(name: str, data: dict[str, Any]) -> tuple[str, str, str] | None:
    """(apiVersion, Kind, plural) of a resource name (plural, singular, short, or ``<plural>.<group>``)."""
    known = dict(RESOURCES)
    for api_version, kind in addons.object_types(data):
        known.setdefault(plural(kind), (api_version, kind))
    name = SHORT_NAMES.get(name.lower(), name.lower())
    for res, (api_version, kind) in known.items():
        group = api_version.rpartition("/")[0]
        names = {res, kind.lower()} | ({f"{res}.{group}", f"{kind.lower()}.{group}"} if group else set())
        if name in names:
            return api_version, kind, res
    return None


def qualified(res: str, api_version: str) -> str:
    group = api_version.rpartition("/")[0]
    return f"{res}.{group}" if group else res


def field_match(obj: dict[str, Any], selector: str) -> bool:
    for term in [t for t in selector.split(",") if t]:
        negate = "!=" in term
        path, _, value = term.partition("!=" if negate else "=")
        value = value.lstrip("=")
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if (str(current if current is not None else "") == value) == negate:
            return False
    return True


def not_found(res: str, api_version: str, name: str) -> str:
    return f'Error from server (NotFound): {qualified(res, api_version)} "{name}" not found'


def resource_type(resource: str, data: dict[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, plural) of a resource name, or kubectl's refusal."""
    found = resolve(resource, data)
    if found is None:
        die(f'error: the server doesn\'t have a resource type "{resource}"')
    return found


def namespace_flag(flags: dict[str, Any]) -> str:
    return str(flags.get("-n") or flags.get("--namespace") or "default")


def get_objects(store: fleetstore.Datastore, cluster: str, resource: str, names: list[str],
                flags: dict[str, Any]) -> int:
    data = store.cluster(cluster)
    api_version, kind, res = resource_type(resource, data)
    all_ns = "-A" in flags or "--all-namespaces" in flags
    namespace = namespace_flag(flags)
    namespaced = kind not in addons.CLUSTER_SCOPED
    items = addons.list_objects(data, api_version, kind)
    if namespaced and not all_ns:
        items = [o for o in items if o["metadata"].get("namespace") == namespace]
    selector = flags.get("--field-selector")
    if isinstance(selector, str):
        items = [o for o in items if field_match(o, selector)]
    if names:
        by_name = {o["metadata"]["name"]: o for o in items}
        for name in names:
            if name not in by_name:
                die(not_found(res, api_version, name))
        items = [by_name[n] for n in names]
    output = str(flags.get("-o", flags.get("--output", "")))
    if output in ("json", "yaml"):
        doc: Any = items[0] if len(names) == 1 else {"apiVersion": "v1", "items": items, "kind": "List",
                                                      "metadata": {"resourceVersion": ""}}
        if output == "json":
            print(json.dumps(doc, indent=4))
        else:
            import yaml

            print(yaml.safe_dump(doc, sort_keys=True), end="")
        return 0
    group = api_version.rpartition("/")[0]
    if output == "name":
        print("\n".join(f"{kind.lower()}{'.' + group if group else ''}/{o['metadata']['name']}" for o in items))
        return 0
    if not items:
        where = "" if all_ns or not namespaced else f" in {namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    rows = [(["NAMESPACE"] if all_ns and namespaced else []) + ["NAME"] + COLUMNS.get(kind, ([], None))[0] + ["AGE"]]
    for o in items:
        meta = o["metadata"]
        created = time.mktime(time.strptime(meta.get("creationTimestamp", _iso(time.time())), "%Y-%m-%dT%H:%M:%SZ"))
        extra = COLUMNS[kind][1](o) if kind in COLUMNS else []
        rows.append(([meta.get("namespace", "")] if all_ns and namespaced else []) + [meta["name"]] + extra
                    + [_age(created - time.timezone)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


COLUMNS: dict[str, tuple[list[str], Any]] = {
    "Addon": (["SOURCE", "CHECKSUM"], lambda o: [o["spec"].get("source", ""), o["spec"].get("checksum", "")]),
    "HelmChart": (["JOB", "CHART", "TARGETNAMESPACE", "VERSION", "REPO", "HELMVERSION", "BOOTSTRAP"],
                  lambda o: [str((o.get("status") or {}).get("jobName", "")), str(o["spec"].get("chart", "")),
                             str(o["spec"].get("targetNamespace", "")), str(o["spec"].get("version", "")),
                             str(o["spec"].get("repo", "")), str(o["spec"].get("helmVersion", "")),
                             str(o["spec"].get("bootstrap", "")).lower() if "bootstrap" in o["spec"] else ""]),
}


def delete_objects(store: fleetstore.Datastore, cluster: str, resource: str, names: list[str],
                   flags: dict[str, Any]) -> int:
    data = store.cluster(cluster)
    api_version, kind, res = resource_type(resource, data)
    namespace = "" if kind in addons.CLUSTER_SCOPED else namespace_flag(flags)
    group = api_version.rpartition("/")[0]
    rc = 0
    for name in names:
        with store.transaction(cluster) as data:
            deleted = addons.delete_object(data, api_version, kind, namespace, name)
        if deleted:
            print(f'{kind.lower()}{"." + group if group else ""} "{name}" deleted')
        elif "--ignore-not-found" not in flags or flags["--ignore-not-found"] in ("false", "False"):
            print(not_found(res, api_version, name), file=sys.stderr)
            rc = 1
    return rc


def main(argv: list[str]) -> int:
    flags = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else True) for a in argv if a.startswith("-")}
    args: list[str] = []
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
        elif a in ("-o", "--output", "-n", "--namespace", "--kubeconfig", "--timeout", "--grace-period",
                   "--field-selector"):
            flags[a] = argv[i + 1] if i + 1 < len(argv) else ""
            skip = True
        elif not a.startswith("-"):
            args.append(a)
    if "--kubeconfig" in flags:
        os.environ["KUBECONFIG"] = str(flags["--kubeconfig"])
    if not args:
        die("kubectl controls the Kubernetes cluster manager.")
    if args[0] == "version" and "--client" in flags:
        print("Client Version: v1.35.7+rke2r1")
        return 0
    store, cluster = connect()
    verb, rest = args[0], args[1:]
    output = str(flags.get("-o", flags.get("--output", "")))
    if verb == "get" and rest and rest[0] in ("nodes", "node", "no"):
        return get_nodes(store, cluster, rest[1:], output)
    if verb in ("cordon", "uncordon") and rest:
        set_schedulable(store, cluster, rest[0], verb == "cordon", verb)
        return 0
    if verb == "drain" and rest:
        name = rest[0]
        set_schedulable(store, cluster, name, True, "cordon")
        if "--ignore-daemonsets" not in flags:
            print(f'error: unable to drain node "{name}" due to error: cannot delete DaemonSet-managed Pods '
                  f"(use --ignore-daemonsets to ignore): kube-system/rke2-canal-{name[:5]}, continuing command...\n"
                  f"There are pending nodes to be drained:\n {name}", file=sys.stderr)
            return 1
        set_schedulable(store, cluster, name, True, "drain")
        print(f"node/{name} drained")
        return 0
    if verb == "delete" and len(rest) >= 2 and rest[0] in ("node", "nodes", "no"):
        for name in rest[1:]:
            if not store.delete(cluster, name):
                die(f'Error from server (NotFound): nodes "{name}" not found')
            print(f'node "{name}" deleted')
        return 0
    if verb == "get" and rest:
        return get_objects(store, cluster, rest[0], rest[1:], flags)
    if verb == "delete" and len(rest) >= 2:
        return delete_objects(store, cluster, rest[0], rest[1:], flags)
    die(f'error: the sandbox kubectl does not support "{" ".join(args)}"')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
