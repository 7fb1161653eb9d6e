"""Facts: everything the plan needs from a host, read with ONE remote command per pass.

The script prints `key=value` lines; parsing is a pure function so it is easy to test.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.hostfiles import ADDON_PREFIX, MARKER
from rke2fleet.reconcile.paths import BINARIES, CIS_SYSCTL_PATH, DEFAULT, RESTART_MARKER, Paths
from rke2fleet.reconcile.tokens import TOK_SHA256_FN

# Read-only. Runs under `sh -s` (through sudo for non-root users).
_SCRIPT = r"""
set +e
@TOKFN@rke2=""
for p in @BINARIES@; do [ -x "$p" ] && { rke2="$p"; break; }; done
echo "rke2_path=$rke2"
if [ -n "$rke2" ]; then echo "rke2_version=$("$rke2" --version 2>/dev/null | head -n 1)"; fi
if [ -f @CONFIG@ ]; then echo "config_sha256=$(sha256sum @CONFIG@ | cut -d ' ' -f 1)"; fi
for u in @UNITS@; do
  systemctl show -p UnitFileState -p ActiveState "$u" 2>/dev/null | while IFS= read -r l; do echo "$u.$l"; done
done
# A server's copy of the cluster's token: which token the datastore is encrypted with.
[ -f @TOKEN@ ] && echo "token_present=yes" && echo "token_sha256=$(tok_sha256 @TOKEN@)"
[ -f @KUBECONFIG@ ] && echo "kubeconfig_sha256=$(sha256sum @KUBECONFIG@ | cut -d ' ' -f 1)"
# RKE2 points data/bin at the data dir of the version it last started (reference §7): with the
# unit active, that is the running version even after a newer binary was installed.
echo "data_bin=$(readlink @DATA_BIN@ 2>/dev/null)"
[ -f @MARKER@ ] && echo "restart_pending=yes"
@FILES@@CIS@. /etc/os-release 2>/dev/null && echo "os=$ID $VERSION_ID"
echo "arch=$(uname -m)"
echo "facts_end=1"
"""
UNITS = ("rke2-server", "rke2-agent")

# Each managed file present: its sha256, whether the operator wrote it (its first line), its path.
_FILES = r"""mf() { [ -f "$1" ] || return 0
  if head -n 1 -- "$1" | grep -q '^@MARKER@'; then o=1; else o=0; fi
  echo "file=$(sha256sum -- "$1" | cut -d ' ' -f 1) $o $1"; }
"""
# CIS preparation (reference §13) as RKE2 checks it: the etcd user and group, and the values of
# its sysctl file in effect (not only the file in place).
_CIS = r"""cis=no
if getent passwd etcd >/dev/null && getent group etcd >/dev/null && [ -f @CIS_FILE@ ]; then
  cis=yes
  while IFS='=' read -r k v; do
    k=$(echo $k); v=$(echo $v)
    case "$k" in ''|'#'*|';'*) continue;; esac
    [ "$(sysctl -n "$k" 2>/dev/null)" = "$v" ] || cis=no
  done < @CIS_FILE@
