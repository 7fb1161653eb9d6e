"""What the stand-ins cost: light (the default, tuned to cost about what the real tools cost where
they run in every pass) or heavy (never cheaper than stock hosts).

Chosen by the environment of the process that lays out the hosts (`Sandbox.up`, the stand-in
tests' hosts), read once per host and written into its host.json and its `systemctl` shim:

  ``RKE2FLEET_SANDBOX_HEAVY=1``            heavy stand-ins:
      * every ``systemctl`` verb runs the Python stand-in (no shell fast path for the query verbs:
        ~15-20 ms of CPU a call, where the compiled systemctl spends ~2-5 ms with systemd's share);
      * the rke2 daemon waits ``startupDelay`` seconds (its role's) before it reports READY, as a
        real rke2 takes seconds to bring up containerd, the kubelet and (servers) etcd and the API
        server; a sleep, so the delay costs no CPU of the shared machine;
      * the install script waits ``installDelay`` seconds after unpacking (a real install downloads
        and checks a tarball of tens of MB).
  ``RKE2FLEET_SANDBOX_STARTUP_DELAY=S[,A]`` the servers' [and agents'] start-up delay in seconds
      (heavy default 3,2; also honoured without HEAVY).
  ``RKE2FLEET_SANDBOX_INSTALL_DELAY=S``    the install delay (heavy default 1; also without HEAVY).

The ``start-delay`` fault switch adds to the start-up delay.
"""

from __future__ import annotations

import os
from typing import Any

HEAVY_ENV = "RKE2FLEET_SANDBOX_HEAVY"
STARTUP_ENV = "RKE2FLEET_SANDBOX_STARTUP_DELAY"
INSTALL_ENV = "RKE2FLEET_SANDBOX_INSTALL_DELAY"
HEAVY_STARTUP = {"server": 3.0, "agent": 2.0}
HEAVY_INSTALL = 1.0


def heavy() -> bool:
    return os.environ.get(HEAVY_ENV, "") not in ("", "0")


def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"{what}: {text!r} is negative")
    return value


def host_json_costs() -> dict[str, Any]:
    """The host.json keys of the chosen costs (none in the light default)."""
    out: dict[str, Any] = {}
    startup = dict(HEAVY_STARTUP) if heavy() else {}
    if os.environ.get(STARTUP_ENV):
        parts = os.environ[STARTUP_ENV].split(",")
        server = _seconds(parts[0], STARTUP_ENV)
        startup = {"server": server, "agent": _seconds(parts[1], STARTUP_ENV) if len(parts) > 1 else server}
    if startup:
        out["startupDelay"] = startup
    install = HEAVY_INSTALL if heavy() else 0.0
    if os.environ.get(INSTALL_ENV):
        install = _seconds(os.environ[INSTALL_ENV], INSTALL_ENV)
    if install:
        out["installDelay"] = install
    if heavy():
        out["heavyStandins"] = True
    return out
