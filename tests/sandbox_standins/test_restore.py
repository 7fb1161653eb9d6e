"""``rke2 server --cluster-reset [--cluster-reset-restore-path=FILE]`` (reference §10): with every server
stopped, one server becomes the only etcd voter, with the snapshot's datastore content when one is
restored; the others rejoin only once their ``server/db`` is gone."""

from __future__ import annotations

import hashlib
import json
import re

from rke2fleet_sandbox import hostfaults
from tests.sandbox_standins.hosthelpers import (
    is_active,
    journal,
    node_conditions,
    rke2_host,
    start,
    three_servers,
    wait_until,
)

DB = "/var/lib/rancher/rke2/server/db"
RESET_DONE = ("Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
              "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes")
DIFFERENT_TOKEN = ("starting kubernetes: preparing server: "
                   "bootstrap data already found and encrypted with different token")
SAVED = re.compile(r'msg="Snapshot (\S+) saved\."')


def restore_cmd(path):
    return f"rke2 server --cluster-reset --cluster-reset-restore-path={path}"


def snapshot(host, name="pre"):
    out = host.run(f"rke2 etcd-snapshot save --name {name}")
    assert out.returncode == 0, out.stderr
    (saved,) = SAVED.findall(out.stderr)
    return saved, f"{DB}/snapshots/{saved}"


def cluster_state(datastore):
    (cluster,) = datastore.clusters()
    return datastore.cluster(cluster)


def events(datastore, *names, since=0):
    return [e for e in datastore.events()[since:] if e["event"] in names]


def stop(*hosts, role="server"):
    for host in hosts:
        assert host.run(f"systemctl stop rke2-{role}").returncode == 0