fi
echo "cis_prepared=$cis"
"""


def _files_part(files: tuple[str, ...], addons_dir: str | None) -> str:
    if not files and not addons_dir:
        return ""
    lines = [_FILES.replace("@MARKER@", MARKER)]
    lines += [f"mf {shlex.quote(f)}" for f in files]
    if addons_dir:
        lines.append(f"for f in {shlex.quote(addons_dir)}/{ADDON_PREFIX}*.yaml; do mf \"$f\"; done")
    return "\n".join(lines) + "\n"


def facts_for(desired: DesiredNode) -> str:
    """The facts script of a node: its own unit, paths, managed files and host preparation."""
    return facts_script(
        (desired.unit,), desired.paths, files=desired.file_candidates, addons_dir=desired.addons_dir,
        cis=desired.cis,
    )  # fmt: skip


def facts_script(
    units: tuple[str, ...] = UNITS,
    paths: Paths = DEFAULT,
    *,
    files: tuple[str, ...] = (),
    addons_dir: str | None = None,
    cis: bool = False,
) -> str:
    """Ask systemctl about these units only: a node needs its own role's unit, and each
    systemctl call is a process start on the host (the steady-state cost per pass): one
    `systemctl show` per unit answers both is-enabled and is-active. The RKE2 paths are the
    node's own (its data dir)."""
    values = {
        "@TOKFN@": TOK_SHA256_FN,
        "@BINARIES@": " ".join(BINARIES),
        "@CONFIG@": shlex.quote(paths.config),
        "@UNITS@": " ".join(u for u in units if u in UNITS),
        "@TOKEN@": shlex.quote(paths.token),
        "@KUBECONFIG@": shlex.quote(paths.kubeconfig),
        "@DATA_BIN@": shlex.quote(paths.data_bin),
        "@MARKER@": shlex.quote(RESTART_MARKER),
        "@FILES@": _files_part(files, addons_dir),
        "@CIS@": _CIS.replace("@CIS_FILE@", shlex.quote(CIS_SYSCTL_PATH)) if cis else "",
    }
    script = _SCRIPT
    for key, value in values.items():
        script = script.replace(key, value)
    return script


FACTS_SCRIPT = facts_script()

_VERSION_RE = re.compile(r"rke2 version (v\d+\.\d+\.\d+(?:-rc\d+)?\+rke2r\d+)")
_DATA_TAG_RE = re.compile(r"data/(v\d+\.\d+\.\d+(?:-rc\d+)?)[-+](rke2r\d+)")


@dataclass(frozen=True)
class UnitFacts:
    enabled: bool
    active: str  # active | activating | inactive | failed | unknown

    @property
    def is_active(self) -> bool:
        return self.active == "active"


@dataclass(frozen=True)
class HostFacts:
    installed_version: str | None
    running_version: str | None  # None when no unit is active
    config_sha256: str | None
    server: UnitFacts
    agent: UnitFacts
    token_present: bool
    os: str
    arch: str
    kubeconfig_sha256: str | None = None  # of rke2.yaml: the cluster re-reads it only when this changes
    token_sha256: str | None = None  # of the password of the server's token file (tokens.password_sha256)
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)  # managed files: path -> (sha256, ours)
    cis_prepared: bool | None = None  # None: not asked (no CIS profile)
    restart_pending: bool = False  # files changed for a restart that was never queued (RESTART_MARKER)

    def unit(self, role: str) -> UnitFacts:
        return self.server if role == "server" else self.agent


class FactsError(ValueError):
    """The facts script's output is not what it should be (truncated or foreign)."""


def parse_facts(stdout: str) -> HostFacts:
    values: dict[str, str] = {}
    files: dict[str, tuple[str, bool]] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key == "file":
            sha, _, rest = value.partition(" ")
            owned, _, path = rest.partition(" ")
            files[path] = (sha, owned == "1")
        elif sep:
            values[key.strip()] = value.strip()
    if values.get("facts_end") != "1":
        raise FactsError("the facts command's output was incomplete")
    match = _VERSION_RE.search(values.get("rke2_version", ""))

    def unit(name: str) -> UnitFacts:
        return UnitFacts(
            enabled=values.get(f"{name}.UnitFileState") == "enabled",
            active=values.get(f"{name}.ActiveState") or "unknown",
        )

    server, agent = unit("rke2-server"), unit("rke2-agent")
    tag = _DATA_TAG_RE.search(values.get("data_bin", ""))
    running = f"{tag.group(1)}+{tag.group(2)}" if tag and (server.is_active or agent.is_active) else None
    return HostFacts(
        installed_version=match.group(1) if match else None,
        running_version=running,
        config_sha256=values.get("config_sha256") or None,
        server=server,
        agent=agent,
        token_present=values.get("token_present") == "yes",
        kubeconfig_sha256=values.get("kubeconfig_sha256") or None,
        token_sha256=values.get("token_sha256") or None,
        os=values.get("os", ""),
        arch=values.get("arch", ""),
        files=files,
        cis_prepared={"yes": True, "no": False}.get(values.get("cis_prepared", "")),
        restart_pending=values.get("restart_pending") == "yes",
    )
