"""The installer endpoint and install.sh: channels, versions, air-gap checksums, faults, re-runs."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

import pytest

from rke2fleet_sandbox.installer import (
    build_tarball,
    installer_stats,
    resolve_channel,
    set_installer_fault,
    write_airgap_bundle,
)


def test_channel_redirects_name_the_version(installer):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    expected = {"stable": "v1.35.7+rke2r1", "latest": "v1.36.3+rke2r1", "testing": "v1.36.4-rc1+rke2r1",
                "v1.34": "v1.34.10+rke2r1", "v1.36": "v1.36.3+rke2r1", "v1.33": "v1.33.13+rke2r2"}
    for channel, version in expected.items():
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(f"{installer.url}/v1-release/channels/{channel}")
        assert err.value.code == 302
        location = err.value.headers["Location"]
        assert urllib.request.unquote(location.rsplit("/", 1)[1]) == version
    assert resolve_channel("v1.20") is None


def test_channel_install_and_unknown_version(installer, make_host, tmp_path):
    host = make_host("inst-a")
    host.install(installer.url, "INSTALL_RKE2_CHANNEL=latest INSTALL_RKE2_TYPE=agent")
    assert "v1.36.3+rke2r1" in host.run("rke2 --version").stdout
    host.install(installer.url, "INSTALL_RKE2_CHANNEL=v1.34 INSTALL_RKE2_TYPE=agent")
    assert "v1.34.10+rke2r1" in host.run("rke2 --version").stdout
    for unit in ("rke2-server.service", "rke2-agent.service", "rke2-server.env", "rke2-agent.env"):
        assert host.run(f"test -f /usr/local/lib/systemd/system/{unit}").returncode == 0
    assert host.run("test -f /usr/local/share/rke2/rke2-cis-sysctl.conf").returncode == 0

    bad = host.install(installer.url, "INSTALL_RKE2_VERSION=v1.99.0+rke2r1", check=False)
    assert bad.returncode != 0 and "download failed" in bad.stderr
    assert "v1.34.10+rke2r1" in host.run("rke2 --version").stdout  # the old install is intact
    stats = installer_stats(tmp_path / "installer")
    assert stats["/releases/download/v1.99.0+rke2r1/sha256sum-amd64.txt"] == 1
    assert "/releases/download/v1.99.0+rke2r1/rke2.linux-amd64.tar.gz" not in stats


def test_tarballs_are_deterministic_per_version():
    a = build_tarball("v1.35.7+rke2r1", "/usr/bin/python3", "/x")
    build_tarball.cache_clear()
    assert build_tarball("v1.35.7+rke2r1", "/usr/bin/python3", "/x") == a
    assert build_tarball("v1.36.3+rke2r1", "/usr/bin/python3", "/x") != a


def test_airgap_install_and_checksum_mismatch(installer, make_host, tmp_path):
    bundle = write_airgap_bundle(tmp_path / "airgap", "v1.36.2+rke2r1")
    host = make_host("airgap")
    script = host.run(f"curl -sfL {installer.url}/install.sh", check=True).stdout
    (tmp_path / "install.sh").write_text(script)
    ok = host.run(f"INSTALL_RKE2_ARTIFACT_PATH={bundle} sh {tmp_path}/install.sh")
    assert ok.returncode == 0, ok.stderr
    assert "v1.36.2+rke2r1" in host.run("rke2 --version").stdout
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "sha256sum-amd64.txt").write_text((bundle / "sha256sum-amd64.txt").read_text())
    (tampered / "rke2.linux-amd64.tar.gz").write_bytes(build_tarball("v1.36.3+rke2r1", "p", "d"))
    bad = host.run(f"INSTALL_RKE2_ARTIFACT_PATH={tampered} sh {tmp_path}/install.sh")
    assert bad.returncode != 0 and "download sha256 does not match" in bad.stderr
    assert "v1.36.2+rke2r1" in host.run("rke2 --version").stdout


def test_tar_prefix_and_interrupted_install_rerun(installer, make_host):
    host = make_host("prefix")
    host.install(installer.url, "INSTALL_RKE2_VERSION=v1.35.6+rke2r1 INSTALL_RKE2_TAR_PREFIX=/usr/local/alt")
    assert "v1.35.6+rke2r1" in host.run("/usr/local/alt/bin/rke2 --version").stdout
    # an install cut short: a stale staging dir and a truncated binary
    host.run("mkdir -p /usr/local/.rke2-stage.dead /usr/local/bin && printf '#!/bin/sh\\nexi' > /usr/local/bin/rke2 "
             "&& chmod 755 /usr/local/bin/rke2", check=True)
    host.install(installer.url, "INSTALL_RKE2_VERSION=v1.35.7+rke2r1")
    assert "v1.35.7+rke2r1" in host.run("rke2 --version").stdout
    assert host.run("ls -a /usr/local | grep -c rke2-stage").stdout.strip() == "0"


def test_installer_fail_and_hang_faults(installer, make_host, tmp_path):
    state = tmp_path / "installer"
    host = make_host("faulty")
    script_path = tmp_path / "install.sh"
    script_path.write_text(host.run(f"curl -sfL {installer.url}/", check=True).stdout)

    set_installer_fault(state, "fail")
    piped = host.run(f"curl -sfL {installer.url} | INSTALL_RKE2_VERSION=v1.35.7+rke2r1 sh -")
    assert host.run("command -v rke2").returncode != 0  # nothing was installed (the pipe hides it)
    direct = host.run(f"INSTALL_RKE2_VERSION=v1.35.7+rke2r1 sh {script_path}")
    assert direct.returncode != 0 and "download failed" in direct.stderr
    assert piped.returncode == 0  # like the real `curl | sh`: an empty script succeeds

    set_installer_fault(state, "hang")
    with pytest.raises(subprocess.TimeoutExpired):
        host.run(f"curl -sf {installer.url}/install.sh", timeout=1.5)
    hung = host.run(f"curl -sf --max-time 1 {installer.url}/install.sh")
    assert hung.returncode == 28  # curl: operation timed out

    set_installer_fault(state, None)
    host.install(installer.url, "INSTALL_RKE2_VERSION=v1.35.7+rke2r1")
    assert "v1.35.7+rke2r1" in host.run("rke2 --version").stdout
    assert installer_stats(state)["/install.sh"] >= 2
