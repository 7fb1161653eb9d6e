"""Shared per-cluster state of the sandbox (the stand-in for etcd + the Node objects).

Stdlib only: the stand-ins import this file directly (it sits next to them), and
`rke2fleet_sandbox.datastore` re-exports it for tests. Layout under the directory:
``clusters/<cluster>.json`` (nodes, node passwords, etcd ``members``, ``tokenHash``),
``events.jsonl`` (append-only), ``.lock``. A cluster's JSON also holds the API objects of the deploy
controller (``objects``, ``events``: standins/addons.py). A cluster is identified by the hash of its CA
(``cluster_id_for_ca``).

etcd, as RKE2 runs it: ``members`` maps a member name (``<node>-<8 hex>``) to
``{node, address, learner, added, promoteAt, pid, pidStart}``. A joining server is added as a
learner (one learner at a time); the leader promotes it once it caught up, which here is lazy: every
read or transaction promotes the learners whose ``promoteAt`` has passed, whose rke2 process runs,
while the cluster has quorum (more than half of the voters' processes run). The cluster token is
kept as the sha256 of its password part only (``tokenHash``).

``rke2 server --cluster-reset[-restore-path]`` (``cluster_reset``) makes the cluster a one-voter etcd
cluster again, with the datastore content (Node records, node passwords, token hash) of an etcd
snapshot when one is restored; every earlier member is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time

# No typing/pathlib at run time: every rke2 daemon start imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

PEER_PORT = 2380
# etcd's answers (go.etcd.io/etcd/api/v3rpc/rpctypes), as k3s logs them.
TOO_MANY_LEARNERS = "etcdserver: too many learner members in cluster"
REQUEST_TIMED_OUT = "etcdserver: request timed out"
NOT_ENOUGH_STARTED = "etcdserver: re-configuration failed due to not enough started members"
PEER_URLS_EXIST = "etcdserver: Peer URLs already exists"
DIFFERENT_TOKEN = "bootstrap data already found and encrypted with different token"  # noqa: S105 - a message
# The sandbox's own refusals (real etcd would not refuse, and split brain): one datastore per cluster CA.
SPLIT_BRAIN = ("sandbox: refusing to {what} while rke2 server runs on {nodes}: real etcd would split brain "
               "into two clusters; stop rke2-server on every server of the cluster first")
# The Node's Ready condition (kubelet / node lifecycle controller texts).
NOT_READY_CNI = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                 "message:Network plugin returns error: cni plugin not initialized")
CNI_BROKEN_SWITCH = "cni-broken"  # a file in the node's host's faults directory
DEFAULT_READY_DELAY = 1.0
# EtcdIsVoter, as k3s's etcd member controller sets it on server Nodes.
VOTER_CONDITIONS = {
    "voter": ("True", "MemberNotLearner", "Node is a voting member of the etcd cluster"),
    "learner": ("False", "MemberIsLearner", "Node has not been promoted to voting member of the etcd cluster"),
    "unhealthy": ("False", "Unhealthy", "Node is unhealthy"),
    "absent": ("False", "NotAMember", "Node is not a member of the etcd cluster"),
}


def cluster_id_for_ca(ca_pem: str) -> str:
    return hashlib.sha256(ca_pem.encode()).hexdigest()[:16]


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process (field 22 of /proc/PID/stat), to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_running(pid: int, start_ticks: int | None) -> bool:
    """Alive, the same process, and neither stopped (SIGSTOP) nor a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("T", "t", "Z", "X"):
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


def token_hash(password: str) -> str:
    """What the datastore keeps of a token: the sha256 of its password part (never the password)."""
    return hashlib.sha256(password.encode()).hexdigest()


def peer_url(address: str) -> str:
    return f"https://{address}:{PEER_PORT}"


def member_running(member: dict[str, Any]) -> bool:
    pid = int(member.get("pid") or 0)
    return pid > 0 and process_running(pid, member.get("pidStart"))


