"""Just enough HTTP/1.1 over ``socket`` for the rke2 stand-in's supervisor port and its join client.

``http.server`` and ``urllib.request`` cost ~60 ms of imports (email, http.client, ssl, mimetypes)
per daemon start, paid by every sandbox host on a machine whose cores they share; the RKE2
endpoints need one request per connection, a Content-Length body and nothing else. The server
accepts in one thread per port and answers each connection in a thread of its own; accept blocks,
so an idle daemon never wakes up (``socketserver`` polls every 0.5 s). The client raises ``OSError``
for what cannot be talked to, with urllib's texts, and returns any status with its body.
"""

from __future__ import annotations

import socket
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    # (method, path, body) -> (status, body, content type)
    Handler = Callable[[str, str, bytes], tuple[int, str, str]]

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           411: "Length Required", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}
METHODS = ("GET", "POST", "PUT")
MAX_LINE = 65536
MAX_HEADERS = 100
CONNECTION_TIMEOUT = 10.0  # a client that stalls mid-request does not hold a thread forever


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def host_arg(host: str) -> str | bytes:
    """An ASCII host as bytes: a ``str`` makes socket import the idna codec (and ``re``) to encode it."""
    return host.encode() if host.isascii() else host


# -- server ----------------------------------------------------------------------------------------
def listen(address: str, port: int) -> socket.socket:
    """A listening socket; raises ``OSError`` (e.g. address in use) like ``HTTPServer`` did."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_arg(address), port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def serve_in_background(sock: socket.socket, handler: Handler) -> None:
    threading.Thread(target=_accept_loop, args=(sock, handler), daemon=True).start()


def _accept_loop(sock: socket.socket, handler: Handler) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            continue  # e.g. ECONNABORTED: the client gave up before we accepted
        threading.Thread(target=_answer, args=(conn, handler), daemon=True).start()


def _answer(conn: socket.socket, handler: Handler) -> None:
    with conn:
        conn.settimeout(CONNECTION_TIMEOUT)
        try:
            rfile = conn.makefile("rb")
            try:
                method, path, body = read_request(rfile)
            except BadRequest as exc:
                status, text, ctype = exc.status, str(exc), "text/plain"
            else:
                if method not in METHODS:
                    status, text, ctype = 501, f"Unsupported method ({method!r})", "text/plain"
                else:
                    status, text, ctype = handler(method, path, body)
            conn.sendall(response_bytes(status, text, ctype))
        except OSError:
            pass  # the client went away (or stalled past the timeout): nothing to answer


def read_request(rfile: BinaryIO) -> tuple[str, str, bytes]:
    """(method, path, body) of one request read from a binary file object."""
    readline = rfile.readline
    line = readline(MAX_LINE + 1)
    if not line:
        raise OSError("connection closed before a request")
    parts = line.decode("iso-8859-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(400, f"Bad request syntax ({line.decode('iso-8859-1').strip()!r})")
    method, path, _ = parts
    length = 0
    for _ in range(MAX_HEADERS + 1):
        header = readline(MAX_LINE + 1)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("iso-8859-1").partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise BadRequest(400, "Bad Content-Length") from None
    else:
        raise BadRequest(431, "Too many headers")
    body = rfile.read(length) if length > 0 else b""
    return method, path, body


def response_bytes(status: int, body: str, content_type: str) -> bytes:
    data = body.encode()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\nDate: {date}\r\nConnection: close\r\n\r\n")
    return head.encode("iso-8859-1") + data


# -- client ----------------------------------------------------------------------------------------
def request(host: str, port: int, method: str, path: str, body: bytes = b"",
            content_type: str = "application/json", timeout: float = 10.0) -> tuple[int, str, bytes]:
    """(status, reason, body) of one request. Raises ``OSError`` when the server cannot be reached,
    stalls past ``timeout`` or closes without answering (urllib's texts: "[Errno 111] Connection
    refused", "timed out", "Remote end closed connection without response")."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    if method in ("POST", "PUT"):
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    address = (host_arg(host), port)  # bytes reach getaddrinfo, which takes them; typeshed says str
    with socket.create_connection(address, timeout=timeout) as sock:  # type: ignore[arg-type]
        sock.sendall(head.encode("iso-8859-1") + b"\r\n" + body)
        rfile = sock.makefile("rb")
        status_line = rfile.readline(MAX_LINE + 1).decode("iso-8859-1")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionResetError("Remote end closed connection without response")
        length = None
        while True:
            header = rfile.readline(MAX_LINE + 1)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("iso-8859-1").partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        data = rfile.read(length) if length is not None else rfile.read()
    reason = parts[2].strip() if len(parts) > 2 else ""
    return int(parts[1]), reason, data
