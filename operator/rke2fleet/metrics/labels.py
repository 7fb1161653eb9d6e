"""Label vocabularies and checks: only bounded, validated values become label values.

Labels never carry secrets or free text (messages, errors, addresses). Enumerated
labels (kind, result, phase, role, state) are checked against the sets below and a
wrong value is a programming error (`ValueError`). Object names must be Kubernetes
names. Version labels must look like RKE2 versions (`v1.36.3+rke2r1`,
`v1.36.4-rc1+rke2r1`); anything else is exported as `invalid` and `None` as the
empty string, so a host printing garbage cannot create unbounded series. Drift kinds
must be snake_case identifiers (at most 32 characters); others are counted as `other`.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

from rke2fleet.api.rke2keys import Role as Role
from rke2fleet.api.status import ClusterPhase

Kind = Literal["RKE2Cluster", "RKE2Node"]
Phase = ClusterPhase  # one definition: the status model's
# ok: success; temporary_error: will be retried (kopf.TemporaryError, SSH timeout/refused);
# permanent_error: needs a spec change (kopf.PermanentError, invalid spec);
# error: any other unexpected exception (Kopf retries it with backoff).
ReconcileResult = Literal["ok", "error", "temporary_error", "permanent_error"]
SSHResult = Literal["ok", "error", "timeout", "unreachable"]
NodeState = Literal["ready", "not_ready"]

KINDS: Final = frozenset(get_args(Kind))
RECONCILE_RESULTS: Final = frozenset(get_args(ReconcileResult))
SSH_RESULTS: Final = frozenset(get_args(SSHResult))
PHASES: Final[tuple[str, ...]] = get_args(Phase)
ROLES: Final = frozenset(get_args(Role))
NODE_STATES: Final = frozenset(get_args(NodeState))

INVALID_VERSION: Final = "invalid"
OTHER_DRIFT: Final = "other"

# DNS-1123 subdomain (object names) -- also covers the stricter label form of namespaces.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_RKE2_VERSION = re.compile(r"^v\d{1,3}\.\d{1,3}\.\d{1,4}(-[0-9A-Za-z.]{1,20})?(\+rke2r\d{1,3})?$")
_DRIFT_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_member(value: str, allowed: frozenset[str] | tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(allowed)}")
    return value


def check_name(value: str, what: str) -> str:
    if not _K8S_NAME.match(value):
        raise ValueError(f"{what} is not a Kubernetes object name")
    return value


def drift_kind_label(value: str) -> str:
    """Drift kinds are short snake_case identifiers chosen by the reconcile core (e.g. `config`);
    anything else is exported as `other` rather than failing the reconcile that found the drift."""
    return value if _DRIFT_KIND.match(value) else OTHER_DRIFT


def version_label(value: str | None) -> str:
    if value is None:
        return ""
    return value if _RKE2_VERSION.match(value) else INVALID_VERSION
