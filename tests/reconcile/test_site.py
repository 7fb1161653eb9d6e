"""Air gap, registries, proxy, CIS and add-ons (reference §13): what is rendered, what the facts
say of it, and the plans that follow."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet.api import SpecError, parse_cluster_spec
from rke2fleet.artifacts import ArtifactCache, ArtifactError
from rke2fleet.reconcile.facts import facts_for, parse_facts
from rke2fleet.reconcile.hostfiles import MARKER
from rke2fleet.reconcile.hostprep import remove_script
from rke2fleet.reconcile.plan import Step, plan_node
from tests.reconcile.builders import CLUSTER, V36, cluster_spec, converged_facts, desired, node_spec

S = Step
CERT_MANAGER: dict[str, Any] = {
    "apiVersion": "helm.cattle.io/v1",
    "kind": "HelmChart",
    "metadata": {"name": "cert-manager"},
    "spec": {"repo": "https://charts.jetstack.io", "chart": "cert-manager", "version": "v1.16.2"},
}
REGISTRIES = {
    "mirrors": {"docker.io": {"endpoint": ["https://mirror.example:5000"]}},
    "configs": {"mirror.example:5000": {"authSecretRef": {"name": "mirror-auth"},
                                        "tls": {"caFile": "/etc/ssl/mirror-ca.pem"}}},
}  # fmt: skip
CREDS = {"mirror-auth": {"username": "puller", "password": "pull-s3cret"}}


def site_desired(role: str = "server", **spec: Any) -> Any:
    from rke2fleet.reconcile.desired import desired_node
    from tests.reconcile.builders import TOKEN

    return desired_node(cluster_spec(**spec), node_spec(role), name="n1", token=TOKEN, is_init=False,
                        join_address="rke2.example.com", credentials=CREDS)  # fmt: skip


def with_files(d: Any, files: dict[str, tuple[str, bool]], **kw: Any) -> Any:
    return dataclasses.replace(converged_facts(d, **kw), files=files)


def held(d: Any) -> dict[str, tuple[str, bool]]:
    return {f.path: (f.sha256, True) for f in d.files}


def test_registries_yaml_carries_mirrors_tls_and_the_secrets_credentials() -> None:
    d = site_desired(registries=REGISTRIES)
    (f,) = d.files
    assert f.path == "/etc/rancher/rke2/registries.yaml" and f.mode == 0o600 and f.restarts
    assert f.content.startswith(MARKER.encode())
    doc = yaml.safe_load(f.content)
    assert doc["mirrors"] == {"docker.io": {"endpoint": ["https://mirror.example:5000"]}}
    assert doc["configs"]["mirror.example:5000"] == {
        "auth": {"username": "puller", "password": "pull-s3cret"},
        "tls": {"ca_file": "/etc/ssl/mirror-ca.pem"},
    }
    assert "pull-s3cret" not in repr(f)  # never in a log line


def test_private_registry_key_moves_the_file() -> None:
    d = site_desired(registries=REGISTRIES, serverConfig={"private-registry": "/opt/reg.yaml"})
    assert [f.path for f in d.files] == ["/opt/reg.yaml"]


def test_proxy_environment_adds_what_rke2_needs_in_no_proxy() -> None:
    proxy = {"httpProxy": "http://proxy:3128", "httpsProxy": "http://proxy:3128", "noProxy": ["192.168.0.0/16"]}
    d = site_desired("agent", proxy=proxy, serverConfig={"cluster-cidr": "10.100.0.0/16"})
    (f,) = d.files
    assert f.path == "/etc/default/rke2-agent" and f.restarts
    env = dict(line.split("=", 1) for line in f.content.decode().splitlines()[1:])
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["NO_PROXY"].split(",") == [
        "127.0.0.0/8", "10.100.0.0/16", "10.43.0.0/16", ".svc", ".cluster.local", "rke2.example.com", "192.168.0.0/16",
    ]  # fmt: skip


def test_addons_go_to_servers_only() -> None:
    server = site_desired("server", addons=[CERT_MANAGER])
    manifests = "/var/lib/rancher/rke2/server/manifests"
    assert [f.path for f in server.files] == [f"{manifests}/rke2fleet-helmchart-cert-manager.yaml"]
    doc = yaml.safe_load(server.files[0].content)
    assert doc["metadata"] == {"namespace": "kube-system", "name": "cert-manager"} and not server.files[0].restarts
    assert site_desired("agent", addons=[CERT_MANAGER]).files == ()


def test_facts_report_managed_files_and_cis_preparation() -> None:
    d = site_desired("server", addons=[CERT_MANAGER], serverConfig={"profile": "cis"})
    script = facts_for(d)
    assert "cis_prepared" in script and "rke2fleet-*.yaml" in script and "/etc/rancher/rke2/registries.yaml" in script
    reg, env = "/etc/rancher/rke2/registries.yaml", "/etc/default/rke2-server"
    out = "\n".join([f"file={'ab' * 32} 1 {reg}", f"file={'cd' * 32} 0 {env}", "cis_prepared=no", "facts_end=1"])
    facts = parse_facts(out)
    assert facts.files == {reg: ("ab" * 32, True), env: ("cd" * 32, False)}
    assert facts.cis_prepared is False
    assert parse_facts("facts_end=1\n").cis_prepared is None


def test_a_registries_change_writes_the_file_and_restarts() -> None:
    d = site_desired(registries=REGISTRIES)
    facts = with_files(d, {d.files[0].path: ("00" * 32, True)})
    assert plan_node(d, facts).steps == (S.WRITE_FILES, S.RESTART, S.WAIT_READY)
    assert plan_node(d, with_files(d, held(d))).steps == ()


def test_an_addon_change_writes_without_a_restart() -> None:
    d = site_desired(addons=[CERT_MANAGER])
    assert plan_node(d, with_files(d, {})).steps == (S.WRITE_FILES,)


def test_a_dropped_file_is_removed_only_if_the_operator_wrote_it() -> None:
    d = site_desired()
    reg = "/etc/rancher/rke2/registries.yaml"
    addon = "/var/lib/rancher/rke2/server/manifests/rke2fleet-helmchart-x.yaml"
    assert plan_node(d, with_files(d, {reg: ("00" * 32, True)})).steps == (S.WRITE_FILES, S.RESTART, S.WAIT_READY)
    assert plan_node(d, with_files(d, {addon: ("00" * 32, True)})).steps == (S.WRITE_FILES,)
    assert plan_node(d, with_files(d, {reg: ("00" * 32, False)})).steps == ()  # the user's own file
    script = remove_script([reg])
    assert "grep -q '^# Managed by rke2fleet'" in script and "rm -f" in script


def test_cis_preparation_comes_after_the_install_and_before_the_first_start() -> None:
    d = site_desired(serverConfig={"profile": "cis"})
    assert d.cis
    fresh = dataclasses.replace(converged_facts(d, version=None, config_sha256=None, server=("disabled", "inactive")),
                                cis_prepared=False)  # fmt: skip
    assert plan_node(d, fresh).steps == (S.INSTALL, S.PREPARE_HOST, S.WRITE_CONFIG, S.ENABLE, S.START, S.WAIT_READY)
    assert plan_node(d, dataclasses.replace(converged_facts(d), cis_prepared=True)).steps == ()
    unprepared = site_desired(serverConfig={"profile": "cis"}, prepareHosts=False)
    assert not unprepared.cis and plan_node(unprepared, converged_facts(unprepared)).steps == ()


def test_airgap_needs_a_version_and_a_usable_url() -> None:
    airgap = {"airgap": {"artifactsURL": "file:///srv/rke2/{version}"}}
    d = desired(cluster=cluster_spec(install=airgap))
    assert d.airgap_url == f"file:///srv/rke2/{V36}"
    with pytest.raises(SpecError, match=r"air-gapped install needs spec\.version"):
        parse_cluster_spec({**CLUSTER, "version": None, "channel": "stable", "install": airgap})
    with pytest.raises(SpecError, match="file:///"):
        cluster_spec(install={"airgap": {"artifactsURL": "ftp://mirror/rke2"}})


def test_addons_must_be_helm_objects_listed_once() -> None:
    with pytest.raises(SpecError, match="HelmChart or HelmChartConfig"):
        cluster_spec(addons=[{**CERT_MANAGER, "kind": "Deployment"}])
    with pytest.raises(SpecError, match="listed twice"):
        cluster_spec(addons=[CERT_MANAGER, CERT_MANAGER])


def _bundle(directory: Path, *, corrupt: str | None = None) -> str:
    directory.mkdir()
    assets = {"rke2.linux-amd64.tar.gz": b"tarball", "rke2-images.linux-amd64.tar.zst": b"images"}
    sums = "".join(f"{hashlib.sha256(v).hexdigest()}  {k}\n" for k, v in assets.items())
    (directory / "sha256sum-amd64.txt").write_text(sums)
    (directory / "install.sh").write_text("#!/bin/sh\n")
    for name, data in assets.items():
        (directory / name).write_bytes(data + (b"!" if name == corrupt else b""))
    return f"file://{directory}"


async def test_artifacts_are_checked_against_the_releases_checksums(tmp_path: Path) -> None:
    cache = ArtifactCache(str(tmp_path / "cache"))
    bundle = await cache.bundle(_bundle(tmp_path / "good"), "amd64")
    assert bundle.images == "rke2-images.linux-amd64.tar.zst"
    assert bundle.names == ["install.sh", "sha256sum-amd64.txt", "rke2.linux-amd64.tar.gz", bundle.images]
    with pytest.raises(ArtifactError, match="does not match") as bad:
        await cache.bundle(_bundle(tmp_path / "bad", corrupt="rke2-images.linux-amd64.tar.zst"), "amd64")
    assert bad.value.reason == "ArtifactInvalid"
    with pytest.raises(ArtifactError, match="not found") as missing:
        await cache.bundle(f"file://{tmp_path}/nowhere", "amd64")
    assert missing.value.reason == "ArtifactMissing"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("registries", {"mirrors": {"docker.io/x y": {"endpoint": ["https://m"]}}}, "registry host"),
        ("registries", {"mirrors": {"docker.io": {"endpoint": ["ftp://m"]}}}, "http"),
        ("registries", {"mirrors": {"docker.io": {"endpoint": []}}}, "at least 1"),
        ("registries", {"configs": {"m:5000": {"tls": {"caFile": "relative.pem"}}}}, "absolute path"),
        ("registries", {"configs": {"m:5000": {"authSecretRef": {"name": "Bad_Name"}}}}, "DNS"),
        ("proxy", {"httpProxy": "proxy:3128"}, "http"),
        ("proxy", {"noProxy": ["a,b"]}, "commas"),
        ("proxy", {"noProxy": ["$(reboot)"]}, "quotes"),
    ],
)
def test_bad_registries_and_proxy_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        cluster_spec(**{field: value})


def test_a_bastion_needs_a_valid_pinned_key() -> None:
    ssh = {"privateKeySecretRef": {"name": "k", "key": "k"}}
    with pytest.raises(SpecError, match="hostKey"):
        cluster_spec(ssh={**ssh, "bastion": {"address": "jump.example"}})
    with pytest.raises(SpecError, match="OpenSSH public key"):
        cluster_spec(ssh={**ssh, "bastion": {"address": "jump.example", "hostKey": "not-a-key"}})
    with pytest.raises(SpecError, match="hostname"):
        cluster_spec(ssh={**ssh, "bastion": {"address": "ssh://jump", "hostKey": "x"}})
