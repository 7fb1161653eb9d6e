"""Air gap: the release's four assets, install.sh's checks of them (as upstream's), the runtime image
a node needs for its version (an images archive in agent/images, else a pull from docker.io or a
registries.yaml mirror), and what a node without either does (RKE2 shuts down and systemd restarts
it: the unit never becomes active)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rke2fleet_sandbox.installer import build_tarball, write_airgap_bundle
from rke2fleet_sandbox.standins import rke2_images
from tests.sandbox_standins.hosthelpers import V, is_active, journal, rke2_host, start, wait_until

IMAGES_DIR = "/var/lib/rancher/rke2/agent/images"
NO_DOCKER_IO = {"registryEndpoints": {"docker.io": "http://127.0.3.254:1"}}  # a host without egress
RUNTIME = f"index.docker.io/rancher/rke2-runtime:{V.replace('+', '-')}"


def airgap_install(host, bundle: Path, env: str = "") -> subprocess.CompletedProcess[str]:
    return host.run(f"INSTALL_RKE2_ARTIFACT_PATH={bundle} {env} sh {bundle}/install.sh")


def test_bundle_holds_the_four_release_assets(tmp_path):
    bundle = write_airgap_bundle(tmp_path / "b", V)
    assert sorted(p.name for p in bundle.iterdir()) == [
        "install.sh", "rke2-images.linux-amd64.tar.zst", "rke2.linux-amd64.tar.gz", "sha256sum-amd64.txt"]
    sums = dict(reversed(line.split("  ")) for line in (bundle / "sha256sum-amd64.txt").read_text().splitlines())
    for name in ("rke2.linux-amd64.tar.gz", "rke2-images.linux-amd64.tar.zst"):
        assert sums[name] == hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    archive = (bundle / "rke2-images.linux-amd64.tar.zst").read_bytes()
    assert archive[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    tags = rke2_images.repo_tags(archive)
    assert f"docker.io/rancher/rke2-runtime:{V.replace('+', '-')}" == tags[0]
    assert "https://update.rke2.io/v1-release/channels" in (bundle / "install.sh").read_text()
    if shutil.which("zstd"):  # the real tool reads it too
        listing = subprocess.run(f"zstd -dc {bundle}/rke2-images.linux-amd64.tar.zst | tar t", shell=True,
                                 capture_output=True, text=True, check=True).stdout.split()
        assert "manifest.json" in listing


def test_airgap_install_and_start_without_egress(make_host, tmp_path):
    bundle = write_airgap_bundle(tmp_path / "bundle", V)
    host = make_host("ag-ok", nodeReadyDelay=0, **NO_DOCKER_IO)
    out = airgap_install(host, bundle)
    assert out.returncode == 0, out.stderr
    assert "verifying airgap tarball" in out.stdout and "installing airgap tarball" in out.stdout
    assert host.run(f"ls {IMAGES_DIR}").stdout.split() == ["rke2-images.linux-amd64.tar.zst"]
    assert V in host.run("rke2 --version").stdout
    host.write_config("token: s3cret")
    assert start(host).returncode == 0, journal(host)
    assert "Pulling runtime image" not in journal(host)
    assert host.kubectl("get nodes -o name").stdout.strip() == "node/ag-ok"


def test_corrupted_assets_are_refused_as_upstream(make_host, tmp_path):
    bundle = write_airgap_bundle(tmp_path / "bundle", V)
    host = make_host("ag-bad")

    def variant(name: str, change: str | None = None, content: bytes | None = None) -> Path:
        target = tmp_path / name
        shutil.copytree(bundle, target)
        if change:
            (target / change).write_bytes(content or b"corrupted!")
        return target

    # the images archive does not match its checksum: nothing is installed
    bad = airgap_install(host, variant("bad-images", "rke2-images.linux-amd64.tar.zst"))
    assert bad.returncode != 0 and "download sha256 does not match" in bad.stderr
    assert host.run("ls /usr/local/bin/rke2").returncode != 0
    assert host.run(f"ls {IMAGES_DIR} 2>/dev/null").stdout == ""
    # the tarball does not match: no rke2; upstream has already moved the (verified) images into place
    other = build_tarball("v1.36.3+rke2r1", "p", "d")
    bad = airgap_install(host, variant("bad-tarball", "rke2.linux-amd64.tar.gz", other))
    assert bad.returncode != 0 and "download sha256 does not match" in bad.stderr
    assert host.run("ls /usr/local/bin/rke2").returncode != 0
    assert host.run(f"ls {IMAGES_DIR}").stdout.split() == ["rke2-images.linux-amd64.tar.zst"]
    host.run(f"rm -rf {IMAGES_DIR}", check=True)
    # a checksum file that does not name the images archive: the archive is left out
    quiet = variant("no-images-line")
    sums = (quiet / "sha256sum-amd64.txt").read_text().splitlines()
    (quiet / "sha256sum-amd64.txt").write_text("".join(s + "\n" for s in sums if "images" not in s))
    out = airgap_install(host, quiet)
    assert out.returncode == 0, out.stderr
    assert host.run(f"ls {IMAGES_DIR} 2>/dev/null").stdout == ""
    assert V in host.run("rke2 --version").stdout
    # INSTALL_RKE2_AGENT_IMAGES_DIR
    out = airgap_install(host, bundle, "INSTALL_RKE2_AGENT_IMAGES_DIR=/var/lib/rancher/other")
    assert out.returncode == 0 and host.run("ls /var/lib/rancher/other").stdout.split() == [
        "rke2-images.linux-amd64.tar.zst"]


def test_no_images_and_no_egress_the_node_never_starts(installer, make_host, tmp_path):
    server = rke2_host(installer, make_host, "noeg", "token: s3cret", nodeReadyDelay=0, **NO_DOCKER_IO)
    assert start(server, block=False).returncode == 0
    error = (f'failed to get runtime image {RUNTIME}: Get \\\\\\"https://registry-1.docker.io/v2/\\\\\\": '
             "dial tcp 127.0.3.254:1: connect: connection refused")
    wait_until(lambda: error in journal(server) and "Scheduled restart job" in journal(server))
    assert f'level=info msg="Pulling runtime image {RUNTIME}"' in journal(server)
    assert 'level=error msg="Shutdown request received: \\"' in journal(server)
    assert is_active(server) == "activating"  # restarted again and again, never READY
    assert server.run("test -e /etc/rancher/rke2/rke2.yaml").returncode != 0
    # another version's images do not help
    other = write_airgap_bundle(tmp_path / "other", "v1.36.3+rke2r1")
    server.run(f"mkdir -p {IMAGES_DIR} && cp {other}/rke2-images.linux-amd64.tar.zst {IMAGES_DIR}/", check=True)
    server.run(": > /run/rke2fleet/units/rke2-server.service/journal.log", check=True)
    wait_until(lambda: "Scheduled restart job" in journal(server))
    assert error in journal(server) and is_active(server) == "activating"
    server.run(f"rm {IMAGES_DIR}/rke2-images.linux-amd64.tar.zst", check=True)

    # a registries.yaml mirror that answers /v2/ (here the installer's registry): the pull works
    server.run(f"cat > /etc/rancher/rke2/registries.yaml <<'EOF'\nmirrors:\n  docker.io:\n    endpoint:\n"
               f"      - http://127.0.3.254:2\n      - {installer.url}\nEOF", check=True)
    wait_until(lambda: is_active(server) == "active", timeout=30)
    assert f"Pulled runtime image {RUNTIME} from {installer.url}" in journal(server)
    assert server.run(f"cat {IMAGES_DIR}/runtime-image.txt").stdout.strip() == RUNTIME
    # pulled once: a restart without the mirror needs no registry
    server.run("rm /etc/rancher/rke2/registries.yaml", check=True)
    assert server.run("systemctl restart rke2-server", timeout=60).returncode == 0
    assert "bin and charts directories already exist; skipping extract" in journal(server)

    # an agent without images nor egress joins nothing: no Node
    join = f"server: https://{server.address}:9345\ntoken: s3cret"
    agent = rke2_host(installer, make_host, "noeg-ag", join, role="agent", nodeReadyDelay=0, **NO_DOCKER_IO)
    assert start(agent, "agent", block=False).returncode == 0
    wait_until(lambda: "Scheduled restart job" in journal(agent, "agent"))
    assert is_active(agent, "agent") == "activating"
    assert [n["metadata"]["name"] for n in json.loads(server.kubectl("get nodes -o json").stdout)["items"]] == ["noeg"]
    # a mirror that does not have the image: the last endpoint's error
    agent.run("cat > /etc/rancher/rke2/registries.yaml <<'EOF'\nmirrors:\n  docker.io:\n    endpoint:\n"
              f"      - {installer.url}/nothing-here\nconfigs: {{}}\nEOF", check=True)
    agent.run(": > /run/rke2fleet/units/rke2-agent.service/journal.log", check=True)
    wait_until(lambda: "connection refused" in journal(agent, "agent"))


def test_invalid_registries_yaml_keeps_the_node_waiting(installer, make_host):
    server = rke2_host(installer, make_host, "badreg", "token: s3cret", nodeReadyDelay=0)
    server.run("printf 'mirrors:\\n  docker.io: [endpoint\\n' > /etc/rancher/rke2/registries.yaml", check=True)
    assert start(server, block=False).returncode == 0
    wait_until(lambda: "Waiting to retrieve agent configuration; server is not ready: yaml: " in journal(server))
    assert "Using private registry config file at /etc/rancher/rke2/registries.yaml" in journal(server)
    assert is_active(server) == "activating"
    assert "Scheduled restart job" not in journal(server)  # not fatal: it waits
    # read again on every try (every 5 s): a fixed file lets it go on, without a restart
    server.run("printf 'mirrors:\\n  docker.io:\\n    endpoint: []\\n' > /etc/rancher/rke2/registries.yaml", check=True)
    wait_until(lambda: is_active(server) == "active", timeout=20)
    # the private-registry key names another file; a wrong type is an error too
    server.write_config("token: s3cret\nprivate-registry: /etc/rancher/rke2/other.yaml")
    server.run("echo 'mirrors: [a, b]' > /etc/rancher/rke2/other.yaml", check=True)
    server.run("systemctl restart --no-block rke2-server", check=True)
    wait_until(lambda: "cannot unmarshal list into map[string]registries.Mirror" in journal(server))


@pytest.mark.parametrize("endpoint, expected", [
    ("https://mirror.example:5000", ("https", "mirror.example", 5000, "")),
    ("http://10.0.0.1/v2", ("http", "10.0.0.1", 80, "")),
    ("registry.local/prefix/", ("https", "registry.local", 443, "/prefix")),
])
def test_endpoint_urls(endpoint, expected):
    import sys

    sys.path.insert(0, str(Path(rke2_images.__file__).parent))
    try:
        from rke2fleet_sandbox.standins import rke2_node

        assert rke2_node.split_url(endpoint) == expected
        assert rke2_node.registry_endpoints("docker.io", {"mirrors": {"*": {"endpoint": ["https://m"]}}}) == [
            "https://m", "https://registry-1.docker.io"]
    finally:
        sys.path.remove(str(Path(rke2_images.__file__).parent))
