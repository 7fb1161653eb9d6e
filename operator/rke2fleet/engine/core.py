"""The engine object every pass works with: the hosts, the store, and its memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from rke2fleet.engine.memory import Memory
from rke2fleet.engine.ports import Hosts, Store
from rke2fleet.hostaccess import OnCommand


@dataclass
class Engine:
    hosts: Hosts
    store: Store
    memory: Memory = field(default_factory=Memory)


def connect(store: Store, on_command: OnCommand | None = None) -> Engine:
    """The engine with its SSH pool (the hosts) over `store`."""
    from rke2fleet.hostaccess import SSHPool

    return Engine(hosts=SSHPool(on_command=on_command), store=store)


async def close(engine: Engine) -> None:
    closer = getattr(engine.hosts, "close", None)
    if closer is not None:
        await closer()
