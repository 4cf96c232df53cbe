"""Evaluating automation ticks in-process: one place for the tests of ``moocassets/automation``."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import datetime

import dagster as dg

_INCLUDE_SOURCES = r".*include_sources.*"


def evaluate(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    at: datetime,
    cursor: object = None,
    selection: dg.AssetSelection | None = None,
) -> dg.EvaluateAutomationConditionsResult:
    """One tick of the automation sensor at ``at``, continuing from ``cursor``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INCLUDE_SOURCES, category=dg.BetaWarning)
        return dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=at, cursor=cursor,  # type: ignore[arg-type]
            asset_selection=selection,
        )


def requested(
    result: dg.EvaluateAutomationConditionsResult, names: Iterable[str]
) -> dict[str, set[str]]:
    """The partitions requested per asset name (assets with no request left out)."""
    out: dict[str, set[str]] = {}
    for name in names:
        keys = result.get_requested_partitions(dg.AssetKey(name))
        if keys:
            out[name] = set(keys)
    return out
