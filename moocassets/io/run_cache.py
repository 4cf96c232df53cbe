"""The frames a process wrote in a run, kept so that run's downstream steps need not read them
back: an optimisation only (a miss reads the table, as a step on another host always does)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pandas as pd

__all__ = ["RUN_FRAMES", "RunFrameCache"]

_Key = tuple[str, tuple[str, ...]]


class RunFrameCache:
    """The frames a process wrote, per run, so the same run's downstream steps need not read them
    back. Only whole partitions are kept (never a scoped replace), only for the last ``max_runs``
    runs (a run never sees another run's frames), and every hit is a copy (a step cannot change
    what the next one reads)."""

    def __init__(self, max_runs: int = 2) -> None:
        self._max_runs = max_runs
        self._runs: dict[str, dict[_Key, pd.DataFrame]] = {}
        self._lock = threading.Lock()

    def put(self, run_id: str, table: str, keys: Sequence[str], frame: pd.DataFrame) -> None:
        with self._lock:
            frames = self._runs.pop(run_id, {})
            frames[(table, tuple(sorted(keys)))] = frame
            self._runs[run_id] = frames  # most recent last
            while len(self._runs) > self._max_runs:
                self._runs.pop(next(iter(self._runs)))

    def get(self, run_id: str, table: str, keys: Sequence[str]) -> pd.DataFrame | None:
        with self._lock:
            frame = self._runs.get(run_id, {}).get((table, tuple(sorted(keys))))
        return None if frame is None else frame.copy()


RUN_FRAMES = RunFrameCache()
"""Shared by every WarehouseIOManager of the process (Dagster may copy the resource object)."""
