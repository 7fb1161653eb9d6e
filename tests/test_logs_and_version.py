"""`--log-format json` writes one JSON object per line (with the object Kopf names), and
`rke2fleet --version` prints the installed version."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from rke2fleet.logs import JsonFormatter


def test_json_lines_carry_level_logger_message_and_object() -> None:
    record = logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, "node %s failed", ("s1",), None)
    record.k8s_ref = {"kind": "RKE2Node", "namespace": "fleet", "name": "s1", "uid": "u"}
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "warning" and doc["logger"] == "kopf.objects" and doc["message"] == "node s1 failed"
    assert doc["object"] == {"kind": "RKE2Node", "namespace": "fleet", "name": "s1"}
    assert doc["time"].endswith("+00:00")


def test_an_exception_stays_inside_its_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("rke2fleet", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    doc = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in doc["exception"]


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "rke2fleet", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("rke2fleet 0.")
