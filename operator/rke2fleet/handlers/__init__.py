"""Kopf glue: thin handlers that call the reconcile core. Importing this package registers them."""
