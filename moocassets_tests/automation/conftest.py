"""Fixtures shared by the automation tests."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A fresh in-memory Dagster instance per test."""
    inst = dg.DagsterInstance.ephemeral()
    try:
        yield inst
    finally:
        inst.dispose()
