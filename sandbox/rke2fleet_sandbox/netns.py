"""Network namespaces seen from the root namespace: which one a process is in, every process of
one, and a socket opened inside one (to reach an address only that namespace can route to).

No sandbox imports: `hosts` and `network` both use it.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Iterable

CLONE_NEWNET = 0x40000000


def namespace_of(pid: int, kind: str) -> str | None:
    """The `<kind>:[inode]` link of a process (kind: mnt, net, ...); None once it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def net_namespace(pid: int) -> str | None:
    return namespace_of(pid, "net")


def pids_in(namespaces: Iterable[str], kind: str) -> dict[str, list[int]]:
    """Every live process (but this one) of each given namespace of that kind."""
    wanted = set(namespaces)
    found: dict[str, list[int]] = {ns: [] for ns in wanted}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        ns = namespace_of(int(entry.name), kind)
        if ns in wanted:
            found[ns].append(int(entry.name))
    return found


def pids_in_net_namespaces(namespaces: Iterable[str]) -> dict[str, list[int]]:
    return pids_in(namespaces, "net")


def socket_in(pid: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created in the network namespace of `pid`; it stays there whatever thread uses it.

    setns(2) moves only the calling thread, so a short-lived thread enters the namespace, makes the
    socket and ends: this process's own threads never change namespace.
    """
    box: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into the network namespace of {pid}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box.append(socket.socket(family, kind))
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=work, name=f"netns-{pid}", daemon=True)
    thread.start()
    thread.join()
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result


def connect(address: str, port: int, timeout: float, netns_pid: int | None = None) -> socket.socket:
    """`socket.create_connection`, from inside the network namespace of `netns_pid` if given."""
    if netns_pid is None:
        return socket.create_connection((address, port), timeout=timeout)
    sock = socket_in(netns_pid)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock
