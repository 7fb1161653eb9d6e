"""SSHPool against a real sshd: reuse, concurrency, timeouts, unreachable hosts, quoting, redaction."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncssh
import pytest

from rke2fleet.hostaccess import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    HostTarget,
    HostUnreachable,
    Outcome,
    SSHPool,
)

from .conftest import SandboxSshd, make_target


async def test_one_connection_serves_many_commands(pool: SSHPool, target: HostTarget, sshd: SandboxSshd) -> None:
    for i in range(25):
        result = await pool.run(target, ["echo", str(i)])
        assert result.stdout == f"{i}\n"
    await pool.run(target, script="echo from-script")
    assert await pool.read_file(target, "/etc/hostname") is not None
    assert pool.connects == 1
    assert sshd.accepted_logins() == 1


async def test_reused_connection_is_fast(pool: SSHPool, target: HostTarget) -> None:
    await pool.run(target, ["true"])
    started = time.monotonic()
    for _ in range(20):
        await pool.run(target, ["true"])
    per_exec = (time.monotonic() - started) / 20
    print(f"per exec on a reused connection: {per_exec * 1000:.1f} ms")
    assert per_exec < 0.05


async def test_thirty_concurrent_commands_stay_below_max_sessions(
    pool: SSHPool, target: HostTarget, sshd: SandboxSshd
) -> None:
    results = await asyncio.gather(
        *(pool.run(target, script=f"sleep 0.2; echo {i}") for i in range(30))
    )
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(30)]
    assert pool.connects == 1
    assert sshd.accepted_logins() == 1


async def test_without_the_bound_sshd_refuses_sessions(target: HostTarget) -> None:
    """Shows why the per-host semaphore exists: sshd's MaxSessions (10) refuses the 11th channel."""
    unbounded = SSHPool(max_sessions_per_host=30)
    try:
        outcomes = await asyncio.gather(
            *(unbounded.run(target, ["sleep", "3"]) for _ in range(30)), return_exceptions=True
        )
    finally:
        await unbounded.close()
    refused = [o for o in outcomes if isinstance(o, HostUnreachable)]
    assert refused, outcomes
    assert "refused a new session" in str(refused[0])
    assert sum(1 for o in outcomes if not isinstance(o, BaseException)) >= 10


async def test_argv_with_shell_metacharacters_arrives_intact(
    pool: SSHPool, target: HostTarget, workdir: Path
) -> None:
    marker = workdir / "injected"
    args = [
        "a b",
        f"$(touch {marker})",
        f"`touch {marker}`",
        "'single'",
        '"double"',
        f"; touch {marker}",
        "*",
        "back\\slash",
        "new\nline",
        "$HOME",
        "",
    ]
    result = await pool.run(target, ["printf", "%s\\0", *args])
    assert result.stdout.split("\0")[:-1] == args
    assert not marker.exists()


async def test_script_goes_on_stdin_unquoted(pool: SSHPool, target: HostTarget) -> None:
    script = "x='it'\"'\"'s'\nfor w in $x \"a b\"; do echo \"[$w]\"; done\n"
    result = await pool.run(target, script=script)
    assert result.stdout == "[it's]\n[a b]\n"


