"""The sandbox's installer endpoint: stands in for get.rke2.io, update.rke2.io and GitHub releases.

Routes: ``/`` and ``/install.sh`` (the install script, defaults pointing here);
``/v1-release/channels/<channel>`` (302 to ``/releases/tag/<version>``);
``/releases/download/<version>/sha256sum-amd64.txt``, ``.../rke2.linux-amd64.tar.gz`` and
``.../rke2-images.linux-amd64.tar.zst``;
``/v2/`` and ``/v2/<repository>/manifests/<tag>``: the sandbox's docker.io (a registry holding the
``rancher/*`` images of every release; a sandbox host's host.json names it as docker.io, and a
registries.yaml mirror may point here too);
``/_stats`` (request counts per path, also in ``<state-dir>/installer-stats.json``).
Faults: a file ``<state-dir>/faults/installer`` containing ``fail`` (HTTP 500 everywhere) or ``hang``
(accept, then answer nothing while the fault is set); not on ``/v2/`` (docker.io is another service).

Run: ``python -m rke2fleet_sandbox.installer --host 127.0.1.1 --port 8088 --state-dir DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rke2fleet_sandbox.standins import rke2_images

STANDINS_DIR = Path(__file__).resolve().parent / "standins"
ARCH = "amd64"
TARBALL = f"rke2.linux-{ARCH}.tar.gz"
CHECKSUMS = f"sha256sum-{ARCH}.txt"
IMAGES = rke2_images.ARCHIVE
INSTALL_SCRIPT = "install.sh"
# The real install script's defaults, for a bundle's install.sh (an air-gapped install never uses them).
UPSTREAM_CHANNEL_URL = "https://update.rke2.io/v1-release/channels"
UPSTREAM_ARTIFACT_URL = "https://github.com/rancher/rke2/releases/download"
RELEASES = (
    "v1.33.13+rke2r2",
    "v1.34.9+rke2r1",
    "v1.34.10+rke2r1",
    "v1.35.6+rke2r1",
    "v1.35.7+rke2r1",
    "v1.36.2+rke2r1",
    "v1.36.3+rke2r1",
    "v1.36.4-rc1+rke2r1",
)
NAMED_CHANNELS = {"stable": "v1.35.7+rke2r1", "latest": "v1.36.3+rke2r1", "testing": "v1.36.4-rc1+rke2r1"}
FAULT_MODES = ("fail", "hang")


def _version_key(version: str) -> tuple[int, ...]:
    core = version.lstrip("v").split("+")[0].split("-")[0]
    return tuple(int(p) for p in core.split("."))


def resolve_channel(channel: str) -> str | None:
    """stable/latest/testing, or ``vX.Y`` = newest GA patch of that minor."""
    if channel in NAMED_CHANNELS:
        return NAMED_CHANNELS[channel]
    ga = [v for v in RELEASES if "-rc" not in v and v.startswith(channel + ".")]
    return max(ga, key=_version_key) if ga else None


# -- artifacts ---------------------------------------------------------------------------------------
UNIT_TEMPLATE = """[Unit]
Description=Rancher Kubernetes Engine v2 ({role})
Documentation=https://github.com/rancher/rke2#readme
Wants=network-online.target
After=network-online.target
Conflicts=rke2-{other}.service

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-{prefix}/lib/systemd/system/%N.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=1s
ExecCondition=/bin/sh -xc '! /usr/bin/systemctl is-active --quiet rke2-{other}.service'
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={prefix}/bin/rke2 {role}
ExecStopPost=-/bin/sh -c "systemd-cgls /system.slice/%n | grep -Eo '[0-9]+ (containerd|kubelet)' \\
    | awk '{{print $1}}' | xargs -r kill"
"""

KILLALL = """#!/bin/sh
# Sandbox rke2-killall.sh: stop the units, then kill what is left of rke2 in THIS host (mount namespace).
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
systemctl stop rke2-server.service rke2-agent.service >/dev/null 2>&1 || true
self_ns=$(readlink /proc/self/ns/mnt)
for dir in /proc/[0-9]*; do
    [ "$(readlink "$dir/ns/mnt" 2>/dev/null)" = "$self_ns" ] || continue
    if tr '\\0' ' ' < "$dir/cmdline" 2>/dev/null | grep -Eq 'standins/rke2.py|systemctl.py __supervise'; then
        kill -9 "${dir#/proc/}" 2>/dev/null || true
    fi
done
exit 0
"""

UNINSTALL = """#!/bin/sh
# Sandbox rke2-uninstall.sh
set -e
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
PREFIX=$(cd "$(dirname "$0")/.." && pwd)
"$PREFIX/bin/rke2-killall.sh"
systemctl disable rke2-server.service rke2-agent.service >/dev/null 2>&1 || true
rm -f "$PREFIX/lib/systemd/system/rke2-server.service" "$PREFIX/lib/systemd/system/rke2-server.env" \\
    "$PREFIX/lib/systemd/system/rke2-agent.service" "$PREFIX/lib/systemd/system/rke2-agent.env" \\
    "$PREFIX/share/rke2/rke2-cis-sysctl.conf" "$PREFIX/bin/rke2" "$PREFIX/bin/rke2-killall.sh"
