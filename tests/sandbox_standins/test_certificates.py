"""Leaf certificates: issued at a node's first start (real X.509, 365 days), renewed at a start inside
the renewal window, rotated and checked with ``rke2 certificate``, aged by the sandbox's fault switch."""

from __future__ import annotations

import sys
import time

import pytest
from cryptography import x509

from rke2fleet_sandbox import hostfaults
from rke2fleet_sandbox.standins import rke2_certs
from tests.sandbox_standins.conftest import STANDINS
from tests.sandbox_standins.hosthelpers import V, journal, rke2_host, start

DATA = "/var/lib/rancher/rke2"
SERVER_CERTS = ["agent/client-kubelet.crt", "agent/serving-kubelet.crt", "agent/client-kube-proxy.crt",
                "server/tls/client-admin.crt", "server/tls/serving-kube-apiserver.crt",
                "server/tls/client-supervisor.crt"]
DAY = 86400


def cert(host, rel):
    return x509.load_pem_x509_certificate(host.run(f"cat {DATA}/{rel}", check=True).stdout.encode())


def dates(host, rel):
    c = cert(host, rel)
    return c.not_valid_before_utc.timestamp(), c.not_valid_after_utc.timestamp()


def age(host, days):
    out = host.run(hostfaults.age_certificates_command(sys.executable, STANDINS, days), check=True)
    return out.stdout


def test_issued_aged_renewed_rotated_checked(installer, make_host):
    host = rke2_host(installer, make_host, "crt-a", "token: s3cret")
    started = time.time()
    assert start(host).returncode == 0
    assert "Generated certificates client-kubelet.crt, serving-kubelet.crt" in journal(host)
    for rel in SERVER_CERTS:
        not_before, not_after = dates(host, rel)
        assert abs(not_before - started) < 60 and not_after - not_before == 365 * DAY, rel
        key = rel.removesuffix(".crt") + ".key"
        assert host.run(f"stat -c %a {DATA}/{key}").stdout.strip() == "600", key
    assert cert(host, "agent/client-kubelet.crt").subject.rfc4514_string() == "CN=system:node:crt-a,O=system:nodes"
    san = cert(host, "agent/serving-kubelet.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "crt-a" in san.value.get_values_for_type(x509.DNSName)

    table = host.run("rke2 certificate check --output table", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["FILENAME", "SUBJECT", "USAGES", "EXPIRES"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert sorted(rows) == sorted(SERVER_CERTS)
    assert all(row[-2] in ("364d", "365d") and row[-1] == "OK" for row in rows.values())

    # a plain restart renews nothing (and reads only the index)
    mtime = host.run(f"stat -c %Y {DATA}/agent/client-kubelet.crt").stdout
    assert host.run("systemctl restart rke2-server", timeout=30).returncode == 0
    assert "renewing" not in journal(host)
    assert host.run(f"stat -c %Y {DATA}/agent/client-kubelet.crt").stdout == mtime

    # aged 300 days: 65 days left, inside the 120-day window of v1.29+
    aged = age(host, 300)
    assert len(aged.splitlines()) == 6
    not_before, not_after = dates(host, "server/tls/client-admin.crt")
    assert abs(not_before - (started - 300 * DAY)) < 60 and abs(not_after - (started + 65 * DAY)) < 60
    rows = {line.split()[0]: line.split() for line in host.run("rke2 certificate check --output table").stdout
            .splitlines()[1:]}
    assert {row[-1] for row in rows.values()} == {"WARNING"} and rows["agent/client-kubelet.crt"][-2] == "64d"
    text = host.run("rke2 certificate check").stderr
    assert "client-admin.crt: certificate CN=system:admin,O=system:masters will expire within 120 days" in text

    assert host.run("systemctl restart rke2-server", timeout=30).returncode == 0
    renewed = [line for line in journal(host).splitlines() if "renewing" in line]
    assert len(renewed) == 6
    assert f"Certificate {DATA}/server/tls/client-admin.crt will expire within 120 days" in "".join(renewed)
    for rel in SERVER_CERTS:
        assert dates(host, rel)[1] - time.time() > 364 * DAY, rel

    # rotate the kubelet's: backed up, removed, issued anew at the next start
    before = cert(host, "agent/client-kubelet.crt").serial_number
    out = host.run("rke2 certificate rotate --service kubelet")
    assert out.returncode == 0, out.stderr
    assert f"Backing up certificates directory to {DATA}/server/tls-" in out.stderr
    backup = out.stderr.split("Backing up certificates directory to ")[1].split('"')[0]
    assert host.run(f"test -f {backup}/agent/client-kubelet.crt && test -f {backup}/client-admin.crt").returncode == 0
    assert host.run(f"test -e {DATA}/agent/client-kubelet.crt").returncode != 0
    assert host.run(f"test -e {DATA}/server/tls/client-admin.crt").returncode == 0
    assert host.run("systemctl restart rke2-server", timeout=30).returncode == 0
    assert cert(host, "agent/client-kubelet.crt").serial_number != before
    assert "Generated certificates client-kubelet.crt, serving-kubelet.crt (valid" in journal(host)
    assert host.run("rke2 certificate rotate --service nope").returncode == 1


def test_agents_get_the_agent_certificates(installer, make_host):
    server = rke2_host(installer, make_host, "crt-s", "token: s3cret")
    assert start(server).returncode == 0
    agent = rke2_host(installer, make_host, "crt-ag", f"server: https://{server.address}:9345\ntoken: s3cret",
                      role="agent")
    # an older release (the sandbox installer serves v1.33+): its binary says v1.28
    agent.run(f"sed -i 's/--standin-version {V} /--standin-version v1.28.15+rke2r1 /' /usr/local/bin/rke2", check=True)
    assert "v1.28.15+rke2r1" in agent.run("rke2 --version").stdout
    assert start(agent, "agent").returncode == 0
    table = agent.run("rke2 certificate check --output table", check=True).stdout.splitlines()
    assert sorted(line.split()[0] for line in table[1:]) == sorted(SERVER_CERTS[:3])
    # v1.28: the 90-day window; 100 days left is outside it, 80 inside
    age(agent, 265)
    assert agent.run("systemctl restart rke2-agent", timeout=30).returncode == 0
    assert "renewing" not in journal(agent, "agent")
    age(agent, 20)
    assert agent.run("systemctl restart rke2-agent", timeout=30).returncode == 0
    assert journal(agent, "agent").count("will expire within 90 days") == 3


@pytest.mark.parametrize(("version", "window"), [("v1.36.3+rke2r1", 120), ("v1.29.0+rke2r1", 120),
                                                 ("v1.28.15+rke2r1", 90), ("v1.27.16+rke2r2", 90)])
def test_renewal_window(version, window):
    assert rke2_certs.renewal_window_days(version) == window
