"""What a node pass knows and reads of the node's certificates (reference §11): the dates in its
status, the check (folded into a facts read when it is due), and whether they are to be rotated."""

from __future__ import annotations

import datetime

from rke2fleet.api.status import CertificatesStatus
from rke2fleet.engine.core import Engine
from rke2fleet.engine.node_context import NodeContext
from rke2fleet.engine.outcome import NodeOutcome
from rke2fleet.hostaccess import HostAccessError
from rke2fleet.reconcile import certificates as certs
from rke2fleet.reconcile.facts import HostFacts
from rke2fleet.reconcile.plan import Action, Plan
from rke2fleet.reconcile.steps import Step


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CertificateReads:
    engine: Engine
    ctx: NodeContext
    out: NodeOutcome
    checked: tuple[int, str] | None = None  # the check's (exit status, output), run with the facts

    def check_due(self) -> bool:
        return certs.check_due(self.known_certificates(), self.ctx.cluster.certificates.check_interval, now())

    def certificate_rotation(self) -> Plan:
        """A settled node whose first certificate expires within rotateBeforeDays: rotate them
        (the service stopped), start it, wait for it; the rollout's gates apply."""
        days = self.ctx.cluster.certificates.rotate_before_days
        why = certs.rotation_due(self.known_certificates(), days, now())
        if why is None:
            return Plan(())
        if self.ctx.desired.role == "agent":  # servers first, as for upgrades
            servers = [r for r in self.engine.store.nodes(*self.ctx.ckey) if r.role == "server"]
            if any(certs.rotation_due(certs.certificates_of(r.status), days, now()) for r in servers):
                self.out.retry_after = 10.0
                return Plan(())
        unit = self.ctx.desired.unit
        actions = (
            Action(Step.ROTATE_CERTIFICATES, why),
            Action(Step.START, f"{unit} with new certificates"),
            Action(Step.WAIT_READY, f"{unit} starting"),
        )
        self.out.status.plan = [str(a) for a in actions]
        return Plan(actions)

    def known_certificates(self) -> CertificatesStatus | None:
        return certs.certificates_of(self.ctx.record.status)

    async def read_certificates(self, facts: HostFacts, *, force: bool, read: tuple[int, str] | None = None) -> None:
        """The first certificate to expire, read about once per checkInterval (and after a start:
        RKE2 renews the ones close to expiry as it starts). `read`: (exit status, output) of the
        check, already run with the facts read after the start."""
        known = self.known_certificates()
        if not facts.unit(self.ctx.desired.role).is_active:
            return
        if not force and not self.check_due():
            return
        checked = CertificatesStatus(checked_at=certs.rfc3339(now()))
        try:
            if read is None:
                res = await self.engine.hosts.run(self.ctx.target, script=certs.CHECK_SCRIPT, check=False)
                read = res.exit_status, res.stdout
            expiry = certs.parse_check(read[1]) if read[0] == 0 else None
        except (HostAccessError, ValueError):
            expiry = None
        if expiry is not None:
            checked.not_after, checked.certificate = certs.rfc3339(expiry.not_after), expiry.certificate
        elif known is not None:  # unreadable now: keep what was read last, look again in an interval
            checked.not_after, checked.certificate = known.not_after, known.certificate
        self.out.status.certificates = checked
