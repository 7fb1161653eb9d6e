"""Preparing a host beyond RKE2's own files: the CIS profile's prerequisites (reference §13), and
removing managed files that are no longer desired."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.hostfiles import MARKER
from rke2fleet.reconcile.paths import CIS_SYSCTL_PATH, CIS_SYSCTL_SOURCES

# RKE2's documented preparation, idempotent: the etcd user and group, the shipped sysctl file
# copied (atomically) into /etc/sysctl.d and applied the systemd way.
CIS_PREPARE_SCRIPT = f"""set -e
if ! getent passwd etcd >/dev/null; then
  if getent group etcd >/dev/null; then
    useradd -r -c "etcd user" -s /sbin/nologin -M -g etcd etcd
  else
    useradd -r -c "etcd user" -s /sbin/nologin -M etcd -U
  fi
fi
getent group etcd >/dev/null || groupadd -r etcd
src=
for f in {" ".join(shlex.quote(p) for p in CIS_SYSCTL_SOURCES)}; do
  if [ -f "$f" ]; then src=$f; break; fi
done
[ -n "$src" ] || {{ echo "rke2-cis-sysctl.conf not found: RKE2 is not installed" >&2; exit 3; }}
dst={shlex.quote(CIS_SYSCTL_PATH)}
if ! cmp -s "$src" "$dst"; then
  mkdir -p "$(dirname "$dst")"
  tmp=$(mktemp "$dst.XXXXXX")
  cp "$src" "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$dst"
fi
systemctl restart systemd-sysctl
"""


def stale_files(desired: DesiredNode, held: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Managed files the operator wrote earlier that this node should no longer hold."""
    wanted = {f.path for f in desired.files}
    return sorted(path for path, (_, ours) in held.items() if ours and path not in wanted)


def remove_script(paths: list[str]) -> str:
    """Remove each file, again only if its first line says the operator wrote it."""
    lines = [
        f"f={shlex.quote(p)}; if head -n 1 -- \"$f\" 2>/dev/null | grep -q '^{MARKER}'; then rm -f -- \"$f\"; fi"
        for p in paths
    ]
    return "\n".join(lines) + "\n"
