"""What a site around the hosts needs (reference §13): an air gap, private registries, a proxy,
add-on manifests, and a bastion in front of the hosts."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, WithJsonSchema

from rke2fleet.api.common import (
    DNSSubdomain,
    Host,
    HttpURL,
    HttpURLOrEmpty,
    OpenSSHPublicKey,
    Port,
    SecretKeySelector,
    SpecModel,
    UnixUser,
    is_dns1123_label,
    is_dns1123_subdomain,
)
from rke2fleet.api.errors import rule_error


def _check_artifacts_url(v: str) -> str:
    parts = urlsplit(v.replace("{version}", "v"))
    if parts.scheme in ("http", "https") and parts.netloc and not any(c.isspace() for c in v):
        return v
    if parts.scheme == "file" and not parts.netloc and parts.path.startswith("/"):
        return v
    raise rule_error("must be an http://, https:// or file:/// URL (optionally with {version} in it)")


ArtifactsURL = Annotated[str, AfterValidator(_check_artifacts_url), Field(min_length=1, max_length=2048)]


class AirgapSpec(SpecModel):
    """Install from release assets the operator reaches and the hosts need not."""

    artifacts_url: ArtifactsURL = Field(
        alias="artifactsURL",
        description="Base URL (http, https, or file:/// in the operator's filesystem, e.g. a mounted "
        "volume) of one release's assets under their upstream names: install.sh, "
        "rke2.linux-<arch>.tar.gz, sha256sum-<arch>.txt, rke2-images.linux-<arch>.tar.zst. "
        "'{version}' in it is replaced with spec.version (one mirror for every release). The "
        "operator checks them against the sha256sum file, pushes them to each host once and "
        "installs with INSTALL_RKE2_ARTIFACT_PATH.",
    )


class RegistryMirror(SpecModel):
    endpoint: list[HttpURL] = Field(
        min_length=1, max_length=20, description="Mirror endpoints, tried in order (then the registry itself)."
    )
    rewrite: dict[str, str] = Field(
        default_factory=dict, description="Image name rewrites for this mirror (regular expression: replacement)."
    )


def _check_host_path(v: str) -> str:
    if not v.startswith("/") or any(c.isspace() for c in v) or "\x00" in v:
        raise rule_error("must be an absolute path on the hosts")
    return v


HostPath = Annotated[str, AfterValidator(_check_host_path), Field(max_length=1024)]


class RegistryTLS(SpecModel):
    ca_file: HostPath | None = Field(default=None, description="CA bundle on the hosts.")
    cert_file: HostPath | None = Field(default=None, description="Client certificate on the hosts.")
    key_file: HostPath | None = Field(default=None, description="Client key on the hosts.")
    insecure_skip_verify: bool = Field(default=False, description="Do not verify the registry's certificate.")


class RegistryAuthRef(SpecModel):
    name: DNSSubdomain = Field(
        description="Secret in this namespace with `username` and `password` (or `auth`, or `identitytoken`)."
    )


class RegistryConfig(SpecModel):
    auth_secret_ref: RegistryAuthRef | None = Field(
        default=None, description="Credentials for this registry, from a Secret (never from the spec)."
    )
    tls: RegistryTLS | None = Field(default=None, description="TLS settings for this registry.")


def _check_registry_host(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.*-]+(:[0-9]{1,5})?", v):
        raise rule_error("must be a registry host name, optionally with :port (or '*')")
    return v


RegistryHost = Annotated[str, AfterValidator(_check_registry_host), Field(max_length=253)]


class RegistriesSpec(SpecModel):
    """Rendered to registries.yaml (mode 0600) on every node; RKE2 reads it at start, so a change
    restarts the nodes one at a time."""

    mirrors: dict[RegistryHost, RegistryMirror] = Field(
        default_factory=dict, description="Per registry (e.g. docker.io, or '*'), the mirrors to pull from."
    )
    configs: dict[RegistryHost, RegistryConfig] = Field(
        default_factory=dict, description="Per registry or mirror host: credentials and TLS."
    )


def _check_no_proxy(v: str) -> str:
    if not v or any(c.isspace() or c in ",\"'\\$`" for c in v):
        raise rule_error("must be one host, domain, IP or CIDR without spaces, commas or quotes")
    return v


NoProxyEntry = Annotated[str, AfterValidator(_check_no_proxy), Field(max_length=253)]


class ProxySpec(SpecModel):
    """Written to /etc/default/rke2-server or rke2-agent (read by the unit at start); NO_PROXY gets
    127.0.0.0/8, the cluster and service CIDRs, .svc, .cluster.local and the registration address
    added, as RKE2's docs require."""

    http_proxy: HttpURLOrEmpty = Field(default="", description="HTTP_PROXY.")
    https_proxy: HttpURLOrEmpty = Field(default="", description="HTTPS_PROXY.")
    no_proxy: list[NoProxyEntry] = Field(
        default_factory=list, max_length=200,
        description="Extra NO_PROXY entries: add the nodes' own network here.",
    )  # fmt: skip


ADDON_KINDS = ("HelmChart", "HelmChartConfig")
ADDON_API_VERSION = "helm.cattle.io/v1"
MAX_ADDON_BYTES = 256 * 1024


def _check_addon(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise rule_error("must be a Kubernetes object")
    if v.get("apiVersion") != ADDON_API_VERSION or v.get("kind") not in ADDON_KINDS:
        raise rule_error(f"must be a {ADDON_API_VERSION} HelmChart or HelmChartConfig")
    meta = v.get("metadata")
    if not isinstance(meta, dict) or not is_dns1123_subdomain(str(meta.get("name") or "")):
        raise rule_error("metadata.name must be a DNS subdomain name")
    if "namespace" in meta and not is_dns1123_label(str(meta["namespace"])):
        raise rule_error("metadata.namespace must be a DNS label")
    if not isinstance(v.get("spec"), dict):
        raise rule_error("spec must be an object")
    if len(repr(v)) > MAX_ADDON_BYTES:
        raise rule_error(f"must be smaller than {MAX_ADDON_BYTES // 1024} KiB")
    return v


Addon = Annotated[
    dict[str, Any],
    AfterValidator(_check_addon),
    WithJsonSchema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-embedded-resource": True,
            "x-kubernetes-validations": [
                {
                    "rule": "self.apiVersion == 'helm.cattle.io/v1' && self.kind in ['HelmChart', 'HelmChartConfig']",
                    "message": "must be a helm.cattle.io/v1 HelmChart or HelmChartConfig",
                }
            ],
            "description": "A HelmChart or HelmChartConfig, as you would kubectl apply it to the RKE2 cluster.",
        }
    ),
]


class BastionSpec(SpecModel):
    """An SSH jump host: every connection to this cluster's hosts is tunnelled through one
    connection to it (as `ssh -J`)."""

    address: Host = Field(description="Bastion's address (hostname or IP).")
    port: Port = Field(default=22, description="Bastion's SSH port.")
    user: UnixUser = Field(default="root", description="Login user on the bastion (it runs nothing there).")
    private_key_secret_ref: SecretKeySelector | None = Field(
        default=None, description="Key for the bastion; default: the cluster's spec.ssh.privateKeySecretRef."
    )
    host_key: OpenSSHPublicKey = Field(
        description="The bastion's pinned host key (OpenSSH public key line); no other key is accepted."
    )
