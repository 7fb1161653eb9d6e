"""Reconcile core: facts (read a host) → plan (pure) → apply (change it), plus cluster ordering."""