async def test_input_is_sent_on_stdin(pool: SSHPool, target: HostTarget) -> None:
    result = await pool.run(target, ["sha256sum"], input=b"abc")
    assert result.stdout.startswith("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


async def test_failure_is_reported_with_secrets_redacted(pool: SSHPool, target: HostTarget) -> None:
    secret = "s3cr3t-password-value"
    token = "K10" + "ab" * 32 + "::server:" + "f00d" * 8
    script = f"echo 'using {secret}' >&2; echo 'token {token}' >&2; exit 3"
    with pytest.raises(CommandFailed) as caught:
        await pool.run(target, script=script, secret_values=[secret])
    text = str(caught.value)
    assert caught.value.exit_status == 3
    assert secret not in text and token not in text
    assert "using ***" in text and "token ***" in text
    assert secret not in caught.value.stderr_tail


async def test_secret_in_argv_is_not_in_the_error(pool: SSHPool, target: HostTarget) -> None:
    secret = "argv-secret-123"
    with pytest.raises(CommandFailed) as caught:
        await pool.run(target, ["sh", "-c", f"echo {secret} >&2; exit 1"], secret_values=[secret])
    assert secret not in str(caught.value)


async def test_check_false_returns_the_status(pool: SSHPool, target: HostTarget) -> None:
    result = await pool.run(target, ["sh", "-c", "exit 7"], check=False)
    assert result.exit_status == 7


async def test_command_timeout_and_connection_survives(target: HostTarget, sshd: SandboxSshd) -> None:
    seen: list[tuple[Outcome, float]] = []
    pool = SSHPool(on_command=lambda outcome, duration: seen.append((outcome, duration)))
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as caught:
            await pool.run(target, ["sleep", "30"], timeout=0.5)
        assert time.monotonic() - started < 3
        assert "0.5s" in str(caught.value)
        assert (await pool.run(target, ["echo", "still here"])).stdout == "still here\n"
        with pytest.raises(CommandFailed):
            await pool.run(target, ["false"])
    finally:
        await pool.close()
    assert [o for o, _ in seen] == ["timeout", "ok", "error"]
    assert seen[0][1] >= 0.5
    assert pool.connects == 1


async def test_nothing_listening_is_unreachable_quickly(client_key: asyncssh.SSHKey, sshd: SandboxSshd) -> None:
    sshd.stop()
    target = make_target(sshd, client_key)
    seen: list[Outcome] = []
    pool = SSHPool(on_command=lambda outcome, _d: seen.append(outcome))
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as caught:
        await pool.run(target, ["true"])
    assert time.monotonic() - started < 1
    assert f"{sshd.address}:22" in str(caught.value)
    assert "refused" in str(caught.value).lower()
    assert seen == ["unreachable"]
    await pool.close()


async def test_frozen_host_times_out_on_connect(
    pool: SSHPool, client_key: asyncssh.SSHKey, sshd: SandboxSshd
) -> None:
    target = make_target(sshd, client_key, connect_timeout=1.0)
    sshd.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as caught:
            await pool.run(target, ["true"])
        assert 0.9 < time.monotonic() - started < 3
        assert "timed out after 1s" in str(caught.value)
    finally:
        sshd.thaw()
    assert (await pool.run(target, ["echo", "ok"])).stdout == "ok\n"


async def test_reconnects_after_sshd_restart(pool: SSHPool, target: HostTarget, sshd: SandboxSshd) -> None:
    await pool.run(target, ["true"])
    sshd.restart()  # kills the session process too: the pooled connection dies
    await asyncio.sleep(0.2)
    assert (await pool.run(target, ["echo", "again"])).stdout == "again\n"
    assert pool.connects == 2


async def test_unknown_client_key_is_an_authentication_failure(pool: SSHPool, sshd: SandboxSshd) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    target = make_target(sshd, stranger)
    with pytest.raises(AuthenticationFailed) as caught:
        await pool.run(target, ["true"])
    assert "root" in str(caught.value) and sshd.address in str(caught.value)
    assert stranger.get_fingerprint() in str(caught.value)


def test_private_key_never_in_repr(target: HostTarget) -> None:
    pem = target.private_key.get_secret_value().decode()
    assert "PRIVATE KEY" in pem
    assert "PRIVATE KEY" not in repr(target) and "PRIVATE KEY" not in str(target)


async def test_run_takes_argv_or_script(pool: SSHPool, target: HostTarget) -> None:
    with pytest.raises(ValueError):
        await pool.run(target)
    with pytest.raises(ValueError):
        await pool.run(target, ["true"], script="true")
