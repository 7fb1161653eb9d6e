"""Shared pieces of the API: base models, value types with their rules, durations.

Each constrained type is `Annotated[...]` with a validator (custom message, no value
echo) and, where the rule is expressible, the same rule as JSON-schema keywords so
that the generated CRD enforces it too.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from rke2fleet.api.errors import rule_error

# ---------------------------------------------------------------------------- base models


class SpecModel(BaseModel):
    """Spec objects: strict types (as the API server would enforce), unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        frozen=False,
    )


class StatusModel(BaseModel):
    """Status objects: written by the operator, read leniently (unknown fields ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )


# ------------------------------------------------------------------------------ durations

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(s: str) -> float:
    """Seconds in a Kubernetes/Go duration such as `5m`, `300s`, `1h30m`, `1.5s`, `250ms`.

    Raises ValueError (without echoing the input) when `s` is not in that form.
    """
    if not isinstance(s, str) or not re.fullmatch(DURATION_PATTERN, s):
        raise ValueError("must be a duration such as 30s, 5m or 1h30m (units h, m, s, ms)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(s))


def _check_duration(v: str) -> str:
    try:
        seconds = parse_duration(v)
    except ValueError as exc:
        raise rule_error(str(exc)) from None
    if seconds <= 0:
        raise rule_error("must be a positive duration")
    return v


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(json_schema_extra={"pattern": DURATION_PATTERN}),
]

# -------------------------------------------------------------------------------- versions

VERSION_PATTERN = r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-rc[1-9][0-9]*)?\+rke2r[1-9][0-9]*$"
CHANNEL_PATTERN = r"^(stable|latest|testing|v[1-9][0-9]*\.(0|[1-9][0-9]*))$"
_VERSION_RE = re.compile(VERSION_PATTERN)


def _check_version(v: str) -> str:
    if not _VERSION_RE.fullmatch(v):
        raise rule_error(
            "must be an RKE2 release such as v1.36.3+rke2r1 (release candidate: v1.36.4-rc1+rke2r1)"
        )
    return v


def _check_channel(v: str) -> str:
    if not re.fullmatch(CHANNEL_PATTERN, v):
        raise rule_error("must be stable, latest, testing or a minor line such as v1.36")
    return v


RKE2Version = Annotated[
    str, AfterValidator(_check_version), Field(json_schema_extra={"pattern": VERSION_PATTERN})
]
Channel = Annotated[
    str, AfterValidator(_check_channel), Field(json_schema_extra={"pattern": CHANNEL_PATTERN})
]


def version_key(version: str) -> tuple[int, int, int, int, int]:
    """Sort key for RKE2 versions: (major, minor, patch, rc-or-large-for-GA, rke2rN).

    A release candidate sorts before its GA release. Raises ValueError for other strings.
    """
    m = _VERSION_RE.fullmatch(version)
    if not m:
        raise ValueError("not an RKE2 release version")
    major, minor, patch = (int(x) for x in m.group(1, 2, 3))
    rc = int(m.group(4)[3:]) if m.group(4) else 1_000_000
    build = int(version.rsplit("rke2r", 1)[1])
    return major, minor, patch, rc, build


# ---------------------------------------------------------------------- names and addresses

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_PATTERN = rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$"
DNS1123_LABEL_PATTERN = rf"^{_DNS_LABEL}$"
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")


def is_dns1123_subdomain(v: str) -> bool:
    return len(v) <= 253 and re.fullmatch(DNS1123_SUBDOMAIN_PATTERN, v) is not None


def is_dns1123_label(v: str) -> bool:
    return len(v) <= 63 and re.fullmatch(DNS1123_LABEL_PATTERN, v) is not None


def is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def is_hostname(v: str) -> bool:
    """RFC 1123 host name (letters, digits, hyphens; dot-separated labels), not an IP-like string."""
    if not v or len(v) > 253:
        return False
    labels = v.rstrip(".").split(".") if v != "." else []
    if not labels or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()  # "10.0.0.300" is a broken IP, not a host name


def _check_host(v: str) -> str:
    if not v:
        raise rule_error("must not be empty: a hostname or IP address")
    if "://" in v or "/" in v:
        raise rule_error("must be a hostname or IP address, not a URL (no scheme, port or path)")
    if not (is_ip(v) or is_hostname(v)):
        raise rule_error("must be a hostname (RFC 1123) or an IP address, without a port")
    return v


def _check_ip(v: str) -> str:
    if not is_ip(v):
        raise rule_error("must be an IPv4 or IPv6 address")
    return v


def _check_subdomain(v: str) -> str:
    if not is_dns1123_subdomain(v):
        raise rule_error(
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return v


def _check_secret_key(v: str) -> str:
    if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", v):
        raise rule_error(
            "must be a Secret data key: letters, digits, '-', '_' or '.', at most 253 characters"
        )
    return v


def _check_port(v: int) -> int:
    if not 1 <= v <= 65535:
        raise rule_error("must be between 1 and 65535")
    return v


def _check_unix_user(v: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", v):
        raise rule_error(
            "must be a Unix user name: lowercase letters, digits, '_' or '-', at most 32 characters"
        )
    return v


def _check_http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in v):
        raise rule_error("must be an http:// or https:// URL")
    return v


def _check_http_url_or_empty(v: str) -> str:
    return v if v == "" else _check_http_url(v)


Host = Annotated[str, AfterValidator(_check_host), Field(min_length=1, max_length=253)]
IPAddress = Annotated[str, AfterValidator(_check_ip), Field(max_length=45)]
DNSSubdomain = Annotated[str, AfterValidator(_check_subdomain), Field(max_length=253)]
Port = Annotated[int, AfterValidator(_check_port), Field(json_schema_extra={"minimum": 1, "maximum": 65535})]
UnixUser = Annotated[str, AfterValidator(_check_unix_user), Field(max_length=32)]
HttpURL = Annotated[str, AfterValidator(_check_http_url), Field(max_length=2048)]
HttpURLOrEmpty = Annotated[str, AfterValidator(_check_http_url_or_empty), Field(max_length=2048)]
SecretDataKey = Annotated[str, AfterValidator(_check_secret_key), Field(max_length=253)]

# ------------------------------------------------------------------------ ssh host keys

HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def host_key_problem(line: str) -> str | None:
    """Why `line` is not an OpenSSH public key line `<type> <base64> [comment]`, or None."""
    fields = line.strip().split(None, 2)
    if len(fields) < 2:
        return "must be an OpenSSH public key line: '<type> <base64 key> [comment]'"
    key_type, blob_b64 = fields[0], fields[1]
    if key_type not in HOST_KEY_TYPES:
        return "key type must be one of " + ", ".join(HOST_KEY_TYPES)
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        return "key data is not valid base64"
    if len(blob) < 4:
        return "key data is too short to be an SSH public key"
    (n,) = struct.unpack(">I", blob[:4])
    if n > len(blob) - 4 or blob[4 : 4 + n] != key_type.encode():
        return "key data does not encode the key type named in front of it"
    return None


def _check_host_key(v: str) -> str:
    problem = host_key_problem(v)
    if problem:
        raise rule_error(problem)
    return v.strip()


OpenSSHPublicKey = Annotated[str, AfterValidator(_check_host_key), Field(max_length=16384)]

# ------------------------------------------------------------------------ shared objects


class SecretKeySelector(SpecModel):
    """A key of a Secret in the namespace of the referring object."""

    name: DNSSubdomain = Field(description="Name of the Secret, in the same namespace as this object.")
    key: SecretDataKey = Field(description="Key inside the Secret's data.")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes-style condition (`type` is unique within the list)."""

    type: str = Field(description="Condition type, e.g. Ready, Installed, Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase machine-readable reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail (never contains secrets).")
    last_transition_time: str | None = Field(
        default=None, description="RFC 3339 time when the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed for."
    )


def optional_empty_as_none(v: Any) -> Any:
    """Manifests often spell "not set" as an empty string (`nodeIP: ""`)."""
    return None if v == "" else v
