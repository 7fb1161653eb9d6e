"""Kubernetes label and taint syntax, as kubelet's --node-labels / --register-with-taints accept it."""

from __future__ import annotations

import re

from rke2fleet.api.common import is_dns1123_subdomain

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# kubelet refuses to self-assign labels under kubernetes.io / k8s.io except these.
_KUBELET_ALLOWED_KEYS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.kubernetes.io/zone",
        "failure-domain.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
    }
)
_KUBELET_ALLOWED_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _in_namespace(prefix: str, ns: str) -> bool:
    return prefix == ns or prefix.endswith("." + ns)


def label_key_problem(key: str) -> str | None:
    prefix, sep, name = key.rpartition("/")
    if sep and not (prefix and is_dns1123_subdomain(prefix)):
        return "label key prefix must be a DNS-1123 subdomain"
    if not (len(name) <= 63 and _NAME.fullmatch(name)):
        return (
            "label key name must be at most 63 characters: letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value and not (len(value) <= 63 and _NAME.fullmatch(value)):
        return (
            "label value must be empty or at most 63 characters: letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return None


def node_label_problem(item: str) -> str | None:
    """Why `item` is not a `key=value` node label kubelet would accept, or None."""
    key, sep, value = item.partition("=")
    if not sep:
        return "must be key=value"
    problem = label_key_problem(key) or label_value_problem(value)
    if problem:
        return problem
    prefix = key.rpartition("/")[0]
    restricted = _in_namespace(prefix, "kubernetes.io") or _in_namespace(prefix, "k8s.io")
    if (
        restricted
        and key not in _KUBELET_ALLOWED_KEYS
        and not any(_in_namespace(prefix, ns) for ns in _KUBELET_ALLOWED_NAMESPACES)
    ):
        return (
            "kubelet refuses to set labels under kubernetes.io or k8s.io (except kubelet.kubernetes.io, "
            "node.kubernetes.io and the well-known topology/os/arch keys); "
            "apply e.g. node-role labels with kubectl"
        )
    return None


def node_taint_problem(item: str) -> str | None:
    """Why `item` is not a `key[=value]:Effect` taint, or None."""
    head, sep, effect = item.rpartition(":")
    if not sep:
        return "must be key[=value]:Effect with Effect one of " + ", ".join(TAINT_EFFECTS)
    if effect not in TAINT_EFFECTS:
        return "taint effect must be one of " + ", ".join(TAINT_EFFECTS)
    key, _, value = head.partition("=")
    return label_key_problem(key) or label_value_problem(value)
