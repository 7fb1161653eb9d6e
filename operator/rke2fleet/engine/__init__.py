"""The reconcile engine: the cluster pass, the node pass, node removal and turn-taking.

It reaches the outside through two interfaces only (engine.ports): the hosts (the SSH pool) and
a store (objects, their statuses and Secrets). The Kopf handlers drive it against the
Kubernetes API; tests drive it against an in-memory store.
"""
