"""Small helpers shared by the asset modules (no I/O)."""

from __future__ import annotations

import warnings

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

