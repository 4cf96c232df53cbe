"""Small helpers shared by the asset modules (no I/O)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import dagster as dg
import pandas as pd

from moocassets.schema import PARTITION_COLUMN

COURSE_COLUMNS = ["course_id", "display_name", "start", "end"]


def _course_frame_type() -> dg.DagsterType:
    from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        return create_dagster_pandas_dataframe_type(
            name="CourseFrame",
            description="One row per course: id, display name, start and end (UTC).",
            columns=[
                PandasColumn.string_column("course_id", non_nullable=True, unique=True),
                PandasColumn.exists("display_name"),
                PandasColumn.datetime_column("start", tz="UTC", ignore_missing_vals=True),
                PandasColumn.datetime_column("end", tz="UTC", ignore_missing_vals=True),
            ],
        )


COURSE_FRAME_TYPE = _course_frame_type()


def course_keys(context: dg.AssetExecutionContext) -> list[str]:
    """The course partitions this step materializes (one, or a range in a single-run backfill)."""
    return list(context.partition_keys)


def split_by_course(frame: pd.DataFrame, course_ids: list[str]) -> dict[str, pd.DataFrame]:
    """Rows of ``frame`` per course id, in ``course_ids`` order (empty frames for absent ones)."""
    groups = {
        key: part for key, part in frame.groupby(PARTITION_COLUMN, sort=False, dropna=True)
    } if len(frame) else {}
    return {c: groups.get(c, frame.iloc[0:0]).reset_index(drop=True) for c in course_ids}


T = TypeVar("T")


class RunMemo(Generic[T]):
    """A value computed once per run and key, reused by later steps of the same run.

    Steps of a run share the process (in-process executor), so two assets that need the same
    derived frame (``raw_data`` and ``raw_data_history``: the features as of the run) compute it
    once. Only the last ``max_runs`` runs are kept; a different run never sees another's value.
    """

    def __init__(self, max_runs: int = 2) -> None:
        self._max_runs = max_runs
        self._runs: dict[str, dict[Hashable, T]] = {}
        self._lock = threading.Lock()

    def get_or_compute(self, run_id: str, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            values = self._runs.get(run_id, {})
            if key in values:
                return values[key]
        value = compute()
        with self._lock:
            values = self._runs.pop(run_id, {})
            values.setdefault(key, value)
            self._runs[run_id] = values  # most recent last
            while len(self._runs) > self._max_runs:
                self._runs.pop(next(iter(self._runs)))
            return values[key]
