"""Leaf certificates (reference §11): read their dates with `rke2 certificate check --output json`
(one command, about once a day per node), and decide when to rotate them (`rke2 certificate
rotate` with the service stopped, then a start: RKE2 issues new ones as it starts)."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rke2fleet.api import parse_duration
from rke2fleet.api.conditions import parse_time
from rke2fleet.api.status import CertificatesStatus

# `--output json` came with the v1.33 lines (k3s PR #12226); older releases only log one line per
# certificate, so they are asked again without it. One command either way.
CHECK_SCRIPT = "rke2 certificate check --output json 2>/dev/null || rke2 certificate check 2>&1\n"
CHECK_MARK = "--certificates--"
CHECK_STATUS = "--certificates-status--"


def with_check(script: str) -> str:
    """`script` (the facts read after a start), then the certificate check in the same command:
    RKE2 renews the certificates close to expiry as it starts, before it reports ready."""
    return f'{script.rstrip()}\necho {CHECK_MARK}\n{CHECK_SCRIPT}echo "{CHECK_STATUS}$?"\n'


def split_check(output: str) -> tuple[str, tuple[int, str] | None]:
    """`with_check`'s output: the script's own, and (exit status, output) of the check, when it ran."""
    head, mark, tail = output.partition(f"{CHECK_MARK}\n")
    body, status, rc = tail.rpartition(CHECK_STATUS)
    if not mark or not status:
        return output, None
    try:
        return head, (int(rc.strip()), body)
    except ValueError:
        return head, None


NOT_YET_VALID = "NOT YET VALID"  # its "ExpiryTime" is its notBefore (k3s pkg/cli/cert)
# The logged form: `<file>: certificate <subject> [(<usages>)] is ok, expires at <RFC 3339>`.
LOGGED = re.compile(
    r"(?P<file>[^\s\"]+): certificate .*? (?:is ok, expires at|will expire within \d+ days at|expired at) "
    r"(?P<at>\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:\d\d))"
)


@dataclass(frozen=True)
class Expiry:
    not_after: datetime.datetime
    certificate: str


def rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_check(stdout: str) -> Expiry | None:
    """The certificate that expires first, from `rke2 certificate check` (JSON, or its log lines)."""
    if not stdout.lstrip().startswith("{"):
        logged = [Expiry(parse_time(m["at"]), m["file"].rsplit("/", 1)[-1]) for m in LOGGED.finditer(stdout)]
        if not logged:
            raise ValueError("rke2 certificate check listed no certificate")
        return min(logged, key=lambda e: e.not_after)
    try:
        certs = json.loads(stdout)["Certificates"] or []
        dated = [
            Expiry(parse_time(str(c["ExpiryTime"])), str(c.get("Filename") or "?"))
            for c in certs
            if c.get("Status") != NOT_YET_VALID
        ]
    except (ValueError, KeyError, TypeError):
        raise ValueError("rke2 certificate check gave no readable JSON") from None
    return min(dated, key=lambda e: e.not_after) if dated else None


def certificates_of(status: Mapping[str, Any]) -> CertificatesStatus | None:
    """What a node's status says of its certificates (None: never read)."""
    raw = status.get("certificates")
    return CertificatesStatus.model_validate(raw) if isinstance(raw, dict) else None


def check_due(status: CertificatesStatus | None, interval: str, now: datetime.datetime) -> bool:
    if status is None or not status.checked_at:
        return True
    return (now - parse_time(status.checked_at)).total_seconds() >= parse_duration(interval)


def rotation_due(status: CertificatesStatus | None, before_days: int, now: datetime.datetime) -> str | None:
    """Why the node's certificates are to be rotated now (None: not yet, or not known)."""
    if status is None or not status.not_after:
        return None
    left = parse_time(status.not_after) - now
    if left.total_seconds() > before_days * 86400:
        return None
    return f"{status.certificate} expires {status.not_after}, within {before_days} days"
