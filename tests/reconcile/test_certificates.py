"""Reading certificate dates from `rke2 certificate check` (JSON since the v1.33 lines, log lines
before) and deciding when to check and when to rotate."""

from __future__ import annotations

import datetime
import json

import pytest

from rke2fleet.api.status import CertificatesStatus
from rke2fleet.reconcile.certificates import check_due, parse_check, rotation_due

NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)


def test_json_gives_the_first_to_expire_and_skips_not_yet_valid() -> None:
    doc = {"Certificates": [
        {"Filename": "client-kubelet.crt", "ExpiryTime": "2027-12-04T18:56:52Z", "Status": "OK"},
        {"Filename": "serving-kubelet.crt", "ExpiryTime": "2027-02-01T00:00:00.123456789Z", "Status": "WARNING"},
        {"Filename": "future.crt", "ExpiryTime": "2026-01-01T00:00:00Z", "Status": "NOT YET VALID"},
    ]}  # fmt: skip
    found = parse_check(json.dumps(doc))
    assert found is not None and found.certificate == "serving-kubelet.crt"
    assert found.not_after == datetime.datetime(2027, 2, 1, tzinfo=datetime.UTC)
    assert parse_check('{"Certificates": null}') is None


def test_log_lines_of_releases_without_output_json() -> None:
    out = "\n".join([
        'time="2027-01-01T00:00:00Z" level=info msg="Server detected, checking agent and server certificates"',
        'time="2027-01-01T00:00:00Z" level=info msg="/var/lib/rancher/rke2/server/tls/client-admin.crt: '
        'certificate system:admin (ClientAuth) is ok, expires at 2027-12-04T18:56:52Z"',
        'time="2027-01-01T00:00:00Z" level=warning msg="/var/lib/rancher/rke2/agent/serving-kubelet.crt: '
        'certificate node-1 will expire within 90 days at 2027-02-01T00:00:00+01:00"',
        'time="2027-01-01T00:00:00Z" level=error msg="/var/lib/rancher/rke2/agent/x.crt: certificate x is not '
        'valid before 2026-01-01T00:00:00Z"',
    ])  # fmt: skip
    found = parse_check(out)
    assert found is not None and found.certificate == "serving-kubelet.crt"
    assert found.not_after == datetime.datetime(2027, 1, 31, 23, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="no certificate"):
        parse_check("Incorrect Usage: flag provided but not defined: -output")


def test_when_to_check_and_when_to_rotate() -> None:
    assert check_due(None, "24h", NOW)
    seen = CertificatesStatus(checked_at="2026-12-31T12:00:00Z", not_after="2027-02-15T00:00:00Z", certificate="a.crt")
    assert not check_due(seen, "24h", NOW) and check_due(seen, "1h", NOW)
    assert rotation_due(seen, 30, NOW) is None  # 45 days left
    why = rotation_due(seen, 60, NOW)
    assert why is not None and "a.crt" in why and "within 60 days" in why
    assert rotation_due(CertificatesStatus(checked_at="2026-12-31T12:00:00Z"), 60, NOW) is None  # unknown dates
