"""Fixtures for the observability end-to-end tests: the `e2e` fixture of tests/e2e, reused as is.

Re-exporting the fixture and the report hook (which tells the fixture whether the test failed,
so the secret scan is skipped on failure) makes them apply to this folder too.
"""

from __future__ import annotations

from tests.e2e.conftest import e2e, pytest_runtest_makereport

__all__ = ["e2e", "pytest_runtest_makereport"]
