"""``rke2 etcd-snapshot save|ls|delete`` as k3s does them: requests to the running server (supervisor
port, server token), snapshots named ``<name>-<node>-<unix time>`` in ``server/db/snapshots`` (or the
given directory), holding what a restore needs of the datastore."""

from __future__ import annotations

import hashlib
import json
import re
import time

from rke2fleet_sandbox import hostfaults
from tests.sandbox_standins.hosthelpers import journal, rke2_host, start

SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"
INFO_SAVED = re.compile(r'level=info msg="Snapshot (\S+) saved\."')


def saved(out):
    """The names a save reported (logrus, on stderr)."""
    return INFO_SAVED.findall(out.stderr)


def test_save_names_the_snapshot_and_captures_the_datastore(installer, make_host, datastore):
    server = rke2_host(installer, make_host, "snap-a", "token: s3cret")
    assert start(server).returncode == 0
    agent = rke2_host(installer, make_host, "snap-ag", f"server: https://{server.address}:9345\ntoken: s3cret",
                      role="agent")
    assert start(agent, "agent").returncode == 0

    before = int(time.time())
    out = server.run("rke2 etcd-snapshot save")
    assert out.returncode == 0, out.stderr
    (name,) = saved(out)
    prefix, stamp = name.rsplit("-", 1)
    assert prefix == "on-demand-snap-a" and before <= int(stamp) <= time.time() + 1
    # the server logs where it wrote it; the file is private to root
    path = f"{SNAPSHOTS}/{name}"
    assert f'level=info msg="Saving etcd snapshot to {path}"' in journal(server)
    assert server.run(f"stat -c %a {path}").stdout.strip() == "600"

    doc = json.loads(server.run(f"cat {path}", check=True).stdout)
    (cluster,) = datastore.clusters()
    state = datastore.cluster(cluster)
    assert doc["kind"] == "rke2fleet-sandbox/etcd-snapshot" and doc["name"] == name and doc["cluster"] == cluster
    assert doc["tokenHash"] == hashlib.sha256(b"s3cret").hexdigest() == state["tokenHash"]
    assert doc["members"] == state["members"] and doc["voters"] == sorted(state["members"])
    assert sorted(doc["nodes"]) == ["snap-a", "snap-ag"] and doc["nodePasswords"] == state["nodePasswords"]
    assert doc["bootstrap"]["serverCA"] == server.run(
        "cat /var/lib/rancher/rke2/server/tls/server-ca.crt").stdout
    assert "s3cret" not in json.dumps(doc)

    # --name and --dir (a directory that is not the default one must exist)
    missing = server.run("rke2 etcd-snapshot save --name pre-upgrade --dir /var/lib/rancher/snaps")
    assert missing.returncode == 1
    assert "failed to get etcd-snapshot-dir: stat /var/lib/rancher/snaps: no such file or directory" in journal(server)
    assert 'level=fatal msg="see server log for details: https://127.0.0.1:9345/db/snapshot: 500' in missing.stderr
    server.run("mkdir -p /var/lib/rancher/snaps", check=True)
    out = server.run("rke2 etcd-snapshot save --name pre-upgrade --dir /var/lib/rancher/snaps")
    assert out.returncode == 0, out.stderr
    (custom,) = saved(out)
    assert custom.startswith("pre-upgrade-snap-a-")
    assert server.run(f"test -f /var/lib/rancher/snaps/{custom}").returncode == 0
    # an argument is refused, as by urfave/cli
    assert server.run("rke2 etcd-snapshot save extra").returncode == 1


def test_ls_and_delete(installer, make_host):
    server = rke2_host(installer, make_host, "snap-l", "token: s3cret")
    assert start(server).returncode == 0
    names = []
    for base in ("first", "second"):
        out = server.run(f"rke2 etcd-snapshot save --name {base}")
        assert out.returncode == 0, out.stderr
        names += saved(out)
        time.sleep(1)  # names carry the second they were taken in

    listing = server.run("rke2 etcd-snapshot ls")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["Name", "Location", "Size", "Created"]
    assert [r.split()[0] for r in rows] == names  # oldest first
    for row, name in zip(rows, names, strict=True):
        _, location, size, created = row.split()
        assert location == f"file://{SNAPSHOTS}/{name}"
        assert int(size) == int(server.run(f"stat -c %s {SNAPSHOTS}/{name}").stdout)
        assert created == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(name.rsplit("-", 1)[1])))
    # tabwriter columns: each one as wide as its widest cell plus one space
    assert rows[0].index(f"file://{SNAPSHOTS}") == header.index("Location") == max(map(len, names)) + 1

    out = server.run(f"rke2 etcd-snapshot delete {names[0]} no-such-snapshot")
    assert out.returncode == 0, out.stderr  # k3s warns about an unknown name, it does not fail
    assert f'level=info msg="Snapshot {names[0]} deleted."' in out.stderr
    assert 'level=warning msg="Snapshot no-such-snapshot not found."' in out.stderr
    assert [r.split()[0] for r in server.run("rke2 etcd-snapshot ls").stdout.splitlines()[1:]] == names[1:]
    none = server.run("rke2 etcd-snapshot delete")
    assert none.returncode == 1 and 'level=fatal msg="no snapshots given for removal"' in none.stderr


def test_snapshots_need_the_running_server_and_its_token(installer, make_host):
    server = rke2_host(installer, make_host, "snap-r", "token: s3cret")
    assert server.run("rke2 etcd-snapshot save").returncode == 1  # never started: no token file yet
    assert start(server).returncode == 0

    wrong = server.run("rke2 etcd-snapshot save --token not-it")
    assert wrong.returncode == 1 and "/db/snapshot: 401 Unauthorized" in wrong.stderr
    # the token: --token, else config.yaml's, else RKE2_TOKEN, else the server's token file
    assert server.run("rke2 etcd-snapshot ls", env={"RKE2_TOKEN": "not-it"}).returncode == 0
    server.write_config("write-kubeconfig-mode: '0600'")
    assert server.run("rke2 etcd-snapshot ls", env={"RKE2_TOKEN": "not-it"}).returncode == 1
    assert server.run("rke2 etcd-snapshot ls --token s3cret", env={"RKE2_TOKEN": "not-it"}).returncode == 0
    assert server.run("rke2 etcd-snapshot ls").returncode == 0

    hostfaults.fail_snapshot(server.faults_dir)
    failed = server.run("rke2 etcd-snapshot save")
    assert failed.returncode == 1 and "see server log for details" in failed.stderr
    assert "failed to check etcd status for snapshot: context deadline exceeded" in journal(server)
    assert server.run(f"ls {SNAPSHOTS}").stdout.strip() == ""
    hostfaults.fail_snapshot(server.faults_dir, enabled=False)

    assert server.run("systemctl stop rke2-server").returncode == 0
    for verb in ("save", "ls", "delete x"):
        out = server.run(f"rke2 etcd-snapshot {verb}")
        assert out.returncode == 1, verb
        assert ('level=fatal msg="see server log for details: Post \\"https://127.0.0.1:9345/db/snapshot\\": '
                f'dial tcp {server.address}:9345: connect: connection refused"') in out.stderr, verb
