#!/usr/bin/env python3
"""Compare the operator's ClusterRole with the API calls it actually made.

Input: the sandbox emulator's audit log (`GET /_sandbox/audit`, a JSON list of entries with
verb, apiGroup, resource, subresource). Output: calls the role does not allow (the role is
too narrow) and permissions no call used (the role is too wide), minus the permissions a real
API server needs although the emulator never records them (KNOWN_UNRECORDED).

    python deploy/rbac_coverage.py audit.json     # exits 1 when either list is non-empty
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RBAC = Path(__file__).resolve().parent / "kustomize" / "base" / "rbac.yaml"

# (apiGroup, resource[/subresource], verb)
Permission = tuple[str, str, str]

# Needed on a real cluster but invisible to the emulator:
# - <kind>/finalizers update: the OwnerReferencesPermissionEnforcement admission plugin asks for it
#   when the operator sets blockOwnerDeletion on the Secrets it owns.
# (Kopf 1.x posts Events through core v1 only; events.k8s.io is not needed.)
KNOWN_UNRECORDED: frozenset[Permission] = frozenset(
    {
        ("rke2fleet.io", "rke2clusters/finalizers", "update"),
        ("rke2fleet.io", "rke2nodes/finalizers", "update"),
    }
)


def granted(rules: Iterable[Mapping[str, Any]]) -> set[Permission]:
    """Every (group, resource, verb) the rules grant; wildcards are refused, not expanded."""
    result: set[Permission] = set()
    for rule in rules:
        groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
        if "*" in groups or "*" in resources or "*" in verbs:
            raise ValueError(f"wildcard in rule {dict(rule)}")
        if rule.get("resourceNames"):
            raise ValueError("resourceNames are not handled by this check")
        result |= {(g, r, v) for g in groups for r in resources for v in verbs}
    return result


def used(audit: Iterable[Mapping[str, Any]]) -> set[Permission]:
    """Permissions the recorded resource calls needed; discovery (no resource) is left out."""
    result: set[Permission] = set()
    for entry in audit:
        resource = entry.get("resource")
        if not resource:
            continue
        sub = entry.get("subresource")
        result.add((entry.get("apiGroup") or "", f"{resource}/{sub}" if sub else resource, entry["verb"]))
    return result


def compare(rules: Iterable[Mapping[str, Any]], audit: Iterable[Mapping[str, Any]]) -> tuple[
    list[Permission], list[Permission]
]:
    """(calls the role does not allow, granted permissions no call used)."""
    allowed, needed = granted(rules), used(audit)
    missing = sorted(needed - allowed)
    unused = sorted(allowed - needed - KNOWN_UNRECORDED)
    return missing, unused


def load_cluster_role_rules(path: Path = DEFAULT_RBAC) -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ClusterRole":
            rules: list[dict[str, Any]] = doc["rules"]
            return rules
    raise ValueError(f"no ClusterRole in {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("audit", type=Path, help="JSON audit log from the sandbox emulator")
    parser.add_argument("--rbac", type=Path, default=DEFAULT_RBAC)
    args = parser.parse_args(argv)
    missing, unused = compare(load_cluster_role_rules(args.rbac), json.loads(args.audit.read_text()))
    for group, resource, verb in missing:
        print(f"not allowed: {verb} {group or 'core'}/{resource}")
    for group, resource, verb in unused:
        print(f"never used: {verb} {group or 'core'}/{resource}")
    return 1 if missing or unused else 0


if __name__ == "__main__":
    sys.exit(main())
