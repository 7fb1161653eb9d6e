"""`rke2fleet plan | apply | export` end to end on the sandbox, without a management cluster,
then adoption of the cluster built by the operator running against the emulator."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet_sandbox.installer import installer_stats
from rke2fleet_sandbox.manifests import cluster_manifests
from rke2fleet_sandbox.world import Sandbox
from tests.e2e.conftest import E2E
from tests.e2e.harness import NS, TIMEOUT_SCALE, datastore_events, sh
from tests.e2e.test_day2 import assert_rollout_order
from tests.e2e.test_health import learner_overlaps, quorum_violations

pytestmark = [pytest.mark.sandbox]

OLD, NEW = "v1.35.7+rke2r1", "v1.36.3+rke2r1"


def cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "rke2fleet", *args], capture_output=True, text=True,
                         timeout=600 * TIMEOUT_SCALE, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    if check is not None:
        assert res.returncode == check, f"rke2fleet {' '.join(args)} → {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def write(path: Path, docs: list[dict[str, Any]]) -> str:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def host_state(sb: Sandbox) -> dict[str, str]:
    """What a write on a host would change: config.yaml (inode, mtime), the binary, the units."""
    probe = ("stat -c %i:%Y /etc/rancher/rke2/config.yaml /usr/local/bin/rke2 2>/dev/null;"
             " systemctl is-active rke2-server rke2-agent 2>/dev/null | tr '\\n' ' '")  # fmt: skip
    return {h.name: sh(sb, h, probe) for h in sb.hosts}


def no_secret_in(texts: list[str], sb: Sandbox, state: Path) -> None:
    token = yaml.safe_load((state / "secrets" / "prod-token.json").read_text())["data"]["token"]
    needles = [base64.b64decode(token).decode(), *[ln for ln in sb.client_key_pem().splitlines() if len(ln) > 40]]
    for text in texts:
        assert not any(n in text for n in needles), "a secret was printed"


@pytest.mark.slow
def test_apply_again_plan_and_rolling_upgrade(e2e: E2E, tmp_path: Path) -> None:
    sb = e2e.up(3, 2, emulator=False)
    state = tmp_path / "state"
    docs = cluster_manifests(sb, "prod", NS, version=OLD)
    manifest = write(tmp_path / "cluster.yaml", docs)
    started = time.monotonic()
    first = cli("apply", "-f", manifest, "--state-dir", str(state), "--timeout", "4m")
    print(f"apply 3+2 from bare hosts: {time.monotonic() - started:.1f}s")
    assert "RKE2Cluster default/prod is Ready" in first.stdout
    events = datastore_events(sb)
    assert [e["node"] for e in sorted(events, key=lambda e: e["t"]) if e["event"] == "member-add"] == [
        h.name for h in sb.servers
    ]
    assert not learner_overlaps(events) and not quorum_violations(events)
    last_server_ready = max(e["t"] for e in events if e["event"] == "ready" and e["node"].startswith("server"))
    assert all(e["t"] > last_server_ready for e in events if e["event"] == "join" and e["node"].startswith("agent"))
    assert oct(state.stat().st_mode)[-3:] == "700"
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in state.rglob("*") if p.is_file())

    # Again, nothing changed: nothing changes on any host.
    before, downloads, since = host_state(sb), installer_stats(sb.state_dir), time.time()
    again = cli("apply", "-f", manifest, "--state-dir", str(state), "--timeout", "2m")
    assert host_state(sb) == before and installer_stats(sb.state_dir) == downloads
    assert not [e for e in datastore_events(sb) if e["t"] >= since], "apply again touched a host"
    unchanged = cli("plan", "-f", manifest, "--state-dir", str(state)).stdout.splitlines()[-1]
    assert unchanged == "0 node(s) to change, 5 unchanged"

    # A label on one node: plan shows that node only, and exits 2.
    labelled = [dict(d, spec={**d["spec"], "nodeLabels": ["tier=gold"]}) if d["metadata"]["name"] == "agent-1" else d
                for d in docs]  # fmt: skip
    plan = cli("plan", "-f", write(tmp_path / "labelled.yaml", labelled), "--state-dir", str(state), check=2)
    changing = [ln.split(" ")[0] for ln in plan.stdout.splitlines() if ln and not ln.startswith((" ", "join", "1 "))]
    assert changing == ["agent-1"], plan.stdout
    assert "+- tier=gold" in plan.stdout and "token: <redacted>" in plan.stdout
    assert host_state(sb) == before  # plan changes nothing

    # A version bump: the ordered rolling upgrade.
    since = time.time()
    bumped = [dict(d, spec={**d["spec"], "version": NEW}) if d["kind"] == "RKE2Cluster" else d for d in docs]
    upgrade = cli("apply", "-f", write(tmp_path / "v136.yaml", bumped), "--state-dir", str(state), "--timeout", "4m")
    assert_rollout_order(datastore_events(sb), [h.name for h in sb.servers], [h.name for h in sb.agents], since)
    assert all(NEW in sh(sb, h, "/usr/local/bin/rke2 --version") for h in sb.hosts)
    assert not quorum_violations(datastore_events(sb))
    no_secret_in([first.stdout, first.stderr, again.stdout, plan.stdout, upgrade.stdout, upgrade.stderr], sb, state)


def test_adoption_by_the_operator_writes_nothing_on_the_hosts(e2e: E2E, tmp_path: Path) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    state = tmp_path / "state"
    docs = cluster_manifests(sb, "prod", NS)
    cli("apply", "-f", write(tmp_path / "cluster.yaml", docs), "--state-dir", str(state))
    exported = cli("export", "--state-dir", str(state)).stdout
    secrets = [d for d in yaml.safe_load_all(exported) if d]
    assert [s["metadata"]["name"] for s in secrets] == ["prod-token"]
    before, downloads, since = host_state(sb), installer_stats(sb.state_dir), time.time()

    kube.apply([*secrets, *docs])
    e2e.operator()
    kube.wait_phase("rke2clusters", "prod", "Ready", timeout=60)
    for h in sb.hosts:
        kube.wait_phase("rke2nodes", h.name, "Ready", timeout=30)
    assert kube.secret("prod-kubeconfig")
    time.sleep(2)  # a pass that would still write has run by now
    assert host_state(sb) == before and installer_stats(sb.state_dir) == downloads
    assert not [e for e in datastore_events(sb) if e["t"] >= since], "the operator's first pass touched a host"
    assert kube.secret("prod-token") == {"token": base64.b64decode(secrets[0]["data"]["token"])}


def test_bad_input_is_refused_before_any_host(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: rke2fleet.io/v1alpha1\nkind: RKE2Cluster\nmetadata: {name: c}\n"
                   "spec: {version: v1.35.7+rke2r1, ssh: {port: 0}}\n")  # fmt: skip
    res = cli("apply", "-f", str(bad), "--state-dir", str(tmp_path / "s"), check=1)
    validate = cli("validate", "-f", str(bad), check=1)
    assert res.stderr == validate.stderr and "spec.ssh.port" in res.stderr
    assert not (tmp_path / "s").exists()

    good = tmp_path / "good.yaml"
    cluster = {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Cluster", "metadata": {"name": "c"},
               "spec": {"version": OLD, "ssh": {"privateKeySecretRef": {"name": "k", "key": "k"}}}}  # fmt: skip
    good.write_text(yaml.safe_dump(cluster))
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (other / "state.json").write_text('{"format": 1, "cluster": "default/d", "uid": "x"}')
    os.chmod(other / "state.json", 0o600)
    res = cli("apply", "-f", str(good), "--state-dir", str(other), check=1)
    assert "holds the state of RKE2Cluster default/d, not default/c" in res.stderr
    os.chmod(other, 0o755)
    res = cli("plan", "-f", str(good), "--state-dir", str(other), check=1)
    assert "mode 755" in res.stderr and "chmod 700" in res.stderr
    res = cli("apply", "-f", str(good), "-f", str(good), "--state-dir", str(tmp_path / "t"), check=1)
    assert "exactly one RKE2Cluster" in res.stderr