rm -rf /etc/rancher/rke2 /etc/rancher/node /var/lib/rancher/rke2 /var/lib/kubelet /etc/cni /opt/cni
systemctl daemon-reload >/dev/null 2>&1 || true
rm -f "$PREFIX/bin/rke2-uninstall.sh"
"""

CIS_SYSCTL = "vm.panic_on_oom=0\nvm.overcommit_memory=1\nkernel.panic=10\nkernel.panic_on_oops=1\n"


def tarball_files(
    version: str, python: str, standins_dir: str, prefix: str = "/usr/local"
) -> dict[str, tuple[str, int]]:
    # -S: `rke2 --version` is stdlib-only; the server/agent path adds site-packages itself (for PyYAML).
    rke2_shim = f'#!/bin/sh\nexec {python} -S {standins_dir}/rke2.py --standin-version {version} "$@"\n'
    files = {
        "bin/rke2": (rke2_shim, 0o755),
        "bin/rke2-killall.sh": (KILLALL, 0o755),
        "bin/rke2-uninstall.sh": (UNINSTALL, 0o755),
        "share/rke2/rke2-cis-sysctl.conf": (CIS_SYSCTL, 0o644),
    }
    for role, other in (("server", "agent"), ("agent", "server")):
        files[f"lib/systemd/system/rke2-{role}.service"] = (
            UNIT_TEMPLATE.format(role=role, other=other, prefix=prefix), 0o644)
        files[f"lib/systemd/system/rke2-{role}.env"] = (
            "HOME=/root\n" if role == "server" else "", 0o644)
    return files


@lru_cache(maxsize=32)
def build_tarball(version: str, python: str, standins_dir: str) -> bytes:
    """Deterministic gzip'ed tar (fixed mtimes and owners) with the layout of the real release tarball."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, (content, mode) in sorted(tarball_files(version, python, standins_dir).items()):
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@lru_cache(maxsize=32)
def build_images(version: str) -> bytes:
    """The release's images archive (standins/rke2_images.py: a zstd'ed ``docker save`` tar)."""
    return rke2_images.build_archive(version)


def checksums_file(tarball: bytes, images: bytes | None = None) -> str:
    """``sha256sum-amd64.txt``: like the release's, it names the images archive too (when given)."""
    lines = [f"{hashlib.sha256(images).hexdigest()}  {IMAGES}"] if images is not None else []
    lines.append(f"{hashlib.sha256(tarball).hexdigest()}  {TARBALL}")
    return "".join(line + "\n" for line in lines)


def install_script(base_url: str | None) -> str:
    """install.sh with its download defaults pointing at ``base_url`` (None: the real ones)."""
    text = (STANDINS_DIR / "install.sh").read_text()
    channels = f"{base_url}/v1-release/channels" if base_url else UPSTREAM_CHANNEL_URL
    artifacts = f"{base_url}/releases/download" if base_url else UPSTREAM_ARTIFACT_URL
    return text.replace("@CHANNEL_URL@", channels).replace("@ARTIFACT_URL@", artifacts)


def write_airgap_bundle(directory: str | os.PathLike[str], version: str, python: str = sys.executable,
                        standins_dir: str = str(STANDINS_DIR), base_url: str | None = None) -> Path:
    """The four air-gap assets of a release in ``directory``, as its GitHub release has them:
    ``install.sh``, ``rke2.linux-amd64.tar.gz``, ``rke2-images.linux-amd64.tar.zst`` and
    ``sha256sum-amd64.txt`` (naming the tarball and the images archive). Install with
    ``INSTALL_RKE2_ARTIFACT_PATH=<directory> sh <directory>/install.sh``."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    tarball = build_tarball(version, python, standins_dir)
    images = build_images(version)
    (target / TARBALL).write_bytes(tarball)
    (target / IMAGES).write_bytes(images)
    (target / CHECKSUMS).write_text(checksums_file(tarball, images))
    (target / INSTALL_SCRIPT).write_text(install_script(base_url))
    (target / INSTALL_SCRIPT).chmod(0o755)
    return target


# -- faults and stats --------------------------------------------------------------------------------
def _fault_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / "faults" / "installer"


def set_installer_fault(state_dir: str | os.PathLike[str], mode: str | None) -> None:
    """``"fail"``: HTTP 500 on every request; ``"hang"``: accept and never answer; None: healthy."""
    path = _fault_path(state_dir)
    if mode is None:
        path.unlink(missing_ok=True)
        return
    if mode not in FAULT_MODES:
        raise ValueError(f"unknown installer fault {mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mode)


def installer_fault(state_dir: str | os.PathLike[str]) -> str | None:
    try:
        return _fault_path(state_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


def installer_stats(state_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Requests served per path (decoded) since the endpoint started."""
    try:
        data: dict[str, int] = json.loads((Path(state_dir) / "installer-stats.json").read_text())
    except FileNotFoundError:
        return {}
    return data


