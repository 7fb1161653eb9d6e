"""The air-gapped install (reference §13): the release's assets pushed to the host once (each
file atomically, its sha256 checked on arrival), checked again on the host against the release's
sha256sum file, then `INSTALL_RKE2_ARTIFACT_PATH=<dir> sh install.sh`, which installs the
tarball and copies the images archive into the agent's images directory. The host downloads
nothing."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from rke2fleet.artifacts import CACHE, ArtifactError, Bundle, release_arch
from rke2fleet.hostaccess import HostTarget
from rke2fleet.reconcile.commands import BACKGROUND_NICE
from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.facts import HostFacts
from rke2fleet.reconcile.paths import ARTIFACTS_DIR

if TYPE_CHECKING:
    from rke2fleet.engine.ports import Hosts

VERIFIED = 0
MISMATCH = 1


def host_dir(desired: DesiredNode, arch: str) -> str:
    return f"{ARTIFACTS_DIR}/{desired.version}-{arch}".replace("+", "_")


def verify_script(directory: str, bundle: Bundle) -> str:
    """Exit 0 when every asset is on the host and matches; the release's sha256sum file is the
    reference for the tarball and images, the operator's reading for the rest."""
    lines = [f"cd {shlex.quote(directory)} 2>/dev/null || exit 1"]
    checks = "".join(f"{bundle.sha256[n]}  {n}\n" for n in bundle.names)
    lines.append(f"printf %s {shlex.quote(checks)} | sha256sum -c --status - 2>/dev/null || exit 1")
    return "\n".join(lines) + "\n"


def install_command(desired: DesiredNode, directory: str, *, background: bool) -> str:
    online = ("INSTALL_RKE2_CHANNEL_URL", "INSTALL_RKE2_ARTIFACT_URL")
    env = {k: v for k, v in desired.install_env.items() if k not in online}
    env["INSTALL_RKE2_ARTIFACT_PATH"] = directory
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    lower = f"renice -n {BACKGROUND_NICE} -p $$ >/dev/null 2>&1 || true\n" if background else ""
    return f"set -e\n{lower}cd {shlex.quote(directory)}\nenv {assigns} sh ./install.sh\n"


async def airgap_install(
    hosts: Hosts, target: HostTarget, desired: DesiredNode, facts: HostFacts | None, *, background: bool
) -> None:
    """Raises ArtifactError (nothing installed) when an asset is missing or does not match."""
    assert desired.airgap_url is not None
    arch = release_arch(facts.arch if facts else "x86_64")
    bundle = await CACHE.bundle(desired.airgap_url, arch)
    directory = host_dir(desired, arch)
    check = verify_script(directory, bundle)
    if (await hosts.run(target, script=check, check=False)).exit_status != VERIFIED:
        for name in bundle.names:
            mode = 0o755 if name == "install.sh" else 0o644
            await hosts.put_file(target, f"{directory}/{name}", bundle.directory / name, bundle.sha256[name], mode=mode)
        if (await hosts.run(target, script=check, check=False)).exit_status != VERIFIED:
            raise ArtifactError("ArtifactInvalid", f"the release assets in {directory} do not match after the push")
    await hosts.run(target, script=install_command(desired, directory, background=background))
