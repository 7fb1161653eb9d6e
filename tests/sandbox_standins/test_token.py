"""The cluster token as RKE2 keeps it: an initialized server must start with the cluster's token, and
``rke2 token rotate`` changes it for every later join and start (running nodes keep running)."""

from __future__ import annotations

import hashlib
import json

from rke2fleet_sandbox import hostfaults
from tests.sandbox_standins.hosthelpers import is_active, journal, rke2_host, start, wait_until

DIFFERENT_TOKEN = ("starting kubernetes: preparing server: "
                   "bootstrap data already found and encrypted with different token")
WARNING = ("WARNING: Recommended to keep a record of the old token. If restoring from a snapshot, "
           "you must use the token associated with that snapshot.")
ROTATED = "Token rotated, restart rke2 nodes with new token"


def refusals(datastore):
    return [(e["node"], e["role"], e["reason"]) for e in datastore.events() if e["event"] == "start-refused"]


def cluster_file(datastore):
    (cluster,) = datastore.clusters()
    return f"{datastore.dir}/clusters/{cluster}.json"


def test_an_initialized_server_refuses_another_token(installer, make_host, datastore):
    host = rke2_host(installer, make_host, "tok-a", "token: s3cret")
    hostfaults.set_restart_delay(host.faults_dir, 0.3)
    assert start(host).returncode == 0
    assert host.run("systemctl stop rke2-server").returncode == 0
    host.write_config("token: s0mething-else")
    assert start(host).returncode == 1
    assert f'level=fatal msg="{DIFFERENT_TOKEN}"' in journal(host)
    assert refusals(datastore)[:1] == [("tok-a", "server", "token")]
    assert "s0mething-else" not in json.dumps(datastore.events())
    assert host.run("systemctl stop rke2-server").returncode == 0

    host.write_config("token: s3cret")
    assert start(host).returncode == 0
    # with no token configured, the server's own token file is what it starts with
    assert host.run("systemctl stop rke2-server").returncode == 0
    host.write_config("write-kubeconfig-mode: '0600'")
    assert start(host).returncode == 0
    assert is_active(host) == "active"
    # the datastore keeps a hash of the token's password, never the password
    text = open(cluster_file(datastore)).read()
    assert "s3cret" not in text and hashlib.sha256(b"s3cret").hexdigest() in text


