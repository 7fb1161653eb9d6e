"""Release assets for air-gapped installs (reference §2, §13), as the operator reaches them: an
http(s) mirror or a file:/// directory (a mounted volume). Each release and architecture is
fetched once into a local cache and checked against the release's own sha256sum file before any
of it goes to a host; a corrupted or missing asset is an error and nothing is pushed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rke2fleet.config import SETTINGS

CHUNK = 1 << 20
FETCH_TIMEOUT = 60.0
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "s390x": "s390x"}


class ArtifactError(Exception):
    """An asset is missing, unreadable or does not match its checksum (message safe for status)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # ArtifactMissing | ArtifactInvalid


def release_arch(uname_m: str) -> str:
    arch = ARCHES.get(uname_m.strip())
    if arch is None:
        raise ArtifactError("ArtifactMissing", f"no RKE2 release for this host's architecture {uname_m!r}")
    return arch


@dataclass(frozen=True)
class Bundle:
    """One release's assets for one architecture, verified, in a local directory."""

    directory: Path
    tarball: str  # rke2.linux-<arch>.tar.gz
    checksums: str  # sha256sum-<arch>.txt
    images: str | None  # rke2-images.linux-<arch>.tar.zst (or .tar.gz) when the release lists one
    sha256: dict[str, str]  # of each asset (install.sh included, as read)

    @property
    def names(self) -> list[str]:
        return ["install.sh", self.checksums, self.tarball, *([self.images] if self.images else [])]


def parse_checksums(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fetch(base: str, name: str, dest: Path) -> None:
    """Copy `base`/`name` to `dest` (atomically); ArtifactError when it cannot be had."""
    url = base.rstrip("/") + "/" + name
    parts = urlsplit(url)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        if parts.scheme == "file":
            shutil.copyfile(unquote(parts.path), tmp)
        else:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp, tmp.open("wb") as out:  # noqa: S310 - http(s) only (validated)
                shutil.copyfileobj(resp, out, CHUNK)
    except FileNotFoundError:
        raise ArtifactError("ArtifactMissing", f"{name} not found at {base}") from None
    except urllib.error.HTTPError as exc:
        why = "not found" if exc.code == 404 else f"HTTP {exc.code}"
        raise ArtifactError("ArtifactMissing", f"{name} {why} at {base}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ArtifactError("ArtifactMissing", f"cannot fetch {name} from {base}: {exc}") from None
    os.replace(tmp, dest)


def _images_name(listed: dict[str, str], arch: str) -> str | None:
    for ext in ("tar.zst", "tar.gz"):
        if f"rke2-images.linux-{arch}.{ext}" in listed:
            return f"rke2-images.linux-{arch}.{ext}"
    return None


def _load(base: str, arch: str, directory: Path) -> Bundle:
    directory.mkdir(parents=True, exist_ok=True)
    checksums = f"sha256sum-{arch}.txt"
    tarball = f"rke2.linux-{arch}.tar.gz"
    _fetch(base, checksums, directory / checksums)
    listed = parse_checksums((directory / checksums).read_text(errors="replace"))
    if tarball not in listed:
        raise ArtifactError("ArtifactInvalid", f"{checksums} at {base} does not list {tarball}")
    images = _images_name(listed, arch)
    sha: dict[str, str] = {}
    for name in ("install.sh", tarball, *([images] if images else [])):
        path = directory / name
        if not (name in listed and path.exists() and _digest(path) == listed[name]):
            _fetch(base, name, path)
        sha[name] = _digest(path)
        if name in listed and sha[name] != listed[name]:
            path.unlink()
            raise ArtifactError(
                "ArtifactInvalid", f"{name} from {base} does not match {checksums} (sha256 {sha[name][:12]}…)"
            )
    sha[checksums] = _digest(directory / checksums)
    return Bundle(directory, tarball, checksums, images, sha)


class ArtifactCache:
    """Verified bundles by (base URL, arch); one fetch at a time per bundle."""

    def __init__(self, root: str | None = None) -> None:
        self.root = Path(root or os.path.join(tempfile.gettempdir(), "rke2fleet-artifacts"))
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._bundles: dict[tuple[str, str], Bundle] = {}

    async def bundle(self, base: str, arch: str) -> Bundle:
        key = (base, arch)
        async with self._locks.setdefault(key, asyncio.Lock()):
            known = self._bundles.get(key)
            if known is not None and all((known.directory / n).exists() for n in known.names):
                return known
            directory = self.root / hashlib.sha256(base.encode()).hexdigest()[:16] / arch
            bundle = await asyncio.to_thread(_load, base, arch, directory)
            self._bundles[key] = bundle
            return bundle


CACHE = ArtifactCache(SETTINGS.artifact_cache or None)
