"""The sandbox's shared per-cluster state (see ``standins/fleetstore.py``, which the stand-ins load directly).

Reading API for tests: ``Datastore(dir).nodes(cluster=None)``, ``.events(cluster=None)``, ``.clusters()``,
``.cluster(cluster)``, ``.members(cluster)``, ``.quorum(cluster)``.
"""

from rke2fleet_sandbox.standins.fleetstore import (
    NOT_READY_CNI,
    VOTER_CONDITIONS,
    Datastore,
    cluster_id_for_ca,
    has_quorum,
    process_running,
    process_start_ticks,
    token_hash,
)

__all__ = [
    "NOT_READY_CNI",
    "VOTER_CONDITIONS",
    "Datastore",
    "cluster_id_for_ca",
    "has_quorum",
    "process_running",
    "process_start_ticks",
    "token_hash",
]