def has_quorum(data: dict[str, Any]) -> bool:
    """More than half of the voting members' rke2 processes run (True when no member is recorded)."""
    voters = [m for m in data.get("members", {}).values() if not m.get("learner")]
    if not voters:
        return True
    return 2 * sum(1 for m in voters if member_running(m)) > len(voters)


def removal_allowed(data: dict[str, Any], member_name: str) -> bool:
    """etcd's strict reconfig check (IsReadyToRemoveVotingMember): after removing a voter, the
    remaining voters that are started must still be a quorum of the remaining voters."""
    member = data.get("members", {}).get(member_name)
    if member is None or member.get("learner"):
        return True
    others = [m for name, m in data["members"].items() if name != member_name and not m.get("learner")]
    started = sum(1 for m in others if member_running(m))
    return started >= len(others) // 2 + 1


def member_of_node(data: dict[str, Any], node: str) -> tuple[str, dict[str, Any]] | None:
    for name, member in data.get("members", {}).items():
        if member.get("node") == node:
            return name, member
    return None


def running_servers(data: dict[str, Any], except_node: str | None = None) -> list[str]:
    """The servers whose rke2 process runs: etcd members, and registered server Nodes (a joining
    server is one before etcd admits it)."""
    nodes = {m.get("node") or name for name, m in data.get("members", {}).items() if member_running(m)}
    nodes |= {name for name, n in data.get("nodes", {}).items() if n.get("role") == "server"
              and process_running(int(n.get("pid") or 0), n.get("pidStart"))}
    return sorted(n for n in nodes if n != except_node)


def _promotable(data: dict[str, Any], now: float) -> list[str]:
    learners = [name for name, m in data.get("members", {}).items()
                if m.get("learner") and (m.get("promoteAt") or 0) <= now and member_running(m)]
    return learners if learners and has_quorum(data) else []


def ready_condition(node: dict[str, Any], now: float) -> tuple[str, str, str]:
    """(status, reason, message) of the Node's Ready condition."""
    if not process_running(int(node.get("pid", 0)), node.get("pidStart")):
        return "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
    active_at = node.get("activeAt")
    delay = float(node.get("readyDelay", DEFAULT_READY_DELAY))
    faults = node.get("faultsDir")
    if (active_at is None or now < float(active_at) + delay
            or (faults and os.path.exists(os.path.join(faults, CNI_BROKEN_SWITCH)))):
        return "False", "KubeletNotReady", NOT_READY_CNI
    return "True", "KubeletReady", "kubelet is posting ready status"


def voter_condition(data: dict[str, Any], node_name: str) -> tuple[str, str, str]:
    """(status, reason, message) of a server Node's EtcdIsVoter condition."""
    found = member_of_node(data, node_name)
    if found is None:
        return VOTER_CONDITIONS["absent"]
    member = found[1]
    if not member_running(member):
        return VOTER_CONDITIONS["unhealthy"]
    return VOTER_CONDITIONS["learner" if member.get("learner") else "voter"]


