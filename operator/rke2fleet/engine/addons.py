"""Add-ons across a cluster (reference §13): which of spec.addons every server holds, and the
removal of one dropped from the list. Node passes write and remove the files; removing a file
alone does not uninstall anything, so once no server holds it the object is deleted through the
cluster's API (kubectl on a serving server), then forgotten."""

from __future__ import annotations

import contextlib

from rke2fleet.api import RKE2ClusterSpec, SpecError, parse_node_spec
from rke2fleet.api.status import AddonStatus
from rke2fleet.engine.access import Waiting, node_paths, target_of
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import ClusterOutcome, Event
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.hostaccess import HostAccessError, redact
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.hostfiles import addon_file_name, addon_key, addon_of_file


def from_file(file: str) -> AddonStatus | None:
    """What a file the operator wrote names (for one found on a server after a restart)."""
    named = addon_of_file(file)
    if named is None:
        return None
    kind, namespace, name = named
    return AddonStatus(name=name, kind=kind, namespace=namespace, file=file, state="Removing")


def _desired(cluster: RKE2ClusterSpec) -> dict[str, AddonStatus]:
    out: dict[str, AddonStatus] = {}
    for addon in cluster.addons:
        kind, namespace, name = addon_key(addon)
        file = addon_file_name(addon)
        out[file] = AddonStatus(name=name, kind=kind, namespace=namespace, file=file, state="Pending")
    return out


async def addons_step(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, records: list[NodeRecord], out: ClusterOutcome
) -> None:
    recorded = [AddonStatus.model_validate(a) for a in crec.status.get("addons") or []]
    servers = [r for r in records if r.role == "server" and not r.deleting]
    held = {r.name: set(r.status.get("addons") or []) for r in servers}
    if not cluster.addons and not recorded and not any(held.values()):
        return
    wanted = _desired(cluster)
    states: list[AddonStatus] = []
    for file, addon in wanted.items():
        everywhere = bool(servers) and all(file in files for files in held.values())
        states.append(addon.model_copy(update={"state": "Applied" if everywhere else "Pending"}))
    leaving = {a.file: a for a in recorded if a.file not in wanted}
    for files in held.values():
        for file in files - wanted.keys() - leaving.keys():
            found = from_file(file)
            if found is not None:
                leaving[file] = found
    for file, addon in sorted(leaving.items()):
        if any(file in files for files in held.values()) or not await _delete(engine, cluster, servers, addon, out):
            states.append(addon.model_copy(update={"state": "Removing"}))
    out.status.addons = states


async def _delete(
    engine: Engine, cluster: RKE2ClusterSpec, servers: list[NodeRecord], addon: AddonStatus, out: ClusterOutcome
) -> bool:
    """Delete the add-on's object through a serving server; True when it is gone."""
    for record in sorted((r for r in servers if r.serving), key=lambda r: r.name):
        with contextlib.suppress(Waiting, SpecError):
            target = await target_of(engine, cluster, record)
            paths = node_paths(cluster, parse_node_spec(record.spec))
            argv = kubectl.kubectl(paths, "delete", addon.kind.lower(), addon.name, "-n", addon.namespace,
                                   "--ignore-not-found")  # fmt: skip
            try:
                res = await engine.hosts.run(target, argv, check=False)
            except HostAccessError:
                continue
            if res.exit_status == 0:
                msg = f"{addon.kind} {addon.namespace}/{addon.name} removed from the servers and deleted"
                out.events.append(Event("Normal", "AddonRemoved", msg))
                return True
            tail = redact(" ".join(res.stderr.split()[-20:]), [])
            out.events.append(Event("Warning", "AddonRemovalFailed", f"deleting {addon.kind} {addon.name}: {tail}"))
            return False
    return False
