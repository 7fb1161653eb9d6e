"""The sandbox's shared per-cluster state (see ``standins/fleetstore.py``, which the stand-ins load directly).

Reading API for tests: ``Datastore(dir).nodes(cluster=None)``, ``.events(cluster=None)``, ``.clusters()``.
"""

from rke2fleet.sandbox.standins.fleetstore import (
    Datastore,
    cluster_id_for_ca,
    process_running,
    process_start_ticks,
)

__all__ = ["Datastore", "cluster_id_for_ca", "process_running", "process_start_ticks"]