def test_restore_returns_the_datastore_to_the_snapshot(installer, make_host, datastore):
    a, b, c = three_servers(installer, make_host, "rst", learnerPromoteDelay=0.2, nodeReadyDelay=0.2)
    join = f"server: https://{a.address}:9345\ntoken: s3cret"
    early = rke2_host(installer, make_host, "rst-ag1", join, role="agent", nodeReadyDelay=0.2)
    assert start(early, "agent").returncode == 0
    name, path = snapshot(a)
    at_snapshot = cluster_state(datastore)
    late = rke2_host(installer, make_host, "rst-ag2", join, role="agent", nodeReadyDelay=0.2)
    assert start(late, "agent").returncode == 0
    assert "rst-ag2" in cluster_state(datastore)["nodes"]
    for host in (a, b, c, late):
        hostfaults.set_restart_delay(host.faults_dir, 0.3)

    # refused while a server of the cluster runs: real etcd would split brain
    busy = a.run(restore_cmd(path))
    assert busy.returncode == 1
    assert ("sandbox: refusing to reset the etcd cluster while rke2 server runs on rst-a, rst-b, rst-c"
            in busy.stderr)
    stop(a, b)
    assert "rke2 server runs on rst-c:" in a.run(restore_cmd(path)).stderr
    stop(c)
    # a file that is not there
    missing = a.run(restore_cmd(f"{DB}/snapshots/nope"))
    assert missing.returncode == 1
    assert f"etcd: snapshot path does not exist: {DB}/snapshots/nope" in missing.stderr
    # not the token the snapshot was taken with
    assert a.run(restore_cmd(path) + " --token not-it").returncode == 1
    assert [(e["node"], e["reason"]) for e in events(datastore, "start-refused")] == [
        ("rst-a", "peers-running"), ("rst-a", "peers-running"), ("rst-a", "token")]
    assert cluster_state(datastore)["members"].keys() == at_snapshot["members"].keys()  # nothing changed yet

    since = len(datastore.events())
    old_member = a.run(f"cat {DB}/etcd/name", check=True).stdout.strip()
    out = a.run(restore_cmd(path))  # config.yaml read as usual (its token); the process ends
    assert out.returncode == 0, out.stderr
    assert f'level=info msg="{RESET_DONE}"' in out.stderr
    state = cluster_state(datastore)
    (member,) = state["members"]
    assert member != old_member and member.startswith("rst-a-")
    assert state["members"][member] | {"added": 0} == {
        "node": "rst-a", "address": a.address, "learner": False, "added": 0, "promoteAt": None, "pid": None,
        "pidStart": None}
    assert sorted(state["nodes"]) == sorted(at_snapshot["nodes"]) == ["rst-a", "rst-ag1", "rst-b", "rst-c"]
    assert state["tokenHash"] == at_snapshot["tokenHash"] and state["nodePasswords"] == at_snapshot["nodePasswords"]
    assert [(e["event"], e.get("snapshot"), e.get("member")) for e in events(datastore, "cluster-reset")] == [
        ("cluster-reset", name, member)]
    removed = events(datastore, "member-remove", since=since)
    assert sorted(e["member"] for e in removed) == sorted(at_snapshot["members"])
    assert {e["node"] for e in removed} == {"rst-a", "rst-b", "rst-c"}
    assert a.run(f"test -f {DB}/reset-flag").returncode == 0
    assert a.run(f"cat {DB}/etcd/name").stdout.strip() == member

    # a starts normally, the only voter; the reset flag goes
    assert start(a).returncode == 0
    assert a.run(f"test -e {DB}/reset-flag").returncode != 0
    assert node_conditions(a, "rst-a")["EtcdIsVoter"]["status"] == "True"
    assert a.kubectl("get nodes").returncode == 0
    assert "rst-ag2" not in a.kubectl("get nodes").stdout  # joined after the snapshot: gone
    assert node_conditions(a, "rst-b")["EtcdIsVoter"]["reason"] == "NotAMember"

    # b with its old server/db: no longer a member, refused at every restart
    assert start(b).returncode == 1
    wait_until(lambda: "this server is a not a member of the etcd cluster" in journal(b))
    assert ("rst-b", "removed") in [(e["node"], e["reason"]) for e in events(datastore, "start-refused", since=since)]
    stop(b)
    # with server/db deleted, b and c rejoin, as learners, one at a time
    for host in (b, c):
        host.run(f"rm -rf {DB}", check=True)
        assert start(host).returncode == 0
    wait_until(lambda: all(node_conditions(a, n).get("EtcdIsVoter", {}).get("status") == "True"
                           for n in ("rst-a", "rst-b", "rst-c")))
    adds = [(e["node"], e["learner"]) for e in events(datastore, "member-add", since=since)]
    assert adds == [("rst-b", True), ("rst-c", True)]
    # the agents: the one known to the snapshot still runs; the later one registers again at its restart
    assert is_active(early, "agent") == "active"
    assert late.run("systemctl restart rke2-agent", timeout=30).returncode == 0
    wait_until(lambda: node_conditions(a, "rst-ag2").get("Ready", {}).get("status") == "True")
    assert not [e for e in events(datastore, "start-refused", since=since) if e["node"] != "rst-b"]


def test_restore_needs_the_snapshots_token(installer, make_host, datastore):
    """A token rotated after the snapshot: the restore needs the old one, and brings it back."""
    a = rke2_host(installer, make_host, "rtk-a", "token: s3cret")
    assert start(a).returncode == 0
    _, path = snapshot(a)
    assert a.run("rke2 token rotate --token s3cret --new-token n3w-t0ken").returncode == 0
    stop(a)
    a.write_config("token: n3w-t0ken")
    refused = a.run(restore_cmd(path))
    assert refused.returncode == 1 and f'level=fatal msg="{DIFFERENT_TOKEN}"' in refused.stderr
    assert cluster_state(datastore)["tokenHash"] == hashlib.sha256(b"n3w-t0ken").hexdigest()
    # the old token on the command line wins over config.yaml
    assert a.run(restore_cmd(path) + " --token s3cret").returncode == 0
    assert cluster_state(datastore)["tokenHash"] == hashlib.sha256(b"s3cret").hexdigest()
    assert a.run("cat /var/lib/rancher/rke2/server/token").stdout.strip().endswith("::server:s3cret")
    a.write_config("token: s3cret")
    assert start(a).returncode == 0


