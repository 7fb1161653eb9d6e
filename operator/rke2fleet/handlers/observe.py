"""Reconcile metrics around a handler's pass: duration, result, last success."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import kopf

from rke2fleet import metrics
from rke2fleet.metrics.labels import Kind


@contextlib.contextmanager
def observed(kind: Kind, namespace: str, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except kopf.TemporaryError:
        metrics.observe_reconcile(kind, "temporary_error", time.monotonic() - started)
        raise
    except kopf.PermanentError:
        metrics.observe_reconcile(kind, "permanent_error", time.monotonic() - started)
        raise
    except Exception:
        metrics.observe_reconcile(kind, "error", time.monotonic() - started)
        raise
    metrics.observe_reconcile(kind, "ok", time.monotonic() - started)
    metrics.mark_reconciled(kind, namespace, name)
