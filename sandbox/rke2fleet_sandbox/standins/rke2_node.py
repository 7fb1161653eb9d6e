"""The ``rke2`` stand-in behind ``rke2.py`` (the entry script answers ``--version`` without importing this).

``rke2 server|agent`` (config.yaml + drop-ins, first server / join over the supervisor port 9345,
the shared datastore, etcd membership and the cluster token as RKE2 checks them, leaf
certificates); ``rke2 etcd-snapshot save|ls|delete`` (requests to the running server's
``/db/snapshot``, as k3s's CLI makes them); ``rke2 token rotate``; ``rke2 certificate rotate|check``;
other subcommands exist but say they are not implemented in the sandbox. The supervisor speaks plain
HTTP on 9345.

A server start, as k3s's etcd code does it:
  * a local datastore (``<data-dir>/server/db/etcd``) exists: an existing member. Its token
    (configured, else ``server/token``) must be the cluster's ("bootstrap data already found and
    encrypted with different token") and its member must still be in the cluster ("this server is a
    not a member of the etcd cluster"); both are fatal.
  * none, and no ``server:``: a new cluster, this server its one voter (refused while another server
    of this CA's cluster runs: real etcd would start a second cluster, a split brain).
  * none, and a ``server:``: join over 9345 (token checked against the cluster's current token),
    then MemberAddAsLearner, retried every second while another learner exists
    ("Waiting for other members to finish joining etcd cluster: ..."): the unit stays activating.
  * ``--cluster-reset [--cluster-reset-restore-path=FILE]``: see ``cluster_reset``; the process ends.
Every such refusal is recorded in the datastore as a ``start-refused`` event.

Before any of that, as RKE2 and k3s do it (details at each function):
  * ``profile: cis`` / ``etcd`` (``validate_profile``): the CIS kernel parameters in effect (read from
    /proc/sys, where a sandbox host's simulated values are bound), a server's etcd user and group;
  * registries.yaml (``wait_for_agent_configuration``): an invalid file keeps the node waiting, retried
    every 5 s ("Waiting to retrieve agent configuration; server is not ready: ...");
  * the runtime image of this version (``stage_runtime_image``): from an archive in agent/images, else
    pulled from the registry or its registries.yaml mirrors; a failed pull shuts rke2 down.
A running server applies its ``server/manifests`` (standins/addons.py, RKE2's deploy controller).
"""

from __future__ import annotations

import hashlib
import os
import sys

# No `typing` at run time: this module is imported on every non-version rke2 call.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from rke2fleet_sandbox.standins import fleetstore
    from rke2fleet_sandbox.standins import standin_common as common


def _import_helpers() -> None:
    """The sibling modules, imported once the command is known (``--version`` needs neither)."""
    global fleetstore, common
    if not TYPE_CHECKING:  # mypy knows them by their package path (above)
        import fleetstore
        import standin_common as common


def import_yaml() -> Any:
    """PyYAML, the one non-stdlib module: the shim runs ``python -S``, so add site-packages first."""
    if sys.flags.no_site:
        import site

        site.main()
    import yaml

    return yaml


DEFAULT_VERSION = "v1.35.7+rke2r1"
GO_VERSION = "go version go1.26.5 X:boringcrypto"
CONFIG_FILE = "/etc/rancher/rke2/config.yaml"
KUBECONFIG_FILE = "/etc/rancher/rke2/rke2.yaml"
NODE_PASSWORD_FILE = "/etc/rancher/node/password"  # noqa: S105 - a path, not a password
SUPERVISOR_PORT = 9345
API_PORT = 6443

BOTH_KEYS = {
    "server", "token", "token-file", "node-name", "with-node-id", "node-label", "node-taint", "node-ip",
    "node-external-ip", "data-dir", "private-registry", "selinux", "profile", "protect-kernel-defaults",
    "kubelet-arg", "kube-proxy-arg", "resolv-conf", "debug", "config", "image-credential-provider-bin-dir",
    "image-credential-provider-config", "lb-server-port", "kube-proxy-extra-mount", "kubelet-extra-mount",
    "system-default-registry", "pause-image", "snapshotter", "container-runtime-endpoint", "cloud-provider-name",
}
SERVER_KEYS = {
    "agent-token", "agent-token-file", "tls-san", "advertise-address", "cluster-cidr", "service-cidr",
    "cluster-dns", "cluster-domain", "cni", "ingress-controller", "write-kubeconfig-mode",
    "write-kubeconfig-group", "write-kubeconfig", "kube-apiserver-arg", "kube-controller-manager-arg",
    "kube-scheduler-arg", "etcd-arg", "disable", "secrets-encryption-provider", "cluster-reset",
    "cluster-reset-restore-path", "disable-cloud-controller", "disable-kube-proxy", "egress-selector-mode",
    "bind-address", "https-listen-port", "service-node-port-range", "enable-servicelb", "embedded-registry",
    "disable-scheduler", "disable-apiserver", "disable-controller-manager", "disable-etcd",
    "secrets-encryption", "audit-policy-file", "pod-security-admission-config-file", "kubelet-path",
}
SERVER_KEY_PREFIXES = ("etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-")
CRITICAL_DEFAULTS = {
    "agent-token": "",
    "cluster-cidr": "10.42.0.0/16",
    "cluster-dns": "10.43.0.10",
    "cluster-domain": "cluster.local",
    "disable-cloud-controller": "false",
    "disable-kube-proxy": "false",
    "egress-selector-mode": "agent",
    "service-cidr": "10.43.0.0/16",
}


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def fake_commit(version: str) -> str:
    return hashlib.sha1(version.encode()).hexdigest()  # noqa: S324 - a fake commit id, not security


def log(level: str, msg: str) -> None:
    print(common.logrus_line(level, msg), file=sys.stderr, flush=True)


def fatal(msg: str) -> NoReturn:
    log("fatal", msg)
    sys.exit(1)


def refuse(ctx: NodeContext, cluster: str, reason: str, msg: str) -> NoReturn:
    """Fatal, and recorded in the datastore: the cluster refused this node's start."""
    try:
        ctx.store.refused(cluster, ctx.node_name, ctx.role, ctx.version, reason, msg)
    except OSError:
        pass
    fatal(msg)


