"""Stores the engine reads and writes objects through (engine.ports.Store): the Kubernetes API
as Kopf's indexes see it (kube), and an in-memory one (memory)."""
