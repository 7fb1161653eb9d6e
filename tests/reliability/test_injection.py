"""Shell injection, property-based: every spec field that reaches a remote shell, with a marker
command hidden in it, through the operator's own code paths against a real sandbox host.

* config.yaml fields (passthrough values, node labels, taints, tls-san, node name):
  `render_config` + `SSHPool.write_file`, then config.yaml parsed back on the host.
* install fields (script URL, version, channel URL, artifact URL): `install_script` +
  `SSHPool.run(script=...)`, the script fetched from a recording HTTP server that answers with a
  script printing the INSTALL_RKE2_* environment it got.
* node name in the kubectl argv builders (`cordon`, `uncordon`, `drain`, `delete_node`):
  `SSHPool.run(argv)` with a recording kubectl on the host.

Version, labels, taints, tls-san and node name are validated by the models: only values they
accept are generated. The marker file must never appear, and every value must arrive intact.
"""

from __future__ import annotations

import asyncio
import http.server
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rke2fleet.api import SpecError, parse_cluster_spec, parse_node_spec
from rke2fleet.api.common import VERSION_PATTERN
from rke2fleet.hostaccess import SSHPool
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.commands import install_script
from rke2fleet.reconcile.desired import desired_node, render_config
from rke2fleet.reconcile.paths import CONFIG_PATH, DEFAULT
from rke2fleet_sandbox.state import SandboxHost
from rke2fleet_sandbox.world import Sandbox

from .hostside import sh, target_for

pytestmark = [pytest.mark.sandbox]

MARKER = "/tmp/rke2fleet-injected"  # the file an injected command would create
PAYLOADS = [
    f"$(touch {MARKER})",
    f"`touch {MARKER}`",
    f";touch {MARKER};",
    f"|touch {MARKER}",
    f"&&touch {MARKER}",
    f"'$(touch {MARKER})'",
    f'"$(touch {MARKER})"',
    f"\ntouch {MARKER}\n",
    f"$(IFS=_;touch${{IFS}}{MARKER})",
    f"'; touch {MARKER}; echo '",
    f"\\'$(touch {MARKER})",
]
EXAMPLES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# ----------------------------------------------------------------- strategies

_name = st.from_regex(r"\A[a-z0-9]([a-z0-9_.-]{0,20}[a-z0-9])?\Z")
_dns_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?\Z")
_subdomain = st.lists(_dns_label, min_size=1, max_size=3).map(".".join)
_label = st.tuples(st.one_of(st.just(""), _subdomain.map(lambda p: p + "/")), _name, _name).map(
    lambda t: f"{t[0]}{t[1]}={t[2]}"
)
_taint = st.tuples(_name, _name, st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"])).map(
    lambda t: f"{t[0]}={t[1]}:{t[2]}"
)
_text = st.text(st.characters(codec="utf-8"), max_size=40)
# Free text with a marker command spliced in somewhere.
_hostile = st.tuples(_text, st.sampled_from(PAYLOADS), _text).map("".join)
_scalar = st.one_of(_hostile, _hostile, st.integers(), st.booleans())
# URL path characters: everything printable but whitespace and '#' (the fragment never goes on the wire).
_url_path = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="#"), max_size=30).flatmap(
    lambda t: st.sampled_from(PAYLOADS).map(lambda p: (t + p).replace(" ", "").replace("\n", ""))
)
_version = st.from_regex(VERSION_PATTERN)


# ----------------------------------------------------------------- fixtures