class Datastore:
    """File-based JSON store; every mutation holds an exclusive ``fcntl`` lock on ``.lock``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = os.fspath(directory)

    # -- low level -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _cluster_path(self, cluster: str) -> str:
        return os.path.join(self.dir, "clusters", f"{cluster}.json")

    def _load(self, cluster: str) -> dict[str, Any]:
        try:
            with open(self._cluster_path(cluster)) as f:
                data: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            data = {}
        data.setdefault("cluster", cluster)
        data.setdefault("nodes", {})
        data.setdefault("nodePasswords", {})
        data.setdefault("members", {})
        return data

    def _node_event(self, cluster: str, data: dict[str, Any], node: str, event: str, **extra: Any) -> None:
        """An event about ``node`` carrying its version and role, as the node events do."""
        record = data["nodes"].get(node) or {}
        extra.setdefault("version", record.get("version"))
        extra.setdefault("role", record.get("role", "server"))
        self._append_event(cluster, node, event, **extra)

    def _promote(self, cluster: str, data: dict[str, Any]) -> None:
        """The leader's promotion of caught-up learners (see the module docstring)."""
        now = time.time()
        for name in _promotable(data, now):
            member = data["members"][name]
            member["learner"] = False
            member["promotedAt"] = now
            self._node_event(cluster, data, member.get("node", ""), "promote", member=name)

    def _read(self, cluster: str) -> dict[str, Any]:
        """A cluster's state for reading; promotes due learners first (under the lock)."""
        data = self._load(cluster)
        if _promotable(data, time.time()):
            with self.transaction(cluster) as data:
                pass
        return data

    def _save(self, cluster: str, data: dict[str, Any]) -> None:
        path = self._cluster_path(cluster)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path.removesuffix('.json')}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _append_event(self, cluster: str, node: str, event: str, **extra: Any) -> None:
        record = {"t": time.time(), "cluster": cluster, "node": node, "event": event, **extra}
        with open(os.path.join(self.dir, "events.jsonl"), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def transaction(self, cluster: str) -> Iterator[dict[str, Any]]:
        """Read-modify-write of one cluster's state under the lock."""
        with self._locked():
            data = self._load(cluster)
            self._promote(cluster, data)
            yield data
            self._save(cluster, data)

    def record(self, cluster: str, node: str, event: str, **extra: Any) -> None:
        with self._locked():
            self._append_event(cluster, node, event, **extra)

    # -- operations used by the stand-ins ----------------------------------------------------
    def register(
        self,
        cluster: str,
        node: dict[str, Any],
        node_password_hash: str,
    ) -> str | None:
        """Register or refresh a node. Returns an error message when the node password is rejected."""
        name = node["name"]
        with self.transaction(cluster) as data:
            known = data["nodePasswords"].get(name)
            if known is not None and known != node_password_hash:
                return (
                    "Node password rejected, duplicate hostname or contents of "
                    "'/etc/rancher/node/password' may not match server node-passwd entry, "
                    "try enabling a unique node name with the --with-node-id flag"
                )
            data["nodePasswords"][name] = node_password_hash
            old = data["nodes"].get(name)
            if old is None:
                node.setdefault("unschedulable", False)
                node["created"] = time.time()
                data["nodes"][name] = node
                self._append_event(cluster, name, "join", version=node.get("version"), role=node.get("role"))
            else:
                # Labels and taints apply at registration only: keep the stored ones.
                for key in ("labels", "taints", "unschedulable", "created"):
                    node[key] = old.get(key, node.get(key))
                data["nodes"][name] = node
            self._append_event(cluster, name, "start", version=node.get("version"), role=node.get("role"))
            return None

    def mark(self, cluster: str, name: str, event: str, **changes: Any) -> bool:
        """Update fields of a node and record ``event``; False when the node does not exist."""
        with self.transaction(cluster) as data:
            node = data["nodes"].get(name)
            if node is None:
                return False
            node.update(changes)
            self._append_event(cluster, name, event, version=node.get("version"), role=node.get("role"))
            return True

    def delete(self, cluster: str, name: str) -> bool:
        """``kubectl delete node``: the Node goes; a server's etcd member is removed too, unless etcd's
        strict reconfig check refuses (then the member stays and ``member-remove-refused`` is
        recorded; the Node is deleted all the same). A removed member's rke2 process gets SIGTERM,
        as etcd stops a member removed from its cluster."""
        stop: tuple[int, int | None] | None = None
        with self.transaction(cluster) as data:
            node = data["nodes"].pop(name, None)
            if node is None:
                return False
            data["nodePasswords"].pop(name, None)
            self._append_event(cluster, name, "delete", version=node.get("version"), role=node.get("role"))
            found = member_of_node(data, name)
            if found is not None:
                member_name, member = found
                if removal_allowed(data, member_name):
                    del data["members"][member_name]
                    self._append_event(cluster, name, "member-remove", member=member_name,
                                       learner=bool(member.get("learner")), version=node.get("version"),
                                       role=node.get("role"))
                    if member.get("pid"):
                        stop = int(member["pid"]), member.get("pidStart")
                else:
                    self._append_event(cluster, name, "member-remove-refused", member=member_name,
                                       error=NOT_ENOUGH_STARTED, version=node.get("version"),
                                       role=node.get("role"))
        if stop is not None and process_start_ticks(stop[0]) == stop[1]:
            import signal

            try:
                os.kill(stop[0], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        return True

    # -- etcd membership and the cluster token ------------------------------------------------
    def new_cluster(self, cluster: str, member_name: str, node: str, address: str, pid: int,
                    pid_start: int | None, token_sha256: str) -> None:
        """An init server without a local datastore: a new etcd cluster of one voter."""
        now = time.time()
        with self.transaction(cluster) as data:
            data["members"] = {member_name: {"node": node, "address": address, "learner": False,
                                             "added": now, "promoteAt": None, "pid": pid,
                                             "pidStart": pid_start}}
            data["tokenHash"] = token_sha256
            self._node_event(cluster, data, node, "member-add", member=member_name, learner=False,
                             address=address, newCluster=True)

    def running_servers(self, cluster: str, except_node: str | None = None) -> list[str]:
        return running_servers(self._load(cluster), except_node)

    def cluster_reset(self, cluster: str, member_name: str, node: str, address: str, token_sha256: str,
                      restored: dict[str, Any] | None, snapshot: str | None) -> tuple[str, str] | None:
        """``--cluster-reset``: refused (``(reason, error)``) while a server of the cluster runs, or
        when the token is not the one the data is encrypted with (the snapshot's when restoring).
        Else the cluster becomes ``member_name`` alone, a voter (its process gone: the reset run
        exits), every earlier member removed; restoring also sets the snapshot's Node records, node
        passwords and token hash. Records ``cluster-reset`` and a ``member-remove`` per dropped member."""
        with self.transaction(cluster) as data:
            running = running_servers(data)
            if running:
                return "peers-running", SPLIT_BRAIN.format(what="reset the etcd cluster", nodes=", ".join(running))
            expected = data.get("tokenHash") if restored is None else restored.get("tokenHash")
            if expected and expected != token_sha256:
                return "token", DIFFERENT_TOKEN
            if restored is not None:
                data["nodes"] = dict(restored.get("nodes") or {})
                data["nodePasswords"] = dict(restored.get("nodePasswords") or {})
                data["tokenHash"] = expected
                data["objects"] = dict(restored.get("objects") or {})  # AddOns, HelmCharts... (standins/addons.py)
            dropped, now = data["members"], time.time()
            data["members"] = {member_name: {"node": node, "address": address, "learner": False, "added": now,
                                             "promoteAt": None, "pid": None, "pidStart": None}}
            self._node_event(cluster, data, node, "cluster-reset", member=member_name, snapshot=snapshot,
                             address=address)
            for name, member in sorted(dropped.items()):
                self._node_event(cluster, data, member.get("node", ""), "member-remove", member=name,
                                 learner=bool(member.get("learner")), reason="cluster-reset")
            return None

    def forget_node_password(self, cluster: str, node: str) -> None:
        """The first start after a cluster reset deletes the node's password secret (k3s's
        node-password-secret-cleanup): the restored one may not be the password on disk."""
        with self.transaction(cluster) as data:
            data["nodePasswords"].pop(node, None)

    def start_member(self, cluster: str, member_name: str, node: str, address: str, pid: int,
                     pid_start: int | None, token_sha256: str) -> tuple[str, str] | None:
        """A server starting on its local datastore: ``(reason, error)`` when refused (its token is
        not the cluster's, or its member was removed), else None (the member's process recorded)."""
        with self.transaction(cluster) as data:
            if data.get("tokenHash") and data["tokenHash"] != token_sha256:
                return "token", DIFFERENT_TOKEN
            member = data["members"].get(member_name)
            if member is None or member.get("address") != address:
                found = " ".join(f"{n}={peer_url(m.get('address', ''))}" for n, m in data["members"].items())
                return "removed", (f"this server is a not a member of the etcd cluster. Found [{found}], "
                                   f"expect: {member_name}={peer_url(address)}")
            member.update(pid=pid, pidStart=pid_start, node=node)
            return None

    def add_learner(self, cluster: str, member_name: str, node: str, address: str, pid: int,
                    pid_start: int | None, promote_delay: float) -> tuple[str, bool] | None:
        """MemberAddAsLearner: None when added (or already a member); else ``(etcd error, retry)``:
        retry while another learner exists or the cluster has no quorum."""
        now = time.time()
        with self.transaction(cluster) as data:
            members = data["members"]
            if member_name in members:
                members[member_name].update(pid=pid, pidStart=pid_start)
                return None
            if any(m.get("address") == address for m in members.values()):
                return PEER_URLS_EXIST, False
            if not has_quorum(data):
                return REQUEST_TIMED_OUT, True
            if any(m.get("learner") for m in members.values()):
                return TOO_MANY_LEARNERS, True
            members[member_name] = {"node": node, "address": address, "learner": True, "added": now,
                                    "promoteAt": now + promote_delay, "pid": pid, "pidStart": pid_start}
            self._node_event(cluster, data, node, "member-add", member=member_name, learner=True, address=address)
            return None

    def rotate_token(self, cluster: str, node: str, old_sha256: str, new_sha256: str) -> bool:
        """``rke2 token rotate``: False (401) when the old token is not the cluster's current one."""
        with self.transaction(cluster) as data:
            if data.get("tokenHash") != old_sha256:
                return False
            data["tokenHash"] = new_sha256
            self._node_event(cluster, data, node, "token-rotate")
            return True

    def token_matches(self, cluster: str, password: str) -> bool | None:
        """Whether ``password`` is the cluster's current token (None: no token recorded yet)."""
        current = self._load(cluster).get("tokenHash")
        return None if current is None else current == token_hash(password)

    def quorum(self, cluster: str) -> bool:
        return has_quorum(self._read(cluster))

    def refused(self, cluster: str, node: str, role: str, version: str, reason: str, error: str) -> None:
        """A node's start refused by the cluster (token, membership, authentication...)."""
        self.record(cluster, node, "start-refused", role=role, version=version, reason=reason, error=error)

    # -- reading API (tests) ------------------------------------------------------------------
    def clusters(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.dir, "clusters"))
        except FileNotFoundError:
            return []
        return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and not n.startswith("."))

    def cluster(self, cluster: str) -> dict[str, Any]:
        """A cluster's whole state (nodes, members, tokenHash), learners due promoted first."""
        return self._read(cluster)

    def members(self, cluster: str) -> dict[str, dict[str, Any]]:
        members: dict[str, dict[str, Any]] = self._read(cluster)["members"]
        return members

    def nodes(self, cluster: str | None = None) -> list[dict[str, Any]]:
        """Nodes with computed fields: ``running`` (its rke2 process runs and is not stopped),
        ``readyCondition`` (status, reason, message), ``ready`` (that status is True), and for
        servers ``etcdMember`` (name, address) and ``voterCondition`` (EtcdIsVoter)."""
        result = []
        now = time.time()
        for cid in [cluster] if cluster else self.clusters():
            data = self._read(cid)
            for node in data["nodes"].values():
                node = dict(node, cluster=cid)
                node["running"] = process_running(int(node.get("pid", 0)), node.get("pidStart"))
                node["readyCondition"] = ready_condition(node, now)
                node["ready"] = node["readyCondition"][0] == "True"
                if node.get("role") == "server":
                    found = member_of_node(data, node["name"])
                    node["etcdMember"] = (found[0], found[1].get("address")) if found else None
                    node["voterCondition"] = voter_condition(data, node["name"])
                result.append(node)
        return sorted(result, key=lambda n: (n["cluster"], n["name"]))

    def events(self, cluster: str | None = None) -> list[dict[str, Any]]:
        try:
            with open(os.path.join(self.dir, "events.jsonl")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if cluster is None or e["cluster"] == cluster]