def test_restore_on_a_new_host(installer, make_host, datastore):
    """The snapshot holds the bootstrap data: a host that never ran RKE2 restores it with the token."""
    a = rke2_host(installer, make_host, "rnew-a", "token: s3cret")
    assert start(a).returncode == 0
    _, path = snapshot(a)
    text = a.run(f"cat {path}", check=True).stdout
    stop(a)
    d = rke2_host(installer, make_host, "rnew-d", "write-kubeconfig-mode: '0600'")
    d.run(f"mkdir -p /var/lib/rancher/restore && cat > /var/lib/rancher/restore/snap <<'EOF'\n{text}EOF", check=True)
    assert d.run(restore_cmd("/var/lib/rancher/restore/snap")).returncode == 1  # no token: not the snapshot's
    out = d.run(restore_cmd("/var/lib/rancher/restore/snap") + " --token s3cret")
    assert out.returncode == 0, out.stderr
    ca = d.run("cat /var/lib/rancher/rke2/server/tls/server-ca.crt").stdout
    assert ca == json.loads(text)["bootstrap"]["serverCA"]
    d.write_config("token: s3cret")
    assert start(d).returncode == 0
    nodes = d.kubectl("get nodes").stdout
    assert "rnew-a" in nodes and "rnew-d" in nodes  # a's Node from the snapshot, d registered at its start
    (member,) = cluster_state(datastore)["members"].values()
    assert member["node"] == "rnew-d"


def test_cluster_reset_without_a_snapshot(installer, make_host, datastore):
    """Quorum lost for good: `--cluster-reset` alone keeps the data, drops the other members, once."""
    a, b, c = three_servers(installer, make_host, "rsn", learnerPromoteDelay=0.2, nodeReadyDelay=0.2)
    assert a.run("rke2 token rotate --token s3cret --new-token n3w-t0ken").returncode == 0
    # the init server (no `server:`) with its server/db gone would start a second etcd cluster
    hostfaults.set_restart_delay(a.faults_dir, 0.3)
    stop(a)
    a.run(f"rm -rf {DB}", check=True)
    a.write_config("token: n3w-t0ken")
    assert start(a).returncode == 1
    assert ("sandbox: refusing to start a new etcd cluster while rke2 server runs on rsn-b, rsn-c: real etcd "
            "would split brain") in journal(a)
    assert [(e["node"], e["reason"]) for e in events(datastore, "start-refused")][:1] == [("rsn-a", "split-brain")]
    stop(a, b, c)

    b.write_config(f"server: https://{a.address}:9345\ntoken: n3w-t0ken")
    out = b.run("rke2 server --cluster-reset")  # `server:` plays no part in a reset
    assert out.returncode == 0, out.stderr
    assert RESET_DONE in out.stderr
    state = cluster_state(datastore)
    assert [m["node"] for m in state["members"].values()] == ["rsn-b"]
    assert sorted(state["nodes"]) == ["rsn-a", "rsn-b", "rsn-c"]
    assert state["tokenHash"] == hashlib.sha256(b"n3w-t0ken").hexdigest()  # the current token, not the first
    assert [e.get("snapshot") for e in events(datastore, "cluster-reset")] == [None]
    again = b.run("rke2 server --cluster-reset")
    assert again.returncode == 1
    assert ("Managed etcd cluster membership was previously reset, please remove the cluster-reset flag and start "
            f"rke2 normally. If you need to perform another cluster reset, you must first manually delete the file "
            f"at {DB}/reset-flag") in again.stderr
    assert start(b).returncode == 0
    assert b.kubectl("get nodes").returncode == 0  # quorum: one voter of one
