"""etcd as RKE2 runs it: one learner at a time, quorum, member removal with the Node and etcd's strict
reconfig check; the refusals are recorded in the datastore as ``start-refused`` events."""

from __future__ import annotations

import json
import time

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

TOO_MANY = ("Waiting for other members to finish joining etcd cluster: "
            "etcdserver: too many learner members in cluster")
API_DOWN = "Error from server: etcdserver: request timed out"


def voter(server, name):
    return node_conditions(server, name).get("EtcdIsVoter", {})


def member_of(datastore, node):
    (cluster,) = datastore.clusters()
    found = [(name, m) for name, m in datastore.members(cluster).items() if m["node"] == node]
    return found[0] if found else None


def events(datastore, *names):
    return [(e["event"], e["node"]) for e in datastore.events() if e["event"] in names]


def test_one_learner_at_a_time(installer, make_host, datastore):
    init = rke2_host(installer, make_host, "etcd-a", "token: s3cret")
    assert start(init).returncode == 0
    join = f"server: https://{init.address}:9345\ntoken: s3cret"
    # the first joiner stays a learner for 4 s, the second is promoted 0.3 s after it is added
    first = rke2_host(installer, make_host, "etcd-b", join, learnerPromoteDelay=4)
    second = rke2_host(installer, make_host, "etcd-c", join, learnerPromoteDelay=0.3)
    assert start(first).returncode == 0
    added = time.monotonic()
    assert voter(init, "etcd-b") == {
        "type": "EtcdIsVoter", "status": "False", "reason": "MemberIsLearner",
        "message": "Node has not been promoted to voting member of the etcd cluster",
        "lastTransitionTime": voter(init, "etcd-b")["lastTransitionTime"]}
    assert voter(init, "etcd-a")["reason"] == "MemberNotLearner"

    assert start(second, block=False).returncode == 0
    wait_until(lambda: TOO_MANY in journal(second))
    # etcd refuses a second learner: k3s retries every second, the unit stays activating
    assert is_active(second) == "activating"
    assert member_of(datastore, "etcd-c") is None
    assert voter(init, "etcd-c")["reason"] == "NotAMember"  # registered, not (yet) in etcd
    assert "level=fatal" not in journal(second)
    wait_until(lambda: is_active(second) == "active", timeout=20)
    assert time.monotonic() - added >= 3.5  # not before the first learner was promoted

    assert voter(init, "etcd-b") | {"lastTransitionTime": ""} == {
        "type": "EtcdIsVoter", "status": "True", "reason": "MemberNotLearner",
        "message": "Node is a voting member of the etcd cluster", "lastTransitionTime": ""}
    wait_until(lambda: voter(init, "etcd-c").get("status") == "True")
    order = events(datastore, "member-add", "promote")
    assert order == [("member-add", "etcd-a"), ("member-add", "etcd-b"), ("promote", "etcd-b"),
                     ("member-add", "etcd-c"), ("promote", "etcd-c")]
    adds = [e for e in datastore.events() if e["event"] == "member-add"]
    assert [e["learner"] for e in adds] == [False, True, True]

    # the member name is kept in the local datastore and shown on the Node
    name = first.run("cat /var/lib/rancher/rke2/server/db/etcd/name", check=True).stdout.strip()
    assert name.startswith("etcd-b-") and len(name) == len("etcd-b-") + 8
    node = json.loads(init.kubectl("get node etcd-b -o json").stdout)
    assert node["metadata"]["annotations"]["etcd.rke2.cattle.io/node-name"] == name
    assert node["metadata"]["annotations"]["etcd.rke2.cattle.io/node-address"] == first.address
    assert node["metadata"]["labels"]["node-role.kubernetes.io/etcd"] == "true"
    assert not [e for e in datastore.events() if e["event"] == "start-refused"]


