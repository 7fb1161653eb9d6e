"""Leaf certificates: issued at a node's first start (real X.509, 365 days), renewed at a start inside
the renewal window, rotated and checked with ``rke2 certificate``, aged by the sandbox's fault switch."""

from __future__ import annotations

import itertools
import json
import re
import sys
import time

import pytest
import yaml
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
COLUMNS = ["FILENAME", "SUBJECT", "USAGES", "EXPIRES", "RESIDUAL TIME", "STATUS"]


def table(host):
    """``rke2 certificate check --output table`` as k3s prints it (a blank line, the header, dashes, a
    tabwriter table with 3 spaces of padding): its rows as lists of cells."""
    out = host.run("rke2 certificate check --output table", check=True)
    blank, header, dashes, *rows = out.stdout.rstrip("\n").split("\n")
    assert blank == "" and header.split("   ")[0] == "FILENAME"
    starts = [header.index(c) for c in COLUMNS]
    assert dashes.split() == ["-" * len(c) for c in COLUMNS]
    assert [m.start() for m in re.finditer(r"-+", dashes)] == starts
    widths = [max(len(line[a:b].rstrip()) for line in [header, *rows]) for a, b in itertools.pairwise(starts)]
    assert [b - a for a, b in itertools.pairwise(starts)] == [w + 3 for w in widths]  # the widest cell + 3
    return [[line[a:b].strip() for a, b in itertools.pairwise([*starts, None])] for line in rows]


def by_file(rows):
    """{file name: (leaf row, CA row)}: each file holds the leaf, then the CA that signed it."""
    result = {}
    for leaf, ca in zip(rows[::2], rows[1::2], strict=True):
        assert leaf[0] == ca[0]
        result[leaf[0]] = (leaf, ca)
    return result


def go_time(t):
    return time.strftime("%b %d, %Y %H:%M UTC", time.gmtime(t))


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

    chain = host.run(f"cat {DATA}/agent/client-kubelet.crt").stdout
    assert chain.count("BEGIN CERTIFICATE") == 2  # the leaf, then its CA
    rows = by_file(table(host))
    assert sorted(rows) == sorted(rel.rsplit("/", 1)[1] for rel in SERVER_CERTS)
    for rel in SERVER_CERTS:
        leaf, ca = rows[rel.rsplit("/", 1)[1]]
        usage = "ClientAuth" if "client-" in rel else "ServerAuth"
        assert leaf[1:] == [cert(host, rel).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value,
                            usage, go_time(dates(host, rel)[1]), "1 year", "OK"], rel
        kind = "client" if usage == "ClientAuth" else "server"
        assert re.fullmatch(rf"rke2-{kind}-ca@\d+", ca[1]) and ca[2] == "CertSign" and ca[4:] == ["10 years", "OK"]
    assert rows["client-kubelet.crt"][0][1] == "system:node:crt-a"

    # the machine-readable one: k3s's JSON encoding of its CertificateInfo
    out = host.run("rke2 certificate check --output json", check=True)
    doc = json.loads(out.stdout)
    assert out.stdout.startswith('{"Certificates":[{"Filename":"client-kubelet.crt","Subject":"system:node:crt-a",')
    assert list(doc["Certificates"][0]) == ["Filename", "Subject", "Issuer", "Usages", "ExpiryTime", "ResidualTime",
                                            "Status"]
    leaf, ca = doc["Certificates"][:2]
    assert leaf["Issuer"] == ca["Subject"] == ca["Issuer"] and ca["Usages"] == ["CertSign"]
    assert leaf["ExpiryTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(dates(host, SERVER_CERTS[0])[1]))
    assert 364 * DAY * 10**9 < leaf["ResidualTime"] <= 365 * DAY * 10**9 and leaf["Status"] == "OK"
    assert len(doc["Certificates"]) == 12
    listed = yaml.safe_load(host.run("rke2 certificate check -o yaml", check=True).stdout)["certificates"]
    assert [(c["filename"], c["subject"], c["usages"], c["status"]) for c in listed] == [
        (c["Filename"], c["Subject"], c["Usages"], c["Status"]) for c in doc["Certificates"]]
    assert re.fullmatch(r"87\d\dh\d+m[\d.]+s", listed[0]["residualtime"])  # Go's Duration.String()
    bad = host.run("rke2 certificate check --output xml")
    assert bad.returncode == 1 and 'level=fatal msg="invalid output format xml"' in bad.stderr
    text = host.run("rke2 certificate check", check=True)
    assert 'level=info msg="Server detected, checking agent and server certificates"' in text.stderr
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(dates(host, "server/tls/client-admin.crt")[1]))
    assert (f'level=info msg="client-admin.crt: certificate system:admin (ClientAuth) is ok, expires at {expires}"'
            in text.stderr)

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
    rows = by_file(table(host))
    assert {leaf[5] for leaf, _ in rows.values()} == {"WARNING"} and {ca[5] for _, ca in rows.values()} == {"OK"}
    assert rows["client-kubelet.crt"][0][3:] == [go_time(dates(host, "agent/client-kubelet.crt")[1]), "2 months",
                                                 "WARNING"]
    text = host.run("rke2 certificate check").stderr
    assert ('level=warning msg="client-admin.crt: certificate system:admin (ClientAuth) will expire within 120 days '
            f'at {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))}"') in text

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
    assert sorted(by_file(table(agent))) == sorted(rel.rsplit("/", 1)[1] for rel in SERVER_CERTS[:3])
    assert "Agent detected, checking agent certificates" in agent.run("rke2 certificate check").stderr
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


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.5, "now"), (1.5, "1 second "), (59, "59 seconds "), (90, "1 minute "), (3599, "59 minutes "),
    (5000, "1 hour "), (86399, "23 hours "), (1.5 * DAY, "1 day "), (6 * DAY, "6 days "), (13 * DAY, "1 week "),
    (29 * DAY, "4 weeks "), (59 * DAY, "1 month "), (65 * DAY, "2 months "), (359 * DAY, "11 months "),
    (365 * DAY, "1 year "), (539 * DAY, "1 year "), (600 * DAY, "2 years "), (3650 * DAY, "10 years "),
    (-3 * DAY, "3 days "), (40 * 365 * DAY, "a long while "),
])
def test_residual_time_is_go_humanize_reltime(seconds, shown):
    assert rke2_certs.rel_time(int(seconds * 10**9)) == shown


@pytest.mark.parametrize(("ns", "shown"), [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (10**9, "1s"), (90 * 10**9, "1m30s"),
    (3600 * 10**9, "1h0m0s"), (31535999_123456789, "8759h59m59.123456789s"), (-1_500_000_000, "-1.5s"),
])
def test_duration_is_go_duration_string(ns, shown):
    assert rke2_certs.go_duration(ns) == shown


def test_expires_is_go_layout():
    assert rke2_certs.go_expires(1778121073) == "May 07, 2026 02:31 UTC"
