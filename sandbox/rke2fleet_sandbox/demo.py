"""`rke2fleet demo`: a sandbox of 3 servers and 2 agents, the emulator and the operator; an HA
cluster applied like a user would; live progress until Ready; the result; then cleanup.
Added to the operator's CLI through the `rke2fleet.commands` entry point `demo` (`register`).

Every failure ends in one plain message (no traceback) and everything started is stopped,
also on Ctrl-C, unless `--keep` asked to leave it running.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, cast

from rke2fleet import GROUP, VERSION
from rke2fleet_sandbox.demo_operator import DemoOperator
from rke2fleet_sandbox.demo_view import ClusterLine, LiveView, NodeRow, elide_kubeconfig, manifests_yaml

if TYPE_CHECKING:
    from rke2fleet.cli import Subparsers

DEFAULT_STATE_DIR = Path("/var/tmp/rke2fleet-demo")
CLUSTER = "demo"
NAMESPACE = "default"
SERVERS, AGENTS = 3, 2
READY_TIMEOUT = float(os.environ.get("RKE2FLEET_DEMO_TIMEOUT", "180"))
REFRESH = 0.5
LOG_TAIL_LINES = 30
REQUIRED_TOOLS = ("unshare", "nsenter", "/usr/sbin/sshd", "ssh-keygen")
KUBECTL_ON_SERVER = "KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl get nodes -o wide"


class DemoError(Exception):
    """A failure with a message meant for the person running the demo."""


class Interrupted(Exception):
    """SIGTERM, handled like Ctrl-C."""


def register(subparsers: Subparsers) -> None:
    """The `rke2fleet.commands` entry point: adds `rke2fleet demo`."""
    p = subparsers.add_parser("demo", help="bring up a sandbox HA cluster end to end and show it converge")
    p.add_argument("--keep", action="store_true", help="leave the sandbox running at the end")
    p.add_argument("--state-dir", default=None, help="sandbox state directory")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir or DEFAULT_STATE_DIR).resolve()
    demo = Demo(state_dir, keep=bool(args.keep), out=sys.stdout)
    with _sigterm_interrupts():
        try:
            return demo.run()
        except (KeyboardInterrupt, Interrupted):
            print("\ninterrupted: cleaning up", file=sys.stderr)
            demo.cleanup()
            return 130
        except Exception as exc:  # the demo shows every failure as one plain line
            print(f"demo failed: {_plain(exc)}", file=sys.stderr)
            demo.show_log_tail(sys.stderr)
            if demo.keep and demo.sandbox is not None:
                demo.show_how_to_reach(demo.sandbox)  # --keep: left as it failed, for a look around
                demo.close_api()
            else:
                demo.cleanup()
            return 1


def _plain(exc: BaseException) -> str:
    from rke2fleet_sandbox.hosts import SandboxError

    if isinstance(exc, DemoError | SandboxError):
        return str(exc)
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return f"the Kubernetes API answered {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def preflight() -> None:
    """What `make demo` installs: checked first so that a missing piece is one clear sentence."""
    hint = "run `make demo`, which installs what is needed"
    if os.geteuid() != 0:
        raise DemoError(f"the sandbox hosts need root (network and mount namespaces): {hint}, as root")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise DemoError(f"missing on this machine: {', '.join(missing)}: {hint}")


class Demo:
    def __init__(self, state_dir: Path, *, keep: bool, out: TextIO) -> None:
        from rke2fleet_sandbox.world import Sandbox

        self.state_dir = state_dir
        self.keep = keep
        self.out = out
        self.sandbox: Sandbox | None = None
        self.operator: DemoOperator | None = None
        self.api: Any = None  # kubernetes ApiClient
        self.view: LiveView | None = None
        self._cleaned = False

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # ------------------------------------------------------------ the run

    def run(self) -> int:
        started = time.monotonic()
        preflight()
        self.retire_previous()
        sandbox = self.bring_up()
        self.start_operator()
        self.apply_cluster()
        applied = time.monotonic()
        cluster = self.watch_until_ready(applied)
        to_ready = time.monotonic() - applied
        self.say(f"\ncluster {CLUSTER} Ready {to_ready:.1f}s after it was applied "
                 f"({time.monotonic() - started:.1f}s since `rke2fleet demo` started)")  # fmt: skip
        self.show_kubeconfig(cluster)
        self.show_kubectl_nodes(cluster)
        if self.keep:
            self.show_how_to_reach(sandbox)
            self.close_api()
            return 0
        return 0 if self.cleanup() else 1

    def retire_previous(self) -> None:
        from rke2fleet_sandbox.hosts import SandboxError
        from rke2fleet_sandbox.world import Sandbox

        try:
            old = Sandbox.load(self.state_dir)
        except SandboxError:
            return
        if old.running():
            self.say(f"a sandbox is already running in {self.state_dir} (an earlier `demo --keep`?): "
                     "taking it down first")  # fmt: skip
            left = old.down()
            if left:
                raise DemoError(f"the earlier sandbox in {self.state_dir} would not end (pids {left})")

    def bring_up(self) -> Any:
        from rke2fleet_sandbox.world import Sandbox

        self.say(f"starting a sandbox of {SERVERS} servers and {AGENTS} agents in {self.state_dir} ...")
        t0 = time.monotonic()
        self.sandbox = Sandbox.up(self.state_dir, SERVERS, AGENTS)
        self.say(f"sandbox up in {time.monotonic() - t0:.1f}s: API emulator, installer endpoint, "
                 f"load balancer {self.sandbox.load_balancer_address}")  # fmt: skip
        for host in self.sandbox.hosts:
            self.say(f"  {host.name:<10} {host.role:<7} {host.address}")
        return self.sandbox

    def start_operator(self) -> None:
        assert self.sandbox is not None
        self.operator = DemoOperator(self.sandbox)
        self.operator.start(self.sandbox)
        self.say(f"operator started (pid {self.operator.pid}), log: {self.operator.log_path}")

    def apply_cluster(self) -> None:
        import kubernetes

        from rke2fleet_sandbox.manifests import apply_manifests, cluster_manifests

        sandbox = self.sandbox
        assert sandbox is not None and sandbox.kubeconfig_path is not None
        docs = cluster_manifests(sandbox, CLUSTER, NAMESPACE)
        text = manifests_yaml(docs, str(sandbox.client_key_path))
        manifest_path = self.state_dir / "demo-cluster.yaml"
        manifest_path.write_text(text)
        self.say(f"\napplying {manifest_path}:\n")
        self.say(text.rstrip())
        self.say()
        apply_manifests(str(sandbox.kubeconfig_path), docs)
        self.api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(sandbox.kubeconfig_path)
        )

    # ------------------------------------------------------------ progress

    def read_state(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        import kubernetes
        from kubernetes.client.exceptions import ApiException

        custom = kubernetes.client.CustomObjectsApi(self.api)
        try:
            got = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rke2clusters", CLUSTER)
            cluster: dict[str, Any] | None = cast("dict[str, Any]", got)
        except ApiException as exc:
            if exc.status != 404:
                raise
            cluster = None
        listed = cast("dict[str, Any]", custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rke2nodes"))
        nodes = [n for n in listed["items"] if (n.get("spec") or {}).get("cluster") == CLUSTER]
        return cluster, sorted(nodes, key=_node_order)

    def watch_until_ready(self, since: float) -> dict[str, Any]:
        self.view = LiveView(self.out, tty=self.out.isatty(), started=since)
        deadline = since + READY_TIMEOUT
        while True:
            cluster, nodes = self.read_state()
            self.view.update(ClusterLine.of(CLUSTER, cluster), [NodeRow.of(n) for n in nodes])
            if cluster and (cluster.get("status") or {}).get("phase") == "Ready":
                self.view.final()
                return cluster
            assert self.operator is not None
            code = self.operator.exited()
            if code is not None:
                self.view.final()
                raise DemoError(f"the operator exited with status {code}")
            if time.monotonic() > deadline:
                self.view.final()
                errors = [f"{n['metadata']['name']}: {n['status']['lastError']}"
                          for n in nodes if (n.get("status") or {}).get("lastError")]  # fmt: skip
                detail = "".join(f"\n  {line}" for line in errors)
                raise DemoError(f"the cluster was not Ready after {READY_TIMEOUT:.0f}s{detail}")
            time.sleep(REFRESH)

    # ------------------------------------------------------------ results

    def show_kubeconfig(self, cluster: dict[str, Any]) -> None:
        import kubernetes

        status = cluster.get("status") or {}
        name = status.get("kubeconfigSecretName") or f"{CLUSTER}-kubeconfig"
        secret = kubernetes.client.CoreV1Api(self.api).read_namespaced_secret(name, NAMESPACE)
        raw = (secret.data or {}).get("value")
        if not raw:
            raise DemoError(f"Secret {NAMESPACE}/{name} has no kubeconfig under key 'value'")
        self.say(f"\nkubeconfig Secret {NAMESPACE}/{name} (key 'value'; credentials elided):\n")
        self.say(elide_kubeconfig(base64.b64decode(raw).decode()).rstrip())

    def show_kubectl_nodes(self, cluster: dict[str, Any]) -> None:
        sandbox = self.sandbox
        assert sandbox is not None
        init = (cluster.get("status") or {}).get("initServer")
        server = init if init in {h.name for h in sandbox.servers} else sandbox.servers[0].name
        result = sandbox.run_on_host(server, KUBECTL_ON_SERVER)
        if result.returncode != 0:
            raise DemoError(f"`kubectl get nodes` on {server} failed: {result.stderr.decode(errors='replace')}")
        self.say(f"\n`kubectl get nodes -o wide` on {server}:\n")
        self.say(result.stdout.decode(errors="replace").rstrip())

    def show_how_to_reach(self, sandbox: Any) -> None:
        known_hosts = self.state_dir / "known_hosts"
        known_hosts.write_text(sandbox.known_hosts())
        state = shlex.quote(str(self.state_dir))
        host = sandbox.servers[0]
        port = f"-p {host.port} " if host.port != 22 else ""
        self.say("\nleft running (--keep):")
        self.say(f"  API emulator:   export KUBECONFIG={sandbox.kubeconfig_path}")
        if self.operator is not None and self.operator.exited() is None:
            self.say(f"  operator:       pid {self.operator.pid}, log {self.operator.log_path}, "
                     f"metrics http://127.0.0.1:{self.operator.metrics_port}/metrics")  # fmt: skip
        self.say(f"  sandbox:        rke2fleet sandbox status --state-dir {state}")
        self.say(f"  end it all:     rke2fleet sandbox down --state-dir {state}   (also stops the operator)")
        self.say(f"  ssh to a host:  ssh -i {sandbox.client_key_path} -o UserKnownHostsFile={known_hosts} "
                 f"{port}{host.user}@{host.address}")  # fmt: skip
        self.say(f"  hosts:          {', '.join(f'{h.name}={h.address}' for h in sandbox.hosts)}")

    # ------------------------------------------------------------ failure and cleanup

    def show_log_tail(self, out: TextIO) -> None:
        from rke2fleet.hostaccess.redact import redact  # here: the package imports asyncssh

        if self.operator is None:
            return
        lines = self.operator.log_tail(LOG_TAIL_LINES)
        if not lines:
            return
        secrets = self._secret_values()
        out.write(f"\nlast {len(lines)} lines of the operator log ({self.operator.log_path}):\n")
        out.write("".join(f"  {redact(line, secrets)}\n" for line in lines))
        out.flush()

    def _secret_values(self) -> list[str]:
        """Belt and braces over the operator's own redaction: values that must not be shown."""
        values: list[str] = []
        if self.sandbox is not None:
            with contextlib.suppress(OSError):
                values += [ln for ln in self.sandbox.client_key_pem().splitlines() if len(ln) > 16]
        if self.api is not None:
            import kubernetes

            with contextlib.suppress(Exception):
                for secret in kubernetes.client.CoreV1Api(self.api).list_namespaced_secret(NAMESPACE).items:
                    values += [base64.b64decode(v).decode(errors="replace") for v in (secret.data or {}).values()]
        return values

    def close_api(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None

    def cleanup(self) -> bool:
        """Stop the operator, then the sandbox. True when nothing was left behind."""
        if self._cleaned:
            return True
        self._cleaned = True
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave half a sandbox
        try:
            self.close_api()
            if self.operator is not None:
                self.operator.stop()
            if self.sandbox is None:
                return True
            left = self.sandbox.down()
            if left:
                print(f"processes that would not end: {left}; "
                      f"`rke2fleet sandbox down --state-dir {self.state_dir}` retries", file=sys.stderr)  # fmt: skip
                return False
            self.say(f"cleaned up: operator stopped, sandbox down, {self.state_dir} removed")
            return True
        finally:
            signal.signal(signal.SIGINT, previous)


def _node_order(obj: dict[str, Any]) -> tuple[int, str]:
    role = (obj.get("spec") or {}).get("role")
    return (0 if role == "server" else 1, str(obj["metadata"]["name"]))
