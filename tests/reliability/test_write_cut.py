"""The SSH connection cut while config.yaml is written: the file is the old or the new content,
never a mix, and the next write completes it without leaving a temporary file behind.

Through `SSHPool.write_file` (the operator's only way to write a host file) against a real sshd:
many writes, each cut at a random moment by SIGKILLing the host's sshd session processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time

import pytest

from rke2fleet.hostaccess import HostAccessError, SSHPool
from rke2fleet.reconcile.paths import CONFIG_PATH
from rke2fleet_sandbox.state import SandboxHost
from rke2fleet_sandbox.world import Sandbox

from .hostside import drop_sessions, sh, target_for

pytestmark = [pytest.mark.sandbox]

ROUNDS = 25
SIZE = 1 << 20  # large enough that a write takes a window a cut can land in


def remote_state(sb: Sandbox, host: SandboxHost) -> tuple[str, list[str]]:
    """(sha256 of config.yaml or 'absent', temporary files: name mode owner).

    /etc/rancher is private to the host. The sudo user's home is the machine's, shared with every
    sandbox running in parallel: there only this host's uploads of config.yaml are ours to judge
    (their name carries a hash of the host and the path)."""
    tag = hashlib.sha256(f"{host.address}:{host.port} {CONFIG_PATH}".encode()).hexdigest()[:8]
    out = sh(
        sb,
        host,
        f"sha256sum {CONFIG_PATH} 2>/dev/null | cut -d' ' -f1 || true; echo --;"
        " find /etc/rancher/rke2 -maxdepth 1 -name '.*rke2fleet*' -printf '%f %m %u\\n' 2>/dev/null || true;"
        f" find ~fleet -maxdepth 1 -name '.rke2fleet-upload-{tag}-*' -printf '%f %m %u\\n' 2>/dev/null || true",
    )
    head, _, tail = out.partition("--\n")
    return head.strip() or "absent", [ln for ln in tail.splitlines() if ln.strip()]


@pytest.mark.parametrize("login", ["root", "sudo"])
async def test_cut_write_is_old_or_new_and_next_write_completes(hosts_sandbox: Sandbox, login: str) -> None:
    sb = hosts_sandbox
    host = next(h for h in sb.hosts if (h.user == "root") == (login == "root"))
    target = target_for(sb, host)
    sh(sb, host, f"mkdir -p /etc/rancher/rke2 && rm -f {CONFIG_PATH}")
    rng = random.Random(int.from_bytes(os.urandom(4)))
    pool = SSHPool()
    try:
        # How long one uncut write takes: the cuts land anywhere from before it starts to past its end.
        # Timed on the open connection (the first write also connects, a cost the cut writes do
        # not have: a window that long lets most cuts land after the write is done).
        first = os.urandom(SIZE)
        await pool.write_file(target, CONFIG_PATH, first)
        times = []
        for _ in range(3):
            first = os.urandom(SIZE)
            t0 = time.monotonic()
            await pool.write_file(target, CONFIG_PATH, first)
            times.append(time.monotonic() - t0)
        window = sorted(times)[1]
        old = hashlib.sha256(first).hexdigest()
        outcomes = {"cut": 0, "completed before the cut": 0}
        leftovers_after_cut = 0
        for _ in range(ROUNDS):
            data = os.urandom(SIZE)
            new = hashlib.sha256(data).hexdigest()
            task = asyncio.create_task(pool.write_file(target, CONFIG_PATH, data))
            await asyncio.sleep(rng.uniform(0, window * 0.7))
            await asyncio.to_thread(drop_sessions, sb, host)
            try:
                await task
                outcomes["completed before the cut"] += 1
            except HostAccessError:
                outcomes["cut"] += 1
            sha, temps = remote_state(sb, host)
            assert sha in (old, new), f"config.yaml is neither the old nor the new content ({sha})"
            for line in temps:  # a temporary file a cut left behind is never readable by others
                _, mode, owner = line.split()
                assert mode == "600" and owner in ("root", "fleet"), line
            leftovers_after_cut += len(temps)
            # The next pass (a write of the same desired content) completes it and tidies up.
            await pool.write_file(target, CONFIG_PATH, data)
            sha, temps = remote_state(sb, host)
            assert sha == new
            assert temps == [], f"temporary files left after the next write: {temps}"
            assert sh(sb, host, f"stat -c '%a %U' {CONFIG_PATH}").split() == ["600", "root"]
            old = new
        print(
            f"\n{login}: {ROUNDS} writes of {SIZE} B cut at random (write takes {window * 1000:.0f} ms): "
            f"{outcomes}; temporary files left by cuts: {leftovers_after_cut}, after the next write: 0"
        )
        assert outcomes["cut"] >= ROUNDS // 6, f"too few writes were actually cut: {outcomes}"
    finally:
        await pool.close()