# -- configuration ---------------------------------------------------------------------------------
def load_config(path: str) -> dict[str, Any]:
    """config.yaml then config.yaml.d/*.yaml in name order; last wins, ``key+:`` appends."""
    import os

    yaml = import_yaml()
    files = [path] if os.path.exists(path) else []
    try:  # what glob("config.yaml.d/*.yaml") matches, without glob's imports
        files += [os.path.join(f"{path}.d", name) for name in sorted(os.listdir(f"{path}.d"))
                  if name.endswith(".yaml") and not name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        pass
    merged: dict[str, Any] = {}
    for name in files:
        try:
            with open(name) as f:
                data = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            fatal(f"failed to parse {name}: {exc}".replace("\n", " "))
        if data is None:
            continue
        if not isinstance(data, dict):
            fatal(f"failed to parse {name}: yaml: config file is not a map")
        for key, value in data.items():
            key = str(key)
            if key.endswith("+"):
                base = key[:-1]
                merged[base] = _as_list(merged.get(base)) + _as_list(value)
            else:
                merged[key] = value
    return merged


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [value]


def parse_flags(args: list[str]) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            fatal(f"unexpected argument {arg!r}")
        key = arg.lstrip("-")
        if "=" in key:
            key, value = key.split("=", 1)
            flags[key] = value
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            flags[key] = args[i + 1]
            i += 1
        else:
            flags[key] = True
        i += 1
    return flags


def effective_config(role: str, flags: dict[str, Any]) -> dict[str, Any]:
    config = load_config(str(flags.pop("config", flags.pop("c", CONFIG_FILE))))
    for key in sorted(config):
        known = key in BOTH_KEYS or key in SERVER_KEYS or key.startswith(SERVER_KEY_PREFIXES)
        server_only = key not in BOTH_KEYS
        if not known:
            log("warning", f"Unknown flag --{key} found in config.yaml, skipping")
            del config[key]
        elif role == "agent" and server_only:
            log("warning", f"Unknown flag --{key} found in config.yaml, skipping")
            del config[key]
    config.update(flags)  # command-line flags win over the file
    return config


def critical_values(config: dict[str, Any]) -> dict[str, str]:
    values = {}
    for key, default in CRITICAL_DEFAULTS.items():
        raw = config.get(key, default)
        value = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw).lower()
        if key == "agent-token" and value:
            value = hashlib.sha256(value.encode()).hexdigest()  # compare without sending the secret
        values[key] = value
    return values


def kubeconfig_mode(config: dict[str, Any]) -> int:
    raw = config.get("write-kubeconfig-mode")
    if raw is None:
        return 0o600
    try:
        return int(str(raw), 8)
    except ValueError:
        fatal(f"invalid write-kubeconfig-mode {raw!r}")


# -- tokens and PKI ------------------------------------------------------------------------------------
def parse_token(token: str) -> tuple[str | None, str]:
    """(CA hash or None, password) of a secure ``K10<hash>::<user>:<password>`` or short token."""
    if token.startswith("K10") and "::" in token:
        ca_hash, creds = token[3:].split("::", 1)
        _, _, password = creds.partition(":")
        return ca_hash, password
    return None, token


def random_pem(kind: str, size: int = 420) -> str:
    import base64
    import os

    encoded = base64.b64encode(os.urandom(size)).decode()
    body = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def configured_token(config: dict[str, Any]) -> str | None:
    if config.get("token"):
        return str(config["token"])
    if config.get("token-file"):
        try:
            with open(str(config["token-file"])) as f:
                return f.read().strip()
        except OSError as exc:
            fatal(f"failed to read token file: {exc}")
    return None


# -- server-side state -------------------------------------------------------------------------------
class NodeContext:
    def __init__(self, role: str, version: str, config: dict[str, Any]) -> None:
        import os

        self.role = role
        self.version = version
        self.config = config
        self.info = common.host_info()
        self.data_dir = str(config.get("data-dir", "/var/lib/rancher/rke2"))
        self.address = str(self.info["address"])
        self.node_name = str(config.get("node-name") or self.info["name"])
        self.critical = critical_values(config)
        self.pid = os.getpid()
        self.pid_start = fleetstore.process_start_ticks(self.pid)
        if not self.info.get("datastoreDir"):
            fatal("sandbox: datastoreDir missing from host.json")
        self.store = fleetstore.Datastore(self.info["datastoreDir"])
        self.ca_pem = ""
        self.password = ""
        self.agent_password: str | None = None
        self.cluster = ""

    @property
    def ca_path(self) -> str:
        return os.path.join(self.data_dir, "server", "tls", "server-ca.crt")

    @property
    def etcd_dir(self) -> str:
        return os.path.join(self.data_dir, "server", "db", "etcd")

    @property
    def reset_flag(self) -> str:
        return os.path.join(self.data_dir, "server", "db", "reset-flag")

    def new_member_name(self) -> str:
        return f"{self.node_name}-{os.urandom(4).hex()}"

    def host_seconds(self, key: str, switch: str | None = None) -> float:
        """A delay of this host: its fault switch file if set, else host.json's ``key``, else 1 s."""
        value = common.fault_seconds(switch) if switch else None
        if value is None:
            try:
                value = float(self.info.get(key, fleetstore.DEFAULT_READY_DELAY))
            except (TypeError, ValueError):
                value = fleetstore.DEFAULT_READY_DELAY
        return value

    def startup_delay(self) -> float:
        """host.json's ``startupDelay`` of this role (heavy stand-ins), else 0."""
        try:
            return max(0.0, float((self.info.get("startupDelay") or {}).get(self.role, 0)))
        except (AttributeError, TypeError, ValueError):
            return 0.0

    def member_name(self) -> str:
        """``<node>-<8 hex>``, kept in ``server/db/etcd/name`` (a new one when the file is gone)."""
        path = os.path.join(self.etcd_dir, "name")
        try:
            return read_text(path).strip()
        except FileNotFoundError:
            return self.new_member_name()

    def write_member(self, name: str) -> None:
        """The local datastore: the member's name file and its write-ahead log directory."""
        os.makedirs(os.path.join(self.etcd_dir, "member", "wal"), exist_ok=True)
        common.write_atomic(os.path.join(self.etcd_dir, "name"), name + "\n", 0o600)

    def node_password_hash(self) -> str:
        if not os.path.exists(NODE_PASSWORD_FILE):
            common.write_atomic(NODE_PASSWORD_FILE, os.urandom(16).hex() + "\n", 0o600)
        return hashlib.sha256(read_text(NODE_PASSWORD_FILE).strip().encode()).hexdigest()

    def node_record(self) -> dict[str, Any]:
        labels = {}
        for item in _as_list(self.config.get("node-label")):
            k, _, v = str(item).partition("=")
            labels[k] = v
        taints = []
        for item in _as_list(self.config.get("node-taint")):
            kv, _, effect = str(item).partition(":")
            k, _, v = kv.partition("=")
            taints.append({"key": k, "value": v, "effect": effect or "NoSchedule"})
        return {
            "name": self.node_name,
            "role": self.role,
            "version": self.version,
            "pid": self.pid,
            "pidStart": self.pid_start,
            "address": self.address,
            "host": self.info["name"],
            "faultsDir": self.info.get("faultsDir"),
            "labels": labels,
            "taints": taints,
        }

    def write_token_files(self) -> None:
        server_dir = os.path.join(self.data_dir, "server")
        ca_hash = hashlib.sha256(self.ca_pem.encode()).hexdigest()
        common.write_atomic(os.path.join(server_dir, "token"), f"K10{ca_hash}::server:{self.password}\n", 0o600)
        for link in ("node-token", "agent-token"):
            path = os.path.join(server_dir, link)
            if link == "agent-token" and self.agent_password:
                common.write_atomic(path, f"K10{ca_hash}::node:{self.agent_password}\n", 0o600)
                continue
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink("token", path)

    def write_kubeconfig(self) -> None:
        import base64

        yaml = import_yaml()

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        doc = {
            "apiVersion": "v1",
            "clusters": [{"cluster": {"certificate-authority-data": b64(self.ca_pem),
                                      "server": f"https://127.0.0.1:{API_PORT}"}, "name": "default"}],
            "contexts": [{"context": {"cluster": "default", "user": "default"}, "name": "default"}],
            "current-context": "default",
            "kind": "Config",
            "preferences": {},
            "users": [{"name": "default", "user": {
                "client-certificate-data": b64(random_pem("CERTIFICATE", 300)),
                "client-key-data": b64(random_pem("EC PRIVATE KEY", 120)),
            }}],
        }
        target = str(self.config.get("write-kubeconfig", KUBECONFIG_FILE))
        common.write_atomic(target, yaml.safe_dump(doc, sort_keys=False), kubeconfig_mode(self.config))

    @property
    def runtime_dir(self) -> str:
        """``data/<tag>-<hash>``: where the runtime image of this version is extracted."""
        tag = self.version.replace("+", "-")
        return f"data/{tag}-{hashlib.sha256(self.version.encode()).hexdigest()[:12]}"

    def write_data_dir(self) -> None:
        rel = self.runtime_dir
        shim = (f'#!/bin/sh\nexec {self.info["python"]} -s {self.info["standinsDir"]}/kubectl.py "$@"\n')
        common.write_atomic(os.path.join(self.data_dir, rel, "bin", "kubectl"), shim, 0o755)
        tmp = os.path.join(self.data_dir, ".bin.tmp")
        if os.path.islink(tmp):
            os.unlink(tmp)
        os.symlink(f"{rel}/bin", tmp)
        os.replace(tmp, os.path.join(self.data_dir, "bin"))
        # Not server/db/etcd: its existence is what makes a server an existing etcd member. An agent
        # has no server directory (`rke2 certificate check` tells the roles apart by it).
        subs = ("agent/pod-manifests", "server/manifests", "server/db/snapshots") if self.role == "server" else (
            "agent/pod-manifests",)
        for sub in subs:
            os.makedirs(os.path.join(self.data_dir, sub), exist_ok=True)


