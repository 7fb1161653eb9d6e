"""Helpers the stand-in tests share: an installed, configured server host, and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

V = "v1.35.7+rke2r1"


def installed_server(installer: Any, make_host: Any, name: str) -> Any:
    """A host with RKE2 `V` installed by the sandbox installer and a config.yaml with a token."""
    host = make_host(name)
    host.install(installer.url, f"INSTALL_RKE2_VERSION={V}")
    host.write_config("token: s3cret")
    return host


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
