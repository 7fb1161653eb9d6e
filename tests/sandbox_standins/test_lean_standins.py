"""The long-lived stand-ins stay cheap: the supervisor and the rke2 daemon import nothing heavy and do
not wake up while idle; their lean replacements (minihttp, the status.json encoder, the select loop)
behave like what they replaced."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from rke2fleet_sandbox import hostfaults
from rke2fleet_sandbox.standins import minihttp, unitstate
from tests.sandbox_standins.hosthelpers import installed_server, wait_until

UNIT_DIR = "/run/rke2fleet/units/rke2-server.service"
SUPERVISOR_HEAVY = {"json", "re", "subprocess", "threading", "pathlib", "typing", "selectors", "enum"}
DAEMON_HEAVY = {"http.server", "http.client", "urllib.request", "email", "ssl", "pathlib", "typing",
                "secrets", "encodings.idna", "textwrap", "glob", "importlib"}


def status(host):
    return json.loads(host.run(f"cat {UNIT_DIR}/status.json", check=True).stdout)


def imported(importtime_lines: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in importtime_lines.splitlines() if "import time:" in line
            and "|" in line}


def context_switches(pid: int) -> int:
    """Voluntary + involuntary switches of every thread of ``pid``: unchanged means nothing woke up."""
    import os

    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            total += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
    return total


# -- on a host ---------------------------------------------------------------------------------------
def test_supervisor_and_daemon_import_nothing_heavy(installer, make_host):
    host = installed_server(installer, make_host, "lean-imports")
    python, script = host.run("cat /usr/bin/systemctl").stdout.split("exec ", 1)[1].split()[:3:2]
    # The supervisor as `systemctl start` spawns it; the variable reaches the daemon through it.
    host.run("mkdir -p /run/rke2fleet/units/rke2-server.service && PYTHONPROFILEIMPORTTIME=1 "
             f"{python} -S {script} __supervise rke2-server.service </dev/null >/dev/null 2>/tmp/imports &",
             check=True)
    wait_until(lambda: host.run("systemctl is-active rke2-server").stdout.strip() == "active")
    supervisor = imported(host.run("cat /tmp/imports", check=True).stdout)
    assert "unitsupervisor" in supervisor
    assert not supervisor & SUPERVISOR_HEAVY, sorted(supervisor & SUPERVISOR_HEAVY)
    daemon = imported(host.run("journalctl -u rke2-server").stdout)
    assert {"rke2_node", "minihttp", "yaml"} <= daemon
    assert not daemon & DAEMON_HEAVY, sorted(daemon & DAEMON_HEAVY)
    host.run("systemctl stop rke2-server", check=True)
    assert host.run("systemctl is-active rke2-server").stdout.strip() == "inactive"


def test_idle_supervisor_and_daemon_sleep(installer, make_host):
    host = installed_server(installer, make_host, "lean-idle")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    st = status(host)
    assert host.run(f"curl -sf http://{host.address}:9345/ping").stdout == "pong"  # serving threads exist
    time.sleep(0.3)  # the start's last journal and status writes are done
    before = {pid: context_switches(pid) for pid in (st["supervisorPid"], st["mainPid"])}
    time.sleep(1.5)  # the old supervisor woke 30 times in this, the old HTTP server 6 times
    after = {pid: context_switches(pid) for pid in before}
    assert after == before
    # and it still answers at once
    assert host.run(f"curl -sf http://{host.address}:9345/ping").stdout == "pong"


def test_stop_while_waiting_to_restart(installer, make_host):
    host = installed_server(installer, make_host, "lean-stop")
    hostfaults.fail_next_start(host.faults_dir)
    hostfaults.set_restart_delay(host.faults_dir, 60)
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 1
    wait_until(lambda: status(host).get("substate") == "auto-restart")
    supervisor = status(host)["supervisorPid"]
    assert host.run("systemctl stop rke2-server", timeout=30).returncode == 0
    # SIGTERM ended the wait: the supervisor itself wrote the stop (a SIGKILL would leave no line)
    journal = host.run("journalctl -u rke2-server").stdout
    assert "Stopped rke2-server.service" in journal and "Scheduled restart job" not in journal
    assert status(host)["state"] == "inactive"
    assert not unitstate.supervisor_alive(supervisor)  # gone (or a zombie nobody has reaped yet)


# -- without a host ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["plain", 'q"uote\\back', "tab\tnl\ncr\r\x01\x7f", "é ✓ 😀 \u2028", ""])
def test_status_json_is_what_json_dumps_writes(value):
    record = {"state": value, "exits": 3, "lastExit": -9, "since": 1712345678.123456, "pending": True,
              "off": False, "none": None}
    assert unitstate.encode_status_json(record) == json.dumps(record)


@pytest.fixture
def http_server():
    def handler(method, path, body):
        if path == "/echo":
            return 200, f"{method} {body.decode()}", "text/plain"
        return 404, "404 page not found", "text/plain"

    sock = minihttp.listen("127.0.0.1", 0)
    minihttp.serve_in_background(sock, handler)
    yield sock.getsockname()[1]
    sock.close()


def test_minihttp_round_trips(http_server):
    port = http_server
    assert minihttp.request("127.0.0.1", port, "GET", "/echo") == (200, "OK", b"GET ")
    assert minihttp.request("127.0.0.1", port, "POST", "/echo", b'{"a": 1}') == (200, "OK", b'POST {"a": 1}')
    assert minihttp.request("127.0.0.1", port, "GET", "/nope") == (404, "Not Found", b"404 page not found")
    assert minihttp.request("127.0.0.1", port, "PUT", "/echo", b"x") == (200, "OK", b"PUT x")
    assert minihttp.request("127.0.0.1", port, "DELETE", "/echo")[0] == 501
    with socket.create_connection(("127.0.0.1", port)) as raw:  # not HTTP at all
        raw.sendall(b"hello\r\n\r\n")
        assert raw.makefile("rb").readline().startswith(b"HTTP/1.1 400 ")


def test_minihttp_client_errors_read_like_urllib():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(OSError) as refused:
            minihttp.request("127.0.0.1", port, "GET", "/cacerts")
    assert str(refused.value) == "[Errno 111] Connection refused"

    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(OSError) as timed_out:
            minihttp.request("127.0.0.1", silent.getsockname()[1], "GET", "/cacerts", timeout=0.3)
    assert str(timed_out.value) == "timed out"

    def hang_up(listener: socket.socket) -> None:
        with listener.accept()[0] as conn:
            conn.recv(65536)  # read the request first, so closing sends FIN, not RST

    with socket.socket() as rude:  # reads the request and hangs up
        rude.bind(("127.0.0.1", 0))
        rude.listen(1)
        threading.Thread(target=hang_up, args=(rude,), daemon=True).start()
        with pytest.raises(OSError) as hung_up:
            minihttp.request("127.0.0.1", rude.getsockname()[1], "GET", "/cacerts")
    assert str(hung_up.value) == "Remote end closed connection without response"
