"""Values that live for one run, shared by the steps of that run (they run in one process).

Used by the warehouse IO manager (the frames a run wrote, so its downstream steps need not read
them back) and by ``raw_data``/``raw_data_history`` (the features, computed once per run). Only
the last ``max_runs`` runs are kept; a run never sees another run's values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class RunScoped(Generic[V]):
    def __init__(self, max_runs: int = 2) -> None:
        self._max_runs = max_runs
        self._runs: dict[str, dict[Hashable, V]] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str, key: Hashable) -> V | None:
        with self._lock:
            return self._runs.get(run_id, {}).get(key)

    def put(self, run_id: str, key: Hashable, value: V, *, overwrite: bool = True) -> V:
        """Store ``value`` (with ``overwrite=False`` only if the run has none for ``key``);
        return the value now stored."""
        with self._lock:
            values = self._runs.pop(run_id, {})
            if overwrite or key not in values:
                values[key] = value
            self._runs[run_id] = values  # most recent last
            while len(self._runs) > self._max_runs:
                self._runs.pop(next(iter(self._runs)))
            return values[key]

    def get_or_compute(self, run_id: str, key: Hashable, compute: Callable[[], V]) -> V:
        """The run's value for ``key``, computed (outside the lock) on first use."""
        found = self.get(run_id, key)
        return found if found is not None else self.put(run_id, key, compute(), overwrite=False)
