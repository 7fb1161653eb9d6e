"""Fixtures for the metrics tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

_counter = itertools.count()


@pytest.fixture
def unique_ns() -> Callable[[], str]:
    """The registry is process-wide: each test uses namespaces no other test touches."""
    return lambda: f"ns-{next(_counter)}"