def test_token_rotate(installer, make_host, datastore):
    server = rke2_host(installer, make_host, "rot-a", "token: s3cret")
    assert start(server).returncode == 0
    old_join = f"server: https://{server.address}:9345\ntoken: s3cret"
    agent = rke2_host(installer, make_host, "rot-ag1", old_join, role="agent", nodeReadyDelay=0)
    joined = rke2_host(installer, make_host, "rot-b", old_join, learnerPromoteDelay=0.2)
    for host in (agent, joined):
        hostfaults.set_restart_delay(host.faults_dir, 0.3)
    assert start(agent, "agent").returncode == 0
    assert start(joined).returncode == 0

    wrong = server.run("rke2 token rotate --token not-it --new-token n3w-t0ken")
    assert wrong.returncode == 1 and WARNING in wrong.stdout
    assert "https://127.0.0.1:9345/v1-rke2/token: 401 Unauthorized" in wrong.stderr
    assert not [e for e in datastore.events() if e["event"] == "token-rotate"]
    # only on a server whose service runs
    assert agent.run("rke2 token rotate --token s3cret").returncode == 1

    out = server.run("rke2 token rotate --token s3cret --new-token n3w-t0ken")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [WARNING, ROTATED]
    assert server.run("cat /var/lib/rancher/rke2/server/token").stdout.strip().endswith("::server:n3w-t0ken")
    assert [(e["event"], e["node"]) for e in datastore.events() if e["event"] == "token-rotate"] == [
        ("token-rotate", "rot-a")]
    assert "n3w-t0ken" not in open(cluster_file(datastore)).read()
    # the running nodes keep running
    assert (is_active(agent, "agent"), is_active(joined)) == ("active", "active")

    # a new agent joins with the new token, and only with it
    new_join = f"server: https://{joined.address}:9345\ntoken: n3w-t0ken"
    fresh = rke2_host(installer, make_host, "rot-ag2", new_join, role="agent")
    assert start(fresh, "agent").returncode == 0
    # the old one restarting with the old token: 401, a fatal exit, systemd restarts it: a 401 loop
    assert agent.run("systemctl restart rke2-agent", timeout=30).returncode == 1
    assert "failed to validate token" in journal(agent, "agent") and "401 Unauthorized" in journal(agent, "agent")
    wait_until(lambda: journal(agent, "agent").count("401 Unauthorized") >= 2)
    assert ("rot-ag1", "agent", "unauthorized") in refusals(datastore)
    # the joined server restarting with the old token in its config: bootstrap data of another token
    assert joined.run("systemctl restart rke2-server", timeout=30).returncode == 1
    assert DIFFERENT_TOKEN in journal(joined)
    assert ("rot-b", "server", "token") in refusals(datastore)
    # with the new token it starts again; so does the agent
    joined.write_config(new_join)
    agent.write_config(new_join)
    wait_until(lambda: is_active(joined) == "active" and is_active(agent, "agent") == "active", timeout=20)

    # without --token the server's token file is the old one; without --new-token one is generated
    again = server.run("rke2 token rotate")
    assert again.returncode == 0 and ROTATED in again.stdout
    generated = server.run("cat /var/lib/rancher/rke2/server/token").stdout.strip().rsplit(":", 1)[1]
    assert len(generated) == 16 and generated != "n3w-t0ken"
    assert (hashlib.sha256(generated.encode()).hexdigest()
            == json.load(open(cluster_file(datastore)))["tokenHash"])


def test_token_rotate_takes_the_old_token_from_the_environment(installer, make_host, datastore):
    """k3s's --token reads RKE2_TOKEN when not given (flag first); --new-token has no environment
    variable: RKE2_NEW_TOKEN is ignored, as by RKE2, and the new token is then a random one."""
    server = rke2_host(installer, make_host, "env-a", "write-kubeconfig-mode: '0600'\ntoken: s3cret")
    assert start(server).returncode == 0

    def token_file():
        return server.run("cat /var/lib/rancher/rke2/server/token").stdout.strip().rsplit(":", 1)[1]

    out = server.run("rke2 token rotate --new-token n3w-t0ken", env={"RKE2_TOKEN": "s3cret"})
    assert out.returncode == 0, out.stderr
    assert token_file() == "n3w-t0ken"
    # the flag wins over the environment, both ways
    wrong = server.run("rke2 token rotate --token not-it --new-token t2", env={"RKE2_TOKEN": "n3w-t0ken"})
    assert wrong.returncode == 1 and "401 Unauthorized" in wrong.stderr
    out = server.run("rke2 token rotate --token n3w-t0ken --new-token t2", env={"RKE2_TOKEN": "not-it"})
    assert out.returncode == 0, out.stderr
    assert token_file() == "t2"
    # a wrong RKE2_TOKEN is used (no fallback to the token file)
    assert server.run("rke2 token rotate --new-token t3", env={"RKE2_TOKEN": "not-it"}).returncode == 1

    out = server.run("rke2 token rotate", env={"RKE2_TOKEN": "t2", "RKE2_NEW_TOKEN": "wanted-t0ken"})
    assert out.returncode == 0, out.stderr
    generated = token_file()
    assert generated != "wanted-t0ken" and len(generated) == 16
    assert json.load(open(cluster_file(datastore)))["tokenHash"] == hashlib.sha256(generated.encode()).hexdigest()
    assert [e["event"] for e in datastore.events()].count("token-rotate") == 3
