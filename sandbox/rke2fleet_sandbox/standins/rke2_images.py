"""The sandbox's RKE2 images archive (``rke2-images.linux-amd64.tar.zst``) and its runtime image.

Format: what ``docker save`` writes (a tar holding ``manifest.json``, whose ``RepoTags`` name the
images), compressed as a real zstd frame made of raw (stored) blocks, so ``zstd -d`` reads it too. It
holds no layers: the stand-in only needs to know which images, of which version, it carries. Readable
here without a zstd library (raw and RLE blocks only: a frame with compressed blocks is not ours).

Stdlib only: ``installer.py`` writes archives with it, the rke2 stand-in reads them at start.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

ARCH = "amd64"
ARCHIVE = f"rke2-images.linux-{ARCH}.tar.zst"
RUNTIME_REPO = "rancher/rke2-runtime"
DEFAULT_REGISTRY = "docker.io"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_BLOCK = 128 * 1024
MTIME = 1_700_000_000


def image_tag(version: str) -> str:
    """Image tags use ``-`` for the ``+`` of the version: ``v1.35.7-rke2r1``."""
    return version.replace("+", "-")


def images(version: str, registry: str = DEFAULT_REGISTRY) -> list[str]:
    """The images of a release (the runtime image first), as the release's image list names them."""
    tag = image_tag(version)
    return [f"{registry}/{name}" for name in (
        f"{RUNTIME_REPO}:{tag}",
        f"rancher/hardened-kubernetes:{tag}-build20260801",
        "rancher/hardened-etcd:v3.6.4-k3s3-build20260801",
        "rancher/hardened-coredns:v1.13.1-build20260801",
        "rancher/hardened-calico:v3.31.0-build20260801",
        "rancher/hardened-flannel:v0.27.4-build20260801",
        "rancher/mirrored-pause:3.6",
    )]


# -- zstd frames of raw blocks -------------------------------------------------------------------------
def zstd_frame(data: bytes) -> bytes:
    """A valid zstd frame storing ``data`` uncompressed (raw blocks), with its content size."""
    out = io.BytesIO()
    out.write(ZSTD_MAGIC)
    out.write(bytes([0xE0]))  # Frame_Content_Size_flag=3 (8 bytes), Single_Segment=1, no checksum
    out.write(len(data).to_bytes(8, "little"))
    blocks = [data[i:i + MAX_BLOCK] for i in range(0, len(data), MAX_BLOCK)] or [b""]
    for n, block in enumerate(blocks):
        last = 1 if n == len(blocks) - 1 else 0
        header = (len(block) << 3) | (0 << 1) | last  # Block_Type 0: raw
        out.write(header.to_bytes(3, "little"))
        out.write(block)
    return out.getvalue()


def zstd_decode(data: bytes) -> bytes:
    """The content of zstd frames made of raw and RLE blocks; ``ValueError`` for anything else."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        if data[pos:pos + 4] != ZSTD_MAGIC:
            raise ValueError("not a zstd frame")
        descriptor = data[pos + 4]
        pos += 5
        fcs_flag, single, checksum = descriptor >> 6, (descriptor >> 5) & 1, (descriptor >> 2) & 1
        dict_id = (0, 1, 2, 4)[descriptor & 3]
        pos += (0 if single else 1) + dict_id + (1 if fcs_flag == 0 and single else (0, 2, 4, 8)[fcs_flag])
        while True:
            if pos + 3 > len(data):
                raise ValueError("truncated zstd frame")
            header = int.from_bytes(data[pos:pos + 3], "little")
            pos += 3
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 0:
                out += data[pos:pos + size]
                pos += size
            elif kind == 1:
                out += data[pos:pos + 1] * size
                pos += 1
            else:
                raise ValueError("compressed zstd blocks: not a sandbox images archive")
            if last:
                break
        pos += 4 if checksum else 0
    return bytes(out)


# -- archives ---------------------------------------------------------------------------------------
def build_archive(version: str) -> bytes:
    """The images archive of a release: deterministic bytes (fixed mtimes, owners)."""
    import tarfile

    tags = images(version)
    config = json.dumps({"architecture": ARCH, "os": "linux", "rke2fleetSandbox": version}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": []}]).encode()
    repositories = json.dumps({t.rsplit(":", 1)[0]: {t.rsplit(":", 1)[1]: config_name[:-5]} for t in tags}).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in ((config_name, config), ("manifest.json", manifest), ("repositories", repositories)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, MTIME
            tar.addfile(info, io.BytesIO(content))
    return zstd_frame(raw.getvalue())


def repo_tags(data: bytes) -> list[str]:
    """The images an archive (zstd-compressed or plain ``docker save`` tar) holds; ``ValueError``
    when it is not one."""
    import tarfile  # only when an archive is there to read: most starts have none

    if data[:4] == ZSTD_MAGIC:
        data = zstd_decode(data)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise ValueError("no manifest.json")
            manifest = json.loads(member.read())
    except (tarfile.TarError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an image archive: {exc}") from None
    return [str(tag) for entry in manifest for tag in entry.get("RepoTags") or []]


def archives(images_dir: str) -> Iterator[str]:
    """The image archives containerd would import from ``<data-dir>/agent/images`` (``*.txt`` and
    ``*.json`` files are image lists, not archives)."""
    try:
        names = sorted(os.listdir(images_dir))
    except OSError:
        return
    for name in names:
        path = os.path.join(images_dir, name)
        if not name.endswith((".txt", ".json")) and os.path.isfile(path):
            yield path


def normalize(ref: str) -> str:
    """``index.docker.io/x`` and ``registry-1.docker.io/x`` are ``docker.io/x``."""
    host, _, rest = ref.partition("/")
    return f"docker.io/{rest}" if host in ("index.docker.io", "registry-1.docker.io") else ref


def find_image(images_dir: str, refs: list[str]) -> tuple[str, str] | None:
    """(archive path, ref) of the first of ``refs`` found in an archive of ``images_dir``; archives
    that cannot be read are skipped (as wharfie logs and skips them)."""
    wanted = [normalize(r) for r in refs]
    for path in archives(images_dir):
        try:
            with open(path, "rb") as f:
                tags = {normalize(t) for t in repo_tags(f.read())}
        except (OSError, ValueError):
            continue
        for ref in wanted:
            if ref in tags:
                return path, ref
    return None
