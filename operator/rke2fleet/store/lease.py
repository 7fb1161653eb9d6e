"""Leader election on a `coordination.k8s.io/v1` Lease, as every controller does it (client-go's
leaderelection): acquire when the lease is free or its holder has not renewed it for a lease
duration (timed by this process's own clock from when it last saw the record change, so clocks
need not agree), renew every retry period, give up when no renewal succeeded within the renew
deadline, and release on shutdown so a standby takes over at once."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from rke2fleet.store.api import KubeApi

log = logging.getLogger("rke2fleet.leader")


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def micro_time(at: float | None = None) -> str:
    when = datetime.datetime.fromtimestamp(time.time() if at is None else at, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, config: LeaseConfig, api: KubeApi | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.config = config
        self.api = api or KubeApi()
        self.clock = clock
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.last_renew = 0.0
        self.transitions = 0

    @property
    def _path(self) -> str:
        ns, name = quote(self.config.namespace, safe=""), quote(self.config.name, safe="")
        return f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"

    def _spec(self, lease: dict[str, Any] | None, *, release: bool = False) -> dict[str, Any]:
        c = self.config
        old = (lease or {}).get("spec") or {}
        mine = old.get("holderIdentity") == c.identity
        now = micro_time()
        return {
            "holderIdentity": "" if release else c.identity,
            "leaseDurationSeconds": 1 if release else int(c.lease_duration),
            "acquireTime": old.get("acquireTime") if mine else now,
            "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (0 if mine or release or not lease else 1),
        }

    def _get(self) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = self.api.request("GET", self._path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease

    def try_acquire_or_renew(self) -> bool:
        """One round; True when this process holds the lease afterwards."""
        c = self.config
        try:
            lease = self._get()
            if lease is None:
                body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": c.name, "namespace": c.namespace}, "spec": self._spec(None)}  # fmt: skip
                self.api.request("POST", self._path.rsplit("/", 1)[0], body)
                return self._held()
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            seen = (holder, str(spec.get("renewTime")))
            if seen != self._observed:
                self._observed, self._observed_at = seen, self.clock()
            duration = float(spec.get("leaseDurationSeconds") or c.lease_duration)
            if holder and holder != c.identity and self.clock() - self._observed_at < duration:
                return False  # held by another that renews
            lease["spec"] = self._spec(lease)
            self.api.request("PUT", self._path, lease)  # carries metadata.resourceVersion: optimistic
            if holder != c.identity:
                self.transitions += 1
                log.info("acquired lease %s/%s as %s", c.namespace, c.name, c.identity)
            return self._held()
        except ApiException as exc:
            if exc.status not in (409, 404):
                log.warning("lease %s/%s: %s", c.namespace, c.name, exc.reason)
            return False
        except OSError as exc:  # the API server unreachable
            log.warning("lease %s/%s: %s", c.namespace, c.name, exc)
            return False

    def _held(self) -> bool:
        self.last_renew = self.clock()
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this process leads (True) or `stop` is set (False)."""
        log.info("waiting to lead (lease %s/%s) as %s", self.config.namespace, self.config.name, self.config.identity)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                return True
            stop.wait(self.config.retry_period)
        return False

    def keep(self, stop: threading.Event, lost: Callable[[], None]) -> None:
        """Renew until `stop`; call `lost` when no renewal succeeded within the renew deadline."""
        while not stop.wait(self.config.retry_period):
            if self.try_acquire_or_renew():
                continue
            if self.clock() - self.last_renew > self.config.renew_deadline:
                log.error("lost the lease %s/%s: stopping", self.config.namespace, self.config.name)
                lost()
                return

    def release(self) -> None:
        """Give the lease up (only if still ours), so a standby need not wait a lease duration."""
        try:
            lease = self._get()
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
                lease["spec"] = self._spec(lease, release=True)
                self.api.request("PUT", self._path, lease)
                log.info("released lease %s/%s", self.config.namespace, self.config.name)
        except (ApiException, OSError) as exc:
            log.warning("releasing lease %s/%s: %s", self.config.namespace, self.config.name, exc)
