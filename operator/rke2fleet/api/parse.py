"""The operator's entry points: validate a spec dict into a model or raise SpecError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rke2fleet.api.cluster import RKE2ClusterSpec
from rke2fleet.api.errors import FieldError, SpecError, field_errors
from rke2fleet.api.node import RKE2NodeSpec

M = TypeVar("M", bound=BaseModel)


def _plain(value: Any) -> Any:
    """Deep copy into dicts and lists: Kopf passes Mapping views, which strict models would refuse."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _parse(model: type[M], d: Any, root: str) -> M:
    if not isinstance(d, Mapping):
        raise SpecError([FieldError(root, "must be an object")])
    try:
        return model.model_validate(_plain(d))
    except ValidationError as exc:
        raise SpecError(field_errors(exc, root)) from None


def parse_cluster_spec(d: Mapping[str, Any], root: str = "spec") -> RKE2ClusterSpec:
    """Validate an RKE2Cluster `.spec`; raises SpecError with paths under `root`."""
    return _parse(RKE2ClusterSpec, d, root)


def parse_node_spec(d: Mapping[str, Any], root: str = "spec") -> RKE2NodeSpec:
    """Validate an RKE2Node `.spec`; raises SpecError with paths under `root`."""
    return _parse(RKE2NodeSpec, d, root)