class Recorder(http.server.ThreadingHTTPServer):
    paths: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    SCRIPT = b"env | grep '^INSTALL_RKE2_' | sort\n"

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.SCRIPT)))
        self.end_headers()
        self.wfile.write(self.SCRIPT)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """A script endpoint on the test machine (the hosts share its network)."""
    server = Recorder(("127.0.0.1", 0), _Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ssh() -> Iterator[tuple[asyncio.Runner, SSHPool]]:
    """One event loop and pool for all examples (a connection per host, as in the operator)."""
    runner = asyncio.Runner()
    pool = SSHPool()
    yield runner, pool
    runner.run(pool.close())
    runner.close()


def assert_no_marker(sb: Sandbox, host: SandboxHost, then: str = "true") -> str:
    """Check the marker on the host (and on this machine) in the same call that runs `then`
    there; returns what `then` printed."""
    res = sb.run_on_host(host, f"test -e {MARKER} && echo INJECTED >&2; {then}")
    assert b"INJECTED" not in res.stderr, f"injected command ran on {host.name}"
    assert not Path(MARKER).exists(), "injected command ran on the test machine"
    return res.stdout.decode(errors="replace")


@pytest.fixture(scope="module", autouse=True)
def config_dir(hosts_sandbox: Sandbox) -> None:
    for host in hosts_sandbox.hosts:
        sh(hosts_sandbox, host, f"mkdir -p /etc/rancher/rke2 && rm -f {MARKER}")


def hosts(sb: Sandbox) -> list[SandboxHost]:
    return sorted(sb.hosts, key=lambda h: h.user)  # root first, then the sudo host


# ----------------------------------------------------------------- config.yaml


@EXAMPLES
@given(
    server_value=_scalar,
    server_list=st.lists(_hostile, max_size=3),
    node_value=_scalar,
    labels=st.lists(_label, max_size=3, unique=True),
    taints=st.lists(_taint, max_size=2, unique=True),
    sans=st.lists(_subdomain, max_size=2, unique=True),
    node_name=st.one_of(st.none(), _subdomain),
    sudo=st.booleans(),
)
def test_config_fields_arrive_intact_and_never_run(
    hosts_sandbox: Sandbox,
    ssh: tuple[asyncio.Runner, SSHPool],
    server_value: Any,
    server_list: list[str],
    node_value: Any,
    labels: list[str],
    taints: list[str],
    sans: list[str],
    node_name: str | None,
    sudo: bool,
) -> None:
    runner, pool = ssh
    try:
        cluster = parse_cluster_spec(
            {
                "version": "v1.35.7+rke2r1",
                "ssh": {"privateKeySecretRef": {"name": "k", "key": "k"}},
                "tlsSAN": sans,
                "serverConfig": {"cluster-domain": server_value, "kube-apiserver-arg": server_list},
            }
        )
        node = parse_node_spec(
            {
                "cluster": "c",
                "role": "server",
                "address": "10.0.0.1",
                "nodeLabels": labels,
                "nodeTaints": taints,
                **({"nodeName": node_name} if node_name else {}),
                "config": {"etcd-snapshot-name": node_value},
            }
        )
    except SpecError:
        assume(False)
        raise
    host = hosts(hosts_sandbox)[1 if sudo else 0]
    data = render_config(
        cluster, node, node_name=node_name or "n1", token="K10abc::server:tok", is_init=True, join_address=None
    )
    runner.run(pool.write_file(target_for(hosts_sandbox, host), CONFIG_PATH, data))
    back = yaml.safe_load(assert_no_marker(hosts_sandbox, host, f"cat {CONFIG_PATH}"))
    assert back["cluster-domain"] == server_value
    assert back["kube-apiserver-arg"] == server_list
    assert back["etcd-snapshot-name"] == node_value
    assert back.get("node-label", []) == labels
    assert back.get("node-taint", []) == taints
    assert back.get("tls-san", []) == sans
    assert back["node-name"] == (node_name or "n1")


# ----------------------------------------------------------------- install script


@EXAMPLES
@given(
    script_path=_url_path,
    version=_version,
    channel_path=_url_path,
    artifact_path=_url_path,
    sudo=st.booleans(),
)
def test_install_fields_arrive_intact_and_never_run(
    hosts_sandbox: Sandbox,
    ssh: tuple[asyncio.Runner, SSHPool],
    recorder: Recorder,
    script_path: str,
    version: str,
    channel_path: str,
    artifact_path: str,
    sudo: bool,
) -> None:
    runner, pool = ssh
    base = f"http://127.0.0.1:{recorder.server_address[1]}"
    script_url = f"{base}/{script_path}"
    try:
        cluster = parse_cluster_spec(
            {
                "version": version,
                "ssh": {"privateKeySecretRef": {"name": "k", "key": "k"}},
                "install": {
                    "scriptURL": script_url,
                    "channelURL": f"{base}/{channel_path}",
                    "artifactURL": f"{base}/{artifact_path}",
                },
            }
        )
        node = parse_node_spec({"cluster": "c", "role": "agent", "address": "10.0.0.1"})
    except SpecError:
        assume(False)
        raise
    desired = desired_node(cluster, node, name="n1", token="t", is_init=False, join_address="10.0.0.2")
    host = hosts(hosts_sandbox)[1 if sudo else 0]
    recorder.paths.clear()
    result = runner.run(pool.run(target_for(hosts_sandbox, host), script=install_script(desired)))
    assert_no_marker(hosts_sandbox, host)
    got = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert got == desired.install_env
    assert got["INSTALL_RKE2_VERSION"] == version
    assert got["INSTALL_RKE2_CHANNEL_URL"] == f"{base}/{channel_path}"
    assert got["INSTALL_RKE2_ARTIFACT_URL"] == f"{base}/{artifact_path}"
    # The script URL reached the endpoint as given (curl sends the path and query as they are).
    sent = "/" + script_path
    # Python's http.server (the recorder) folds a leading "//" to "/" (gh-87389, open-redirect fix):
    # compare what it can show.
    seen = "/" + sent.lstrip("/") if sent.startswith("//") else sent
    assert recorder.paths == [seen], (recorder.paths, script_path)


# ----------------------------------------------------------------- kubectl argv


@pytest.fixture(scope="module")
def recording_kubectl(hosts_sandbox: Sandbox) -> None:
    """A kubectl at the path the builders name that prints its environment's KUBECONFIG and
    its arguments, one per NUL-terminated field (only on these bare hosts: no RKE2 here)."""
    body = '#!/bin/sh\nprintf \'%s\\0\' "$KUBECONFIG" "$@"\n'
    for host in hosts_sandbox.hosts:
        sh(
            hosts_sandbox,
            host,
            f"mkdir -p {shlex.quote(str(Path(DEFAULT.kubectl).parent))} && printf %s {shlex.quote(body)} "
            f"> {DEFAULT.kubectl} && chmod 0755 {DEFAULT.kubectl}",
        )


@EXAMPLES
@given(node_name=_subdomain, timeout=st.floats(min_value=1, max_value=3600), sudo=st.booleans())
def test_kubectl_node_name_arrives_intact(
    hosts_sandbox: Sandbox,
    ssh: tuple[asyncio.Runner, SSHPool],
    recording_kubectl: None,
    node_name: str,
    timeout: float,
    sudo: bool,
) -> None:
    try:
        parse_node_spec({"cluster": "c", "role": "agent", "address": "10.0.0.1", "nodeName": node_name})
    except SpecError:
        assume(False)
    runner, pool = ssh
    host = hosts(hosts_sandbox)[1 if sudo else 0]
    target = target_for(hosts_sandbox, host)
    for argv in (
        kubectl.cordon(DEFAULT, node_name),
        kubectl.uncordon(DEFAULT, node_name),
        kubectl.drain(DEFAULT, node_name, timeout),
        kubectl.delete_node(DEFAULT, node_name),
    ):
        out = runner.run(pool.run(target, argv)).stdout_bytes.decode()
        fields = out.split("\0")[:-1]
        assert fields[0] == DEFAULT.kubeconfig
        assert fields[1:] == argv[3:]
        assert node_name in fields
    assert_no_marker(hosts_sandbox, host)