# -- the HTTP server ---------------------------------------------------------------------------------
class InstallerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, state_dir: Path, python: str, standins_dir: str) -> None:
        super().__init__((host, port), InstallerRequestHandler)
        self.state_dir = state_dir
        self.python = python
        self.standins_dir = standins_dir
        self.base_url = f"http://{host}:{self.server_address[1]}"
        self.stats: dict[str, int] = {}
        self.stats_lock = threading.Lock()

    def count(self, path: str) -> None:
        with self.stats_lock:
            self.stats[path] = self.stats.get(path, 0) + 1
            tmp = self.state_dir / ".installer-stats.json.tmp"
            tmp.write_text(json.dumps(self.stats, sort_keys=True))
            os.replace(tmp, self.state_dir / "installer-stats.json")


class InstallerRequestHandler(BaseHTTPRequestHandler):
    server: InstallerServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/plain", location: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        srv = self.server
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path == "/_stats":
            with srv.stats_lock:
                body = json.dumps(srv.stats, sort_keys=True).encode()
            self._send(200, body, "application/json")
            return
        srv.count(path)
        if path == "/v2" or path.startswith("/v2/"):  # docker.io: another service, the faults are get.rke2.io's
            self._registry([p for p in path.split("/") if p][1:])
            return
        while (fault := installer_fault(srv.state_dir)) == "hang":
            time.sleep(0.2)
        if fault == "fail":
            self._send(500, b"500 Internal Server Error\n")
            return
        parts = [p for p in path.split("/") if p]
        if path in ("/", "/install.sh"):
            self._send(200, install_script(srv.base_url).encode(), "text/x-shellscript")
        elif parts[:2] == ["v1-release", "channels"] and len(parts) == 3:
            version = resolve_channel(parts[2])
            if version is None:
                self._send(404, b'{"type":"error","status":"404","code":"NotFound"}', "application/json")
            else:
                target = f"{srv.base_url}/releases/tag/{urllib.parse.quote(version, safe='')}"
                self._send(302, b"", location=target)
        elif parts[:2] == ["releases", "tag"] and len(parts) == 3 and parts[2] in RELEASES:
            self._send(200, f"<html><body>RKE2 {parts[2]}</body></html>".encode(), "text/html")
        elif parts[:2] == ["releases", "download"] and len(parts) == 4 and parts[2] in RELEASES:
            tarball = build_tarball(parts[2], srv.python, srv.standins_dir)
            if parts[3] == TARBALL:
                self._send(200, tarball, "application/gzip")
            elif parts[3] == CHECKSUMS:
                self._send(200, checksums_file(tarball, build_images(parts[2])).encode())
            elif parts[3] == IMAGES:
                self._send(200, build_images(parts[2]), "application/zstd")
            else:
                self._send(404, b"Not Found")
        else:
            self._send(404, b"Not Found")


    def _registry(self, parts: list[str]) -> None:
        """The distribution API, as far as a pull of a release's image needs it."""
        headers = {"Docker-Distribution-API-Version": "registry/2.0"}
        if not parts:
            self._send(200, b"{}", "application/json", headers=headers)
            return
        if len(parts) >= 3 and parts[-2] == "manifests":
            repo, tag = "/".join(parts[:-2]), parts[-1]
            known = {i.split("/", 1)[1] for v in RELEASES for i in rke2_images.images(v)}
            # docker.io has the runtime image of every RKE2 release, not only those served here
            if f"{repo}:{tag}" in known or (repo == rke2_images.RUNTIME_REPO and RELEASE_TAG.match(tag)):
                manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                    "digest": "sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()}, "layers": []})
                self._send(200, manifest.encode(), MANIFEST_TYPE, headers=headers)
                return
            error = {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": tag}}
        else:
            error = {"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}
        self._send(404, json.dumps({"errors": [error]}).encode(), "application/json", headers=headers)


MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?-rke2r\d+$")


@dataclasses.dataclass
class InstallerHandle:
    url: str
    pid: int
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_installer(state_dir: str | os.PathLike[str], host: str = "127.0.1.1", port: int = 8088,
                    python: str = sys.executable, timeout: float = 10.0) -> InstallerHandle:
    """Start the endpoint as a detached subprocess (it outlives the caller) and wait until it answers."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rke2fleet_sandbox.installer", "--host", host, "--port", str(port),
         "--state-dir", str(state_dir), "--python", python],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"installer endpoint exited: {err.strip()}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            if proc.stderr:
                proc.stderr.close()
            return InstallerHandle(url=f"http://{host}:{port}", pid=proc.pid, process=proc)
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"installer endpoint did not listen on {host}:{port} within {timeout}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rke2fleet_sandbox.installer")
    parser.add_argument("--host", default="127.0.1.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--python", default=sys.executable, help="interpreter the rke2 shim runs")
    parser.add_argument("--standins-dir", default=str(STANDINS_DIR))
    opts = parser.parse_args(argv)
    state_dir = Path(opts.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    server = InstallerServer(opts.host, opts.port, state_dir, opts.python, opts.standins_dir)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