def test_quorum_loss_makes_the_api_unavailable(installer, make_host, make_load_balancer, datastore):
    a, b, c = three_servers(installer, make_host, "quo", learnerPromoteDelay=0.2, nodeReadyDelay=0.2)
    lb = make_load_balancer([a.address, b.address, c.address])

    def readyz(target):
        out = a.run(f"curl -s -w ' %{{http_code}}' http://{target}:6443/readyz")
        return out.stdout

    assert readyz(a.address) == "ok 200"
    assert b.run("systemctl stop rke2-server").returncode == 0
    assert a.kubectl("get nodes").returncode == 0  # 2 of 3 voters: quorum
    assert voter(a, "quo-b")["reason"] == "Unhealthy"
    assert c.run("systemctl stop rke2-server").returncode == 0
    for verb in ("get nodes", "get nodes -o json", "cordon quo-a", "delete node quo-b", "drain quo-a"):
        out = a.kubectl(verb)
        assert (out.returncode, out.stderr.strip()) == (1, API_DOWN), verb
    assert a.kubectl("version --client").returncode == 0
    body = readyz(a.address)
    assert body.endswith(" 500") and "[-]etcd failed: reason withheld" in body and "readyz check failed" in body
    for _ in range(3):  # whichever server the balancer picks first, a is the only one answering
        assert readyz(lb).endswith(" 500")
    # the supervisor port still answers (agents keep their connection); the API does not
    assert a.run(f"curl -sf http://{a.address}:9345/ping").stdout == "pong"

    assert start(b).returncode == 0  # an existing member: it starts without a quorum to join
    wait_until(lambda: a.kubectl("get nodes").returncode == 0)
    assert readyz(lb) == "ok 200"
    assert voter(a, "quo-c")["reason"] == "Unhealthy"
    assert not [e for e in datastore.events() if e["event"] == "start-refused"]


def test_delete_node_removes_the_member_under_the_strict_reconfig_check(installer, make_host, datastore):
    a, b, c = three_servers(installer, make_host, "rm", learnerPromoteDelay=0.2, nodeReadyDelay=0.2)
    for host in (a, b, c):
        hostfaults.set_restart_delay(host.faults_dir, 0.3)
    # b down: removing c would leave a and b, of which only a is started: etcd refuses
    assert b.run("systemctl stop rke2-server").returncode == 0
    assert a.kubectl("delete node rm-c").stdout.strip() == 'node "rm-c" deleted'  # the Node goes all the same
    assert member_of(datastore, "rm-c") is not None
    refused = [e for e in datastore.events() if e["event"] == "member-remove-refused"]
    assert [(e["node"], e["error"]) for e in refused] == [
        ("rm-c", "etcdserver: re-configuration failed due to not enough started members")]
    assert is_active(c) == "active"  # a member that stays keeps running
    assert "rm-c" not in a.kubectl("get nodes").stdout

    # all three up: removing b is allowed; etcd stops the removed member, whose restarts are refused
    assert start(b).returncode == 0
    b_member = member_of(datastore, "rm-b")[0]
    assert a.kubectl("delete node rm-b").returncode == 0
    assert member_of(datastore, "rm-b") is None
    assert ("member-remove", "rm-b") in events(datastore, "member-remove")
    expect = f"expect: {b_member}=https://{b.address}:2380"
    wait_until(lambda: expect in journal(b))
    log = journal(b)
    assert "this server is a not a member of the etcd cluster. Found [" in log and "level=fatal" in log
    assert f"Found [{member_of(datastore, 'rm-a')[0]}=https://{a.address}:2380" in log
    refusals = [e for e in datastore.events() if e["event"] == "start-refused"]
    assert refusals and {(e["node"], e["role"], e["reason"]) for e in refusals} == {("rm-b", "server", "removed")}
    assert is_active(b) == "activating"  # Restart=always: it keeps trying, and keeps being refused
    assert "rm-b" not in a.kubectl("get nodes").stdout

    # it rejoins once its old datastore is gone: a new member, a learner first
    assert b.run("systemctl stop rke2-server").returncode == 0
    b.run("rm -rf /var/lib/rancher/rke2/server/db", check=True)
    assert start(b).returncode == 0
    wait_until(lambda: voter(a, "rm-b").get("status") == "True")
    assert member_of(datastore, "rm-b")[0] != b_member


def test_a_removed_init_server_is_refused_too(installer, make_host, datastore):
    """The init server has no ``server:`` key; its local datastore still makes it a member to check."""
    a, b, _ = three_servers(installer, make_host, "ini", learnerPromoteDelay=0.2, nodeReadyDelay=0.2)
    hostfaults.set_restart_delay(a.faults_dir, 0.3)
    assert b.kubectl("delete node ini-a").returncode == 0
    wait_until(lambda: "this server is a not a member of the etcd cluster" in journal(a))
    assert [e["reason"] for e in datastore.events() if e["event"] == "start-refused"][:1] == ["removed"]
    assert b.kubectl("get nodes").returncode == 0  # b and c keep the cluster
