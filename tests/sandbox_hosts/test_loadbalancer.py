"""The load balancer forwards each connection to the first server that accepts it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from rke2fleet_sandbox import Sandbox

from .conftest import MakeSandbox

pytestmark = pytest.mark.sandbox


@contextlib.asynccontextmanager
async def naming_server(address: str, port: int) -> AsyncIterator[None]:
    """A TCP service on a server host's address that answers its own address, then echoes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{address}\n".encode())
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, address, port, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def ask(address: str, port: int) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    writer.write(b"ping\n")
    await writer.drain()
    name = await asyncio.wait_for(reader.readline(), 5)
    echo = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return name, echo


async def test_forwards_to_servers_that_answer(make_sandbox: MakeSandbox) -> None:
    sandbox: Sandbox = make_sandbox(3, 1)
    lb = sandbox.load_balancer_address
    assert lb and lb not in {h.address for h in sandbox.hosts}
    s1, s2, s3 = sandbox.servers
    # Only server-2 listens on 9345: every connection lands there, whatever the round-robin start.
    async with naming_server(s2.address, 9345):
        for _ in range(4):
            assert await ask(lb, 9345) == (f"{s2.address}\n".encode(), b"ping\n")
    # Two servers listen on 6443: connections are spread over both, never to the agent.
    async with naming_server(s1.address, 6443), naming_server(s3.address, 6443):
        seen = {(await ask(lb, 6443))[0] for _ in range(6)}
    assert seen == {f"{s1.address}\n".encode(), f"{s3.address}\n".encode()}


async def test_no_server_answering_closes_the_connection(make_sandbox: MakeSandbox) -> None:
    sandbox: Sandbox = make_sandbox(2, 0)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(sandbox.load_balancer_address, 9345), 5)
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


def test_no_load_balancer_without_servers_or_when_not_asked(make_sandbox: MakeSandbox) -> None:
    assert make_sandbox(0, 2).load_balancer_address == ""
    assert make_sandbox(2, 0, load_balancer=False).load_balancer_address == ""
