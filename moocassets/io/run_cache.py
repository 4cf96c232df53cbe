"""The frames a process wrote in a run, kept so that run's downstream steps need not read them
back: an optimisation only (a miss reads the table, as a step on another host always does)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from moocassets.run_scoped import RunScoped

__all__ = ["RUN_FRAMES", "RunFrameCache"]


class RunFrameCache:
    """The frames a process wrote, per run, so the same run's downstream steps need not read them
    back. Only whole partitions are kept (never a scoped replace), only for the last ``max_runs``
    runs, and every hit is a copy (a step cannot change what the next one reads)."""

    def __init__(self, max_runs: int = 2) -> None:
        self._frames: RunScoped[pd.DataFrame] = RunScoped(max_runs)

    def put(self, run_id: str, table: str, keys: Sequence[str], frame: pd.DataFrame) -> None:
        self._frames.put(run_id, (table, tuple(sorted(keys))), frame)

    def get(self, run_id: str, table: str, keys: Sequence[str]) -> pd.DataFrame | None:
        frame = self._frames.get(run_id, (table, tuple(sorted(keys))))
        return None if frame is None else frame.copy()


RUN_FRAMES = RunFrameCache()
"""Shared by every WarehouseIOManager of the process (Dagster may copy the resource object)."""