# -- supervisor HTTP (port 9345) and the API port ---------------------------------------------------
UNHEALTHY_ETCD = ("[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n"
                  "[+]poststarthook/start-apiserver-admission-initializer ok\n")


def serve(ctx: NodeContext) -> None:
    import json

    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import minihttp
    else:
        import minihttp

    def token_accepted(password: object, role: object) -> bool:
        """Against the cluster's CURRENT token (a rotation applies at once), or the agent token."""
        if not isinstance(password, str):
            return False
        current = ctx.store.token_matches(ctx.cluster, password)
        accepted = password == ctx.password if current is None else current  # None: none recorded yet
        if not accepted and role != "server" and ctx.agent_password:
            accepted = password == ctx.agent_password
        return accepted

    def join_reply(body: bytes) -> tuple[int, str, str]:
        try:
            req = json.loads(body or b"{}")
            node, node_password_hash = req["node"], req["nodePasswordHash"]
        except (ValueError, KeyError, TypeError):
            return 400, "invalid join request", "text/plain"
        if not token_accepted(req.get("password"), req.get("role")):
            return 401, "Unauthorized", "text/plain"
        if req.get("role") == "server":
            theirs = req.get("critical", {})
            differing = sorted(k for k, v in ctx.critical.items() if theirs.get(k) != v)
            if differing:
                return 400, ("critical configuration value mismatch between servers: "
                             + ", ".join(differing)), "text/plain"
        error = ctx.store.register(ctx.cluster, node, node_password_hash)
        if error:
            return 403, error, "text/plain"
        return 200, json.dumps({"cluster": ctx.cluster}), "application/json"

    def rotate_reply(body: bytes) -> tuple[int, str, str]:
        """PUT /v1-rke2/token: authenticated with the old token, sets the cluster's new one."""
        try:
            req = json.loads(body or b"{}")
            old, new = str(req["token"]), str(req["newToken"])
        except (ValueError, KeyError, TypeError):
            return 400, "invalid token rotate request", "text/plain"
        if not new:
            return 400, "new token must not be empty", "text/plain"
        if not ctx.store.quorum(ctx.cluster):  # the new token is written to etcd
            return 500, fleetstore.REQUEST_TIMED_OUT, "text/plain"
        if not ctx.store.rotate_token(ctx.cluster, ctx.node_name, fleetstore.token_hash(old),
                                      fleetstore.token_hash(new)):
            return 401, "Unauthorized", "text/plain"
        ctx.password = new
        ctx.write_token_files()
        return 200, "", "text/plain"

    def snapshot_reply(body: bytes) -> tuple[int, str, str]:
        """POST /db/snapshot: ``rke2 etcd-snapshot save|ls|delete``, authenticated with the server token."""
        try:
            req = json.loads(body or b"{}")
            operation, names = str(req["operation"]), [str(n) for n in req.get("name") or []]
        except (ValueError, KeyError, TypeError):
            return 400, "invalid snapshot request", "text/plain"
        if not token_accepted(req.get("password"), "server"):
            return 401, "Unauthorized", "text/plain"
        status, answer = snapshot_operation(ctx, operation, names, req.get("dir"))
        if status != 200:  # k3s's util.SendError
            log("error", f"Sending HTTP {status} response to {ctx.address}: {answer}")
            return status, str(answer), "text/plain"
        return 200, json.dumps(answer), "application/json"

    def common_reply(path: str) -> tuple[int, str, str]:
        if path == "/cacerts":
            return 200, ctx.ca_pem, "text/plain"
        if path in ("/ping", "/readyz", "/healthz", "/livez"):
            return 200, "ok" if path != "/ping" else "pong", "text/plain"
        if path == "/version":
            return 200, json.dumps({"gitVersion": ctx.version}), "application/json"
        return 404, "404 page not found", "text/plain"

    def supervisor(method: str, path: str, body: bytes) -> tuple[int, str, str]:
        if method == "POST" and path == "/db/snapshot":
            return snapshot_reply(body)
        if method == "POST":
            return join_reply(body) if path == "/v1-rke2/join" else (404, "404 page not found", "text/plain")
        if method == "PUT":
            return rotate_reply(body) if path == "/v1-rke2/token" else (404, "404 page not found", "text/plain")
        return common_reply(path)

    def api(method: str, path: str, body: bytes) -> tuple[int, str, str]:
        """6443: the health endpoints fail while etcd has no quorum, as the apiserver's etcd check does."""
        if method == "GET" and path in ("/readyz", "/healthz", "/livez") and not ctx.store.quorum(ctx.cluster):
            return 500, f"{UNHEALTHY_ETCD}{path[1:]} check failed\n", "text/plain"
        return supervisor(method, path, body)

    for port, handler in ((SUPERVISOR_PORT, supervisor), (API_PORT, api)):
        try:
            sock = minihttp.listen(ctx.address, port)
        except OSError as exc:
            fatal(f"starting kubernetes: listen tcp {ctx.address}:{port}: bind: {(exc.strerror or str(exc)).lower()}")
        minihttp.serve_in_background(sock, handler)


# -- etcd snapshots (the server's side of `rke2 etcd-snapshot`) -------------------------------------------
def snapshot_dir(ctx: NodeContext, requested: object) -> str:
    """The request's directory, else the server's ``etcd-snapshot-dir``, else ``server/db/snapshots``;
    only the default one is created (k3s: user-specified directories must already exist)."""
    default = os.path.join(ctx.data_dir, "server", "db", "snapshots")
    directory = str(requested or ctx.config.get("etcd-snapshot-dir") or default)
    if directory == default:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    elif not os.path.isdir(directory):
        raise OSError(f"failed to get etcd-snapshot-dir: stat {directory}: no such file or directory")
    return directory


def snapshot_document(ctx: NodeContext, data: dict[str, Any], name: str, created: int) -> str:
    """What a restore needs of the cluster's datastore ``data`` (a real snapshot is etcd's bolt
    database; the operator never reads one): the member list, the token hash, the Node records and
    node passwords, and the bootstrap data (here the server CA, which names the cluster)."""
    import json

    members = data.get("members", {})
    return json.dumps({
        "kind": SNAPSHOT_KIND, "version": 1, "name": name, "node": ctx.node_name, "createdAt": created,
        "cluster": ctx.cluster, "tokenHash": data.get("tokenHash"), "members": members,
        "voters": sorted(n for n, m in members.items() if not m.get("learner")),
        "nodes": data.get("nodes", {}), "nodePasswords": data.get("nodePasswords", {}),
        "objects": data.get("objects", {}),
        "bootstrap": {"serverCA": ctx.ca_pem},
    }, indent=1, sort_keys=True) + "\n"


def snapshot_operation(ctx: NodeContext, operation: str, names: list[str], requested_dir: object,
                       ) -> tuple[int, Any]:
    """(200, answer) or (500, error) for a save, list or delete of this server's local snapshots."""
    import time

    try:
        directory = snapshot_dir(ctx, requested_dir)
    except OSError as exc:
        return 500, str(exc)
    if operation == "save":
        if common.fault_value("fail-snapshot") or not ctx.store.quorum(ctx.cluster):
            return 500, "failed to check etcd status for snapshot: context deadline exceeded"
        data = ctx.store.cluster(ctx.cluster)
        found = fleetstore.member_of_node(data, ctx.node_name)
        if found is not None and found[1].get("learner"):
            log("warning", "Unable to take snapshot: not supported for learner")
            return 200, {"created": [], "deleted": []}
        created = round(time.time())
        name = f"{names[0] if names else 'on-demand'}-{ctx.node_name}-{created}"
        path = os.path.join(directory, name)
        log("info", f"Saving etcd snapshot to {path}")
        common.write_atomic(path, snapshot_document(ctx, data, name, created), 0o600)
        return 200, {"created": [name], "deleted": []}
    if operation == "list":
        items = []
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            stamp, st = name.rsplit("-", 1)[-1], os.stat(path)  # k3s: the time in the name, else the mtime
            items.append({"name": name, "location": "file://" + path, "size": st.st_size,
                          "created": int(stamp) if stamp.isdigit() else int(st.st_mtime)})
        return 200, sorted(items, key=lambda i: (i["created"], i["name"]))
    if operation == "delete":
        deleted = []
        for name in names:
            path = os.path.join(directory, os.path.basename(name))
            if os.path.isfile(path):
                os.unlink(path)
                deleted.append(name)
        return 200, {"created": [], "deleted": deleted}
    return 500, f"unsupported snapshot operation {operation!r}"


# -- joining ------------------------------------------------------------------------------------------
def split_server_url(server_url: str) -> tuple[str, int]:
    """(host, port) of ``server:`` (``https://host:port``, scheme and port optional)."""
    rest = server_url.split("://", 1)[1] if "://" in server_url else server_url
    netloc = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if netloc.startswith("["):  # [v6]:port
        host, _, tail = netloc[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = netloc.partition(":")
    return host.lower(), int(port) if port else SUPERVISOR_PORT


def join(ctx: NodeContext, server_url: str, token: str) -> None:
    import json

    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import minihttp
    else:
        import minihttp

    host, port = split_server_url(server_url)
    shown = f"https://{host}:{port}"
    prefix = "starting kubernetes: preparing server: " if ctx.role == "server" else ""
    try:
        status, reason, body = minihttp.request(host, port, "GET", "/cacerts")
    except OSError as exc:
        status, reason, body = 0, str(exc), b""
    if status != 200:  # urllib raised for every non-2xx answer too, its reason being the status text
        fatal(f'{prefix}failed to get CA certs: Get "{shown}/cacerts": dial tcp {host}:{port}: connect: {reason}')
    ca_pem = body.decode()
    cluster = fleetstore.cluster_id_for_ca(ca_pem)  # the cluster this node asks to join
    expected_hash, password = parse_token(token)
    actual_hash = hashlib.sha256(ca_pem.encode()).hexdigest()
    if expected_hash is not None and expected_hash != actual_hash:
        refuse(ctx, cluster, "ca-hash", f"{prefix}token CA hash does not match the Cluster CA certificate hash: "
               f"{expected_hash} != {actual_hash}")
    request = json.dumps({
        "password": password,
        "role": ctx.role,
        "critical": ctx.critical,
        "node": ctx.node_record(),
        "nodePasswordHash": ctx.node_password_hash(),
    }).encode()
    try:
        status, reason, body = minihttp.request(host, port, "POST", "/v1-rke2/join", request)
    except OSError as exc:
        fatal(f'{prefix}failed to join: Post "{shown}/v1-rke2/join": {exc}')
    detail = body.decode(errors="replace").strip()
    if status == 401:
        refuse(ctx, cluster, "unauthorized",
               f"{prefix}failed to validate token: {shown}/v1-rke2/server-bootstrap: 401 Unauthorized")
    if status == 400:
        refuse(ctx, cluster, "config", f"{prefix}failed to validate server configuration: {detail}")
    if status == 403:
        refuse(ctx, cluster, "node-password", f"{prefix}{detail}")
    if not 200 <= status < 300:
        fatal(f"{prefix}{detail}")
    try:
        ctx.cluster = json.loads(body)["cluster"]
    except (ValueError, KeyError, TypeError):
        fatal(f'{prefix}failed to join: Post "{shown}/v1-rke2/join": invalid response from the server')
    ctx.ca_pem = ca_pem
    ctx.password = password


# -- etcd -----------------------------------------------------------------------------------------------
ETCD_PREFIX = "starting kubernetes: preparing server: start managed database: "


def start_existing_member(ctx: NodeContext, token: str | None) -> None:
    """A server with a local datastore: its token and its membership are checked; no join."""
    try:
        ctx.ca_pem = read_text(ctx.ca_path)
    except FileNotFoundError:
        fatal(f"starting kubernetes: preparing server: failed to read {ctx.ca_path}: no such file or directory")
    ctx.cluster = fleetstore.cluster_id_for_ca(ctx.ca_pem)
    token_file = os.path.join(ctx.data_dir, "server", "token")
    if token is None and os.path.exists(token_file):
        token = read_text(token_file).strip()
    ctx.password = parse_token(token)[1] if token else ""
    name = ctx.member_name()
    refused = ctx.store.start_member(ctx.cluster, name, ctx.node_name, ctx.address, ctx.pid, ctx.pid_start,
                                     fleetstore.token_hash(ctx.password))
    if refused is not None:
        reason, error = refused
        refuse(ctx, ctx.cluster, reason,
               f"starting kubernetes: preparing server: {error}" if reason == "token" else ETCD_PREFIX + error)
    log("info", f"Starting etcd member {name} of an existing cluster (local datastore found)")
    if os.path.exists(ctx.reset_flag):  # the first start after a cluster reset
        ctx.store.forget_node_password(ctx.cluster, ctx.node_name)
        os.unlink(ctx.reset_flag)
    rejected = ctx.store.register(ctx.cluster, ctx.node_record(), ctx.node_password_hash())
    if rejected:
        refuse(ctx, ctx.cluster, "node-password", rejected)


def start_new_cluster(ctx: NodeContext, token: str | None) -> None:
    """The init server (no ``server:``) without a local datastore: a new etcd cluster."""
    if os.path.exists(ctx.ca_path):
        ctx.ca_pem = read_text(ctx.ca_path)
    else:
        ctx.ca_pem = random_pem("CERTIFICATE")
        common.write_atomic(ctx.ca_path, ctx.ca_pem, 0o644)
    token_file = os.path.join(ctx.data_dir, "server", "token")
    if token:
        ctx.password = parse_token(token)[1]
    elif os.path.exists(token_file):
        ctx.password = parse_token(read_text(token_file).strip())[1]
    else:
        ctx.password = os.urandom(16).hex()  # what secrets.token_hex(16) returns, without its imports
    ctx.cluster = fleetstore.cluster_id_for_ca(ctx.ca_pem)
    name = ctx.member_name()
    running = ctx.store.running_servers(ctx.cluster, except_node=ctx.node_name)
    if running:  # this CA's cluster runs elsewhere: a second etcd cluster (server/db gone, no `server:`)
        refuse(ctx, ctx.cluster, "split-brain", ETCD_PREFIX + fleetstore.SPLIT_BRAIN.format(
            what="start a new etcd cluster", nodes=", ".join(running)))
    error = ctx.store.register(ctx.cluster, ctx.node_record(), ctx.node_password_hash())
    if error:
        refuse(ctx, ctx.cluster, "node-password", error)
    ctx.store.new_cluster(ctx.cluster, name, ctx.node_name, ctx.address, ctx.pid, ctx.pid_start,
                          fleetstore.token_hash(ctx.password))
    log("info", f"Starting etcd for new cluster, member {name}={fleetstore.peer_url(ctx.address)}")
    ctx.write_member(name)


def join_etcd(ctx: NodeContext) -> None:
    """MemberAddAsLearner, retried every second while etcd answers that another learner exists (or
    while it has no quorum); the unit stays activating meanwhile."""
    import time

    name = ctx.member_name()
    delay = ctx.host_seconds("learnerPromoteDelay")
    while True:
        answer = ctx.store.add_learner(ctx.cluster, name, ctx.node_name, ctx.address, ctx.pid, ctx.pid_start,
                                       delay)
        if answer is None:
            break
        error, retry = answer
        if not retry:
            refuse(ctx, ctx.cluster, "member-exists", ETCD_PREFIX + error)
        log("info", f"Waiting for other members to finish joining etcd cluster: {error}")  # every retry, as k3s
        time.sleep(1)
    log("info", f"Adding member {name}={fleetstore.peer_url(ctx.address)} to etcd cluster as a learner")
    ctx.write_member(name)


# -- cluster reset and snapshot restore ------------------------------------------------------------------
RESET_DONE = ("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
              "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")
SNAPSHOT_KIND = "rke2fleet-sandbox/etcd-snapshot"


def is_true(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def read_snapshot(path: str) -> dict[str, Any]:
    """A snapshot file's content (``snapshot_document``), or fatal when it is not one."""
    import json

    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        if doc.get("kind") != SNAPSHOT_KIND or not doc["bootstrap"]["serverCA"]:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        fatal(f"{ETCD_PREFIX}etcd: failed to restore snapshot {path}: snapshot file is not a valid etcd snapshot")
    result: dict[str, Any] = doc
    return result


def cluster_reset(ctx: NodeContext, token: str | None) -> NoReturn:
    """``rke2 server --cluster-reset [--cluster-reset-restore-path=FILE]``, every server stopped: this
    server becomes the cluster's one etcd voter (a new member name), with the snapshot's datastore
    content when one is restored; it writes the reset flag, logs k3s's message and exits 0."""
    import time

    path = ctx.config.get("cluster-reset-restore-path")
    restored: dict[str, Any] | None = None
    if path and path is not True:
        path = str(path)
        if not os.path.exists(path):
            fatal(f"{ETCD_PREFIX}etcd: snapshot path does not exist: {path}")
        if os.path.isdir(path):
            fatal(f"{ETCD_PREFIX}etcd: snapshot path must be a file, not a directory: {path}")
        restored = read_snapshot(path)
        ctx.ca_pem = str(restored["bootstrap"]["serverCA"])
    else:
        if os.path.exists(ctx.reset_flag):
            fatal("starting kubernetes: preparing server: Managed etcd cluster membership was previously reset, "
                  "please remove the cluster-reset flag and start rke2 normally. If you need to perform another "
                  f"cluster reset, you must first manually delete the file at {ctx.reset_flag}")
        if not os.path.isdir(ctx.etcd_dir) or not os.path.exists(ctx.ca_path):
            fatal(f"{ETCD_PREFIX}sandbox: --cluster-reset without --cluster-reset-restore-path needs this "
                  f"server's etcd datastore ({ctx.etcd_dir})")
        ctx.ca_pem = read_text(ctx.ca_path)
    ctx.cluster = fleetstore.cluster_id_for_ca(ctx.ca_pem)
    token_file = os.path.join(ctx.data_dir, "server", "token")
    if token is None and os.path.exists(token_file):
        token = read_text(token_file).strip()
    ctx.password = parse_token(token)[1] if token else os.urandom(16).hex()  # no token: k3s makes one up
    name = ctx.new_member_name()
    refused = ctx.store.cluster_reset(ctx.cluster, name, ctx.node_name, ctx.address,
                                      fleetstore.token_hash(ctx.password), restored,
                                      restored.get("name") if restored else None)
    if refused is not None:
        reason, error = refused
        refuse(ctx, ctx.cluster, reason,
               f"starting kubernetes: preparing server: {error}" if reason == "token" else ETCD_PREFIX + error)
    if restored is not None:
        log("info", f"Restoring etcd snapshot {restored.get('name')} from {path}")
        if os.path.isdir(ctx.etcd_dir):
            moved = f"{ctx.etcd_dir}-old-{int(time.time())}"
            os.rename(ctx.etcd_dir, moved)
            log("info", f"Pre-restore etcd database moved to {moved}")
    common.write_atomic(ctx.ca_path, ctx.ca_pem, 0o644)
    ctx.write_member(name)
    common.write_atomic(ctx.reset_flag, "", 0o600)
    ctx.write_token_files()
    log("info", f"Starting etcd for new cluster, member {name}={fleetstore.peer_url(ctx.address)} (cluster reset)")
    log("info", RESET_DONE)
    sys.exit(0)


# -- rke2 server / agent -------------------------------------------------------------------------------
def run_node(role: str, version: str, args: list[str]) -> NoReturn:
    import json
    import time

    config = effective_config(role, parse_flags(args))
    validate_profile(role, config)
    log("info", f"Starting rke2 {version} ({fake_commit(version)[:8]})")
    if common.fault_value("fail-next-start", consume=True) is not None:
        fatal("starting kubernetes: sandbox fault: injected start failure (fail-next-start)")
    delay = common.fault_seconds("start-delay")
    ctx = NodeContext(role, version, config)
    startup = ctx.startup_delay()
    if startup:  # heavy stand-ins (rke2fleet_sandbox.costs): containerd, etcd, the kubelet... take seconds
        time.sleep(startup)  # before it joins: a joining server is a learner from its join on, as without
    registries = wait_for_agent_configuration(config)
    stage_runtime_image(ctx, registries)
    server_url = config.get("server")
    token = configured_token(config)
    if role == "agent" and not server_url:
        fatal("--server is required")
    if server_url and not token:
        fatal("--token is required")
    if role == "server" and config.get("agent-token"):
        ctx.agent_password = parse_token(str(config["agent-token"]))[1]

    joining = False
    if role == "server" and is_true(config.get("cluster-reset")):
        cluster_reset(ctx, token)
    if role == "server" and os.path.isdir(ctx.etcd_dir):
        start_existing_member(ctx, token)
    elif role == "server" and not server_url:
        start_new_cluster(ctx, token)
    else:
        assert server_url and token
        join(ctx, str(server_url), token)
        joining = role == "server"

    notify = os.environ.get("NOTIFY_FILE")
    if notify:  # lets the systemctl stand-in record the node's exit
        common.write_atomic(os.path.join(os.path.dirname(notify), "node.json"), json.dumps({
            "cluster": ctx.cluster, "node": ctx.node_name, "role": role, "version": version,
            "datastoreDir": ctx.info["datastoreDir"]}))
    if role == "server":
        common.write_atomic(ctx.ca_path, ctx.ca_pem, 0o644)
    if joining:
        join_etcd(ctx)
    ensure_certificates(ctx)
    ctx.write_data_dir()
    if role == "server":
        ctx.write_token_files()
        ctx.write_kubeconfig()
        serve(ctx)
        start_deploy_controller(ctx)
    if delay:
        log("info", f"Waiting for the node to become ready (sandbox start-delay {delay}s)")
        time.sleep(delay)
    log("info", "rke2 is up and running" if role == "server" else "rke2 agent is up and running")
    ctx.store.mark(ctx.cluster, ctx.node_name, "ready", activeAt=time.time(),
                   readyDelay=ctx.host_seconds("nodeReadyDelay", "node-ready-delay"))
    if notify:
        common.write_atomic(notify, "READY=1\n")
    while True:
        time.sleep(3600)


# -- the CIS and etcd profiles (pkg/cli/cmds/profile_linux.go) ------------------------------------------
# RKE2's kernelRuntimeParameters (a Go map: its errors come in random order; here in this one).
CIS_KERNEL_PARAMETERS = (("vm.overcommit_memory", 1), ("vm.panic_on_oom", 0), ("kernel.panic", 10),
                         ("kernel.panic_on_oops", 1))


def kernel_parameter(key: str) -> int:
    """RKE2's sysctl(): /proc/sys read directly (in a sandbox host, the host's simulated value is
    bound there), fatal when unreadable, as upstream."""
    rel = key.replace(".", "/")
    try:
        text = read_text("/proc/sys/" + rel)
    except OSError as exc:
        fatal(f"open /proc/sys/{rel}: {str(exc.strerror or exc).lower()}")
    if len(text) < 2 or not text.endswith("\n"):
        fatal(f"invalid contents: {rel}")
    try:
        return int(text.replace("\n", ""))
    except ValueError:
        fatal(f'strconv.Atoi: parsing "{text.strip()}": invalid syntax')


def validate_profile(role: str, config: dict[str, Any]) -> None:
    """``profile: cis``: the kernel parameters of rke2-cis-sysctl.conf must be IN EFFECT (values, not
    the file), protect-kernel-defaults must not be set false; then (``cis`` and ``etcd``) a server
    needs the etcd user and group. Each failure is fatal with RKE2's text; anything else than
    ``cis``/``etcd`` is refused (``cis-1.23`` has been since v1.30)."""
    import grp
    import pwd

    profile = str(config.get("profile") or os.environ.get("RKE2_CIS_PROFILE") or "")
    if profile == "":
        log("warning", "not running in CIS mode")
        return
    if profile not in ("cis", "etcd"):
        fatal("invalid value provided for --profile flag")
    if profile == "cis":
        errors = []
        for key, expected in CIS_KERNEL_PARAMETERS:
            current = kernel_parameter(key)
            if current != expected:
                errors.append(f"invalid kernel parameter value {key}={current} - expected {expected}")
        if errors:
            fatal("".join(e + "\n" for e in errors))
        pkd = config.get("protect-kernel-defaults")
        if pkd is not None and not is_true(pkd):
            fatal("--protect-kernel-defaults must be true when using --profile=cis")
        config["protect-kernel-defaults"] = True
    if role == "server":
        errors = []
        try:
            pwd.getpwnam("etcd")
        except KeyError:
            errors.append("missing required: user: unknown user etcd")
        try:
            grp.getgrnam("etcd")
        except KeyError:
            errors.append("missing required: group: unknown group etcd")
        if errors:
            fatal("".join(e + "\n" for e in errors))


# -- private registries and the runtime image ---------------------------------------------------------
REGISTRIES_FILE = "/etc/rancher/rke2/registries.yaml"
AGENT_CONFIG_RETRY_SECONDS = 5.0


def load_registries(path: str) -> dict[str, Any]:
    """registries.yaml (wharfie's GetPrivateRegistries): none is fine; ``ValueError`` for a file that
    cannot be read or is not a registries configuration."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValueError(f"open {path}: {str(exc.strerror or exc).lower()}") from None
    log("info", f"Using private registry config file at {path}")
    yaml = import_yaml()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError("yaml: " + " ".join(str(exc).split())) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"yaml: unmarshal errors: cannot unmarshal {type(doc).__name__} into registries.Registry")
    for section in ("mirrors", "configs"):
        value = doc.get(section)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"yaml: unmarshal errors: cannot unmarshal {type(value).__name__} into "
                             f"map[string]registries.{'Mirror' if section == 'mirrors' else 'RegistryConfig'}")
    for name, mirror in (doc.get("mirrors") or {}).items():
        endpoints = (mirror or {}).get("endpoint") if isinstance(mirror, dict) else mirror
        if mirror is not None and (not isinstance(mirror, dict) or not isinstance(endpoints or [], list)
                                   or not all(isinstance(e, str) for e in endpoints or [])):
            raise ValueError(f"yaml: unmarshal errors: mirror {name}: cannot unmarshal into registries.Mirror")
    return doc


def wait_for_agent_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """k3s's agent config.Get: its get() reads the private registry configuration, and any error is
    retried every 5 s forever ("Waiting to retrieve agent configuration; server is not ready"): an
    invalid registries.yaml keeps the node from starting (the unit stays activating) until fixed."""
    import time

    path = str(config.get("private-registry") or REGISTRIES_FILE)
    while True:
        try:
            return load_registries(path)
        except ValueError as exc:
            log("info", f"Waiting to retrieve agent configuration; server is not ready: {exc}")
        time.sleep(AGENT_CONFIG_RETRY_SECONDS)


def go_quote(text: str) -> str:
    """Go's %q of a string (enough of it: quotes and backslashes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def stage_runtime_image(ctx: NodeContext, registries: dict[str, Any]) -> None:
    """pkg/bootstrap Stage: the runtime image of this version, from an archive in agent/images, else
    pulled (registries.yaml mirrors, then the registry itself). Skipped when already extracted for this
    version. A failed pull shuts rke2 down ("Shutdown request received"): systemd restarts it."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import rke2_images
    else:
        import rke2_images

    tag = rke2_images.image_tag(ctx.version)
    default_ref = f"index.docker.io/{rke2_images.RUNTIME_REPO}:{tag}"
    sdr = str(ctx.config.get("system-default-registry") or "")
    ref = f"{sdr}/{rke2_images.RUNTIME_REPO}:{tag}" if sdr else default_ref
    marker = os.path.join(ctx.data_dir, ctx.runtime_dir, ".extracted")
    if os.path.exists(marker):
        log("info", f"Runtime image {ref} bin and charts directories already exist; skipping extract")
        return
    images_dir = os.path.join(ctx.data_dir, "agent", "images")
    if rke2_images.find_image(images_dir, [default_ref, ref] if sdr else [ref]) is None:
        log("info", f"Pulling runtime image {ref}")
        common.write_atomic(os.path.join(images_dir, "runtime-image.txt"), ref + "\n", 0o644)
        error = pull_image(ref, registries, ctx.info)
        if error is not None:
            log("error", "Shutdown request received: " + go_quote(
                f"failed to get runtime image {ref}: {error}"))
            sys.exit(1)
    common.write_atomic(marker, ref, 0o644)


def registry_endpoints(registry: str, registries: dict[str, Any]) -> list[str]:
    """containerd's hosts for a registry: its mirrors (else the ``*`` wildcard's), then the registry
    itself (docker.io's is registry-1.docker.io)."""
    mirrors = registries.get("mirrors") or {}
    mirror = mirrors.get(registry) or mirrors.get("*") or {}
    endpoints = [str(e) for e in mirror.get("endpoint") or []]
    default = "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
    return endpoints + ([default] if default not in endpoints else [])


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of a registry endpoint URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "https", url
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if not host:
        host, port = hostport, ""
    prefix = "/" + path.strip("/") if path.strip("/") else ""
    if prefix.endswith("/v2"):
        prefix = prefix[:-3]
    return scheme, host, int(port) if port.isdigit() else (443 if scheme == "https" else 80), prefix


def pull_image(ref: str, registries: dict[str, Any], info: dict[str, Any]) -> str | None:
    """None once an endpoint has the image's manifest, else the last endpoint's error as
    go-containerregistry words it. One request per endpoint tried (the sandbox's registries speak
    plain HTTP, https endpoints too). The sandbox's docker.io is host.json's ``registryEndpoints``."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import minihttp
    else:
        import minihttp

    registry, _, rest = ref.partition("/")
    registry = "docker.io" if registry in ("index.docker.io", "registry-1.docker.io") else registry
    repo, _, tag = rest.rpartition(":")
    sandbox = info.get("registryEndpoints") or {}
    error = "no endpoint"
    for endpoint in registry_endpoints(registry, registries):
        scheme, host, port, prefix = split_url(endpoint)
        shown = f"{scheme}://{host}{'' if port in (80, 443) else f':{port}'}"
        name = rewrite(repo, ((registries.get("mirrors") or {}).get(registry) or {}).get("rewrite"))
        target = (host, port)
        if host in ("registry-1.docker.io", "index.docker.io", "docker.io"):
            if not sandbox.get("docker.io"):
                error = f'Get "{shown}/v2/": dial tcp: lookup {host}: no such host'
                continue
            _, dhost, dport, prefix = split_url(str(sandbox["docker.io"]))
            target = (dhost, dport)
        path = f"{prefix}/v2/{name}/manifests/{tag}"
        try:
            status, reason, body = minihttp.request(target[0], target[1], "GET", path, timeout=10)
        except OSError as exc:
            what = str(exc.strerror or exc).lower()
            error = (f'Get "{shown}/v2/": dial tcp {target[0]}:{target[1]}: '
                     f"{'i/o timeout' if 'timed out' in what else 'connect: ' + what}")
            continue
        if status == 200:
            log("info", f"Pulled runtime image {ref} from {endpoint}")
            return None
        code = {404: "MANIFEST_UNKNOWN: manifest unknown", 401: "UNAUTHORIZED: authentication required"}.get(
            status, f"unexpected status code {status} {reason}: {body.decode(errors='replace').strip()[:200]}")
        error = f"GET {shown}{path}: {code}"
    return error


def rewrite(repo: str, rules: object) -> str:
    """A mirror's ``rewrite`` rules (regexp -> replacement), the first that matches."""
    if not isinstance(rules, dict) or not rules:
        return repo
    import re

    for pattern, replacement in rules.items():
        if re.search(str(pattern), repo):
            return re.sub(str(pattern), str(replacement).replace("$", "\\"), repo, count=1)
    return repo


def start_deploy_controller(ctx: NodeContext) -> None:
    """The server's deploy controller (standins/addons.py): <data-dir>/server/manifests into the cluster."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import addons
    else:
        import addons

    addons.start(ctx.store, ctx.cluster, os.path.join(ctx.data_dir, "server", "manifests"), import_yaml(), log)


# -- certificates ----------------------------------------------------------------------------------
def ensure_certificates(ctx: NodeContext) -> None:
    """Issue the node's leaf certificates at its first start, renew those inside the renewal window.

    The check reads a small JSON index (no ``cryptography`` on a plain restart); issuing runs in a
    short-lived child (``rke2_certs.py ensure``), so the long-lived daemon never loads it."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import rke2_certs
    else:
        import rke2_certs

    window = rke2_certs.renewal_window_days(ctx.version)
    if not rke2_certs.needs_work(ctx.data_dir, ctx.role, window):
        return
    argv = [str(ctx.info["python"]), "-s", os.path.join(str(ctx.info["standinsDir"]), "rke2_certs.py"), "ensure",
            "--data-dir", ctx.data_dir, "--role", ctx.role, "--node", ctx.node_name, "--address", ctx.address,
            "--window", str(window)]
    code, lines = rke2_certs.run_child(argv)
    if code != 0:
        tail = " ".join(line for line in lines if not line.startswith(rke2_certs.REPORT))[-500:]
        fatal(f"starting kubernetes: preparing server: failed to generate certificates: {tail}")
    for line in lines:
        if line.startswith(rke2_certs.REPORT):
            log("info", line[len(rke2_certs.REPORT):])


# -- other subcommands ------------------------------------------------------------------------------
SNAPSHOT_BOOL_FLAGS = {"etcd-s3", "etcd-snapshot-compress", "snapshot-compress", "debug", "etcd-s3-insecure",
                       "etcd-s3-skip-ssl-verify", "help", "h"}


def split_args(args: list[str], booleans: set[str]) -> tuple[dict[str, Any], list[str]]:
    """(flags, positional arguments): a flag not in ``booleans`` takes the next argument as its value."""
    flags: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key = arg.lstrip("-")
        if not arg.startswith("-") or not key:
            positional.append(arg)
        elif "=" in key:
            k, v = key.split("=", 1)
            flags[k] = v
        elif key in booleans or i + 1 >= len(args):
            flags[key] = True
        else:
            flags[key] = args[i + 1]
            i += 1
        i += 1
    return flags, positional


def flag_value(flags: dict[str, Any], config: dict[str, Any], *keys: str, env: str | None = None) -> str | None:
    """The first of ``keys`` set on the command line, else in config.yaml (k3s inserts its keys as
    flags), else ``env`` (urfave/cli's EnvVar)."""
    for source in (flags, config):
        for key in keys:
            if source.get(key) not in (None, True, ""):
                return str(source[key])
    return (os.environ.get(env) or None) if env else None


def server_request(flags: dict[str, Any], method: str, path: str, payload: dict[str, Any],
                   ) -> tuple[int, str, bytes, str]:
    """``payload`` to the local server's supervisor port (``--server``, ``RKE2_URL``): (status,
    reason, body, the URL as shown). Raises ``OSError`` with k3s's text when nothing answers."""
    import json

    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import minihttp
    else:
        import minihttp

    server = flag_value(flags, {}, "server", "s", env="RKE2_URL") or f"https://127.0.0.1:{SUPERVISOR_PORT}"
    host, port = split_server_url(server)
    shown = f"https://{host}:{port}{path}"
    if host in ("127.0.0.1", "localhost"):
        host = str(common.host_info()["address"])
    try:
        status, reason, body = minihttp.request(host, port, method, path, json.dumps(payload).encode(),
                                                timeout=120)
    except OSError as exc:
        raise OSError(f'{method.title()} "{shown}": dial tcp {host}:{port}: connect: '
                      f"{str(exc.strerror or exc).lower()}") from exc
    return status, reason, body, shown


def etcd_snapshot(args: list[str]) -> int:
    """``rke2 etcd-snapshot save [--name N] [--dir D] | ls | delete NAME...``, as requests to the local
    server (k3s's CLI posts them to ``/db/snapshot`` on the supervisor port, authenticated with the
    server token: the server must run). The server logs the path; the CLI names the snapshot."""
    import json
    import time

    sub = args[0] if args and not args[0].startswith("-") else "save"
    flags, names = split_args(args[1:] if args and not args[0].startswith("-") else args, SNAPSHOT_BOOL_FLAGS)
    operation = {"save": "save", "ls": "list", "list": "list", "l": "list", "delete": "delete"}.get(sub)
    if operation is None:
        print(f"rke2 etcd-snapshot {sub}: not implemented in the sandbox (save, ls, delete)", file=sys.stderr)
        return 1
    config = load_config(flag_value(flags, {}, "config", "c") or CONFIG_FILE)
    if operation == "save" and names:
        log("fatal", "this command does not take any arguments")
        return 1
    if operation == "delete" and not names:
        log("fatal", "no snapshots given for removal")
        return 1
    output = flag_value(flags, {}, "output", "o") or "table"
    if operation == "list" and output != "table":
        log("fatal", f"invalid output format: {output}" if output not in ("json", "yaml")
            else f"etcd-snapshot ls --output {output}: not implemented in the sandbox (table)")
        return 1
    token = flag_value(flags, config, "token", "t", env="RKE2_TOKEN")
    if token is None:
        data_dir = flag_value(flags, config, "data-dir", "d") or "/var/lib/rancher/rke2"
        token_file = os.path.join(data_dir, "server", "token")
        try:
            token = read_text(token_file).strip()
        except OSError as exc:
            log("fatal", f"open {token_file}: {str(exc.strerror or exc).lower()}")
            return 1
    payload = {"operation": operation, "password": parse_token(token)[1],
               "name": [flag_value(flags, config, "name", "etcd-snapshot-name") or "on-demand"]
               if operation == "save" else names,
               "dir": flag_value(flags, config, "dir", "etcd-snapshot-dir")}
    try:
        status, reason, body, shown = server_request(flags, "POST", "/db/snapshot", payload)
    except OSError as exc:
        log("fatal", f"see server log for details: {exc}")
        return 1
    if status != 200:
        log("fatal", f"see server log for details: {shown}: {status} {reason}")
        return 1
    answer = json.loads(body)
    if operation == "list":
        rows = [("Name", "Location", "Size", "Created")]
        rows += [(i["name"], i["location"], str(i["size"]),
                  time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(i["created"]))) for i in answer]
        print("\n".join(common.tabwrite(rows, padding=1)))
        return 0
    for name in answer["created"]:
        log("info", f"Snapshot {name} saved.")
    for name in answer["deleted"]:
        log("info", f"Snapshot {name} deleted.")
    for name in names if operation == "delete" else []:
        if name not in answer["deleted"]:
            log("warning", f"Snapshot {name} not found.")
    return 0


ROTATE_WARNING = ("WARNING: Recommended to keep a record of the old token. If restoring from a snapshot, "
                  "you must use the token associated with that snapshot.")


def token_command(args: list[str]) -> int:
    """``rke2 token rotate [--token OLD] [--new-token NEW]``, through the local supervisor port. As in
    k3s (pkg/cli/cmds/token.go), ``--token`` falls back to ``RKE2_TOKEN`` and ``--server`` to
    ``RKE2_URL``; ``--new-token`` has no environment variable (``RKE2_NEW_TOKEN`` is ignored): without
    it the new token is a random one."""
    sub = args[0] if args and not args[0].startswith("-") else ""
    if sub != "rotate":
        print(f"rke2 token {sub}: not implemented in the sandbox (only rotate)", file=sys.stderr)
        return 1
    flags = parse_flags(args[1:])
    config = load_config(str(flags.get("config", CONFIG_FILE)))
    data_dir = str(flags.get("data-dir", config.get("data-dir", "/var/lib/rancher/rke2")))
    print(ROTATE_WARNING, flush=True)
    old = flag_value(flags, {}, "token", "t", env="RKE2_TOKEN")
    if old is None:
        try:
            old = read_text(os.path.join(data_dir, "server", "token")).strip()
        except OSError as exc:
            log("fatal", f"failed to read token: {exc}")
            return 1
    new = flag_value(flags, {}, "new-token") or os.urandom(8).hex()  # 16 characters
    payload = {"token": parse_token(old)[1], "newToken": parse_token(new)[1]}
    try:
        status, reason, _, shown = server_request(flags, "PUT", "/v1-rke2/token", payload)
    except OSError as exc:
        log("fatal", str(exc))
        return 1
    if status != 200:
        log("fatal", f"{shown}: {status} {reason}")
        return 1
    print("Token rotated, restart rke2 nodes with new token")
    return 0


def certificate_command(version: str, args: list[str]) -> int:
    """``rke2 certificate rotate [--service S]...`` and ``rke2 certificate check [--output table]``."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import rke2_certs
    else:
        import rke2_certs

    sub = args[0] if args and not args[0].startswith("-") else ""
    rest = args[1:] if sub else args
    services: list[str] = []
    other: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("--service", "-s") and i + 1 < len(rest):
            services += [s for s in rest[i + 1].split(",") if s]
            i += 2
            continue
        if arg.startswith("--service="):
            services += [s for s in arg.split("=", 1)[1].split(",") if s]
        else:
            other.append(arg)
        i += 1
    flags = parse_flags(other)
    config = load_config(str(flags.get("config", CONFIG_FILE)))
    data_dir = str(flags.get("data-dir", config.get("data-dir", "/var/lib/rancher/rke2")))
    if sub == "rotate":
        return rke2_certs.rotate(data_dir, services, log)
    if sub == "check":
        output = str(flags.get("output", flags.get("o", "text")))
        return rke2_certs.check(data_dir, output, rke2_certs.renewal_window_days(version), log)
    print(f"rke2 certificate {sub}: not implemented in the sandbox (rotate, check)", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    version = DEFAULT_VERSION
    if argv[:1] == ["--standin-version"]:
        version, argv = argv[1], argv[2:]
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"rke2 version {version} ({fake_commit(version)})\n{GO_VERSION}")
        return 0
    command, rest = argv[0], argv[1:]
    _import_helpers()
    if command in ("server", "agent"):
        run_node(command, version, rest)
    if command == "etcd-snapshot":
        return etcd_snapshot(rest)
    if command == "token":
        return token_command(rest)
    if command == "certificate":
        return certificate_command(version, rest)
    if command in ("secrets-encrypt", "completion"):
        print(f"rke2 {command}: not implemented in the sandbox", file=sys.stderr)
        return 1
    print(f"Incorrect Usage: no such command {command!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
