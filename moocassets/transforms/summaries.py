"""Detail tables → their summary tables (the ERD's "summarizes"), pure pandas.

These exact definitions are what the asset checks re-compute (summary == aggregate of detail),
so any change here must be made there too. Aggregates are per ``(user_id, course_id)``; a learner
without detail rows (H1/H2 404 ``no_data``) has no summary row. "Sum" means the sum of the
non-NULL values, NULL when every value is NULL; "mean" likewise ignores NULLs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from moocassets.schema import (
    H5P_SCORES,
    H5P_SCORES_SUMMARY,
    VIDEO_PROGRESS,
    VIDEO_PROGRESS_SUMMARY,
)

__all__ = ["SUMMARIES", "Summary", "h5p_summary", "video_summary"]

_KEY = ["user_id", "course_id"]


def h5p_summary(h5p_scores: pd.DataFrame) -> pd.DataFrame:
    """``h5p_scores`` → ``h5p_scores_summary``, one row per (user_id, course_id) with rows.

    * ``total_contents`` = number of rows (attempted contents, not the course's contents)
    * ``completed_contents`` = number of rows with ``is_finished`` TRUE
    * ``total_score`` = sum of ``score``; ``total_max_score`` = sum of ``max_score``
    * ``overall_percentage`` = total_score / total_max_score x 100, NULL when total_max_score is
      0 or NULL (or total_score is NULL)
    * ``total_time_spent`` = sum of ``time_spent``
    * ``last_activity_at`` = the latest of every ``opened_at`` and ``finished_at`` (NULL if none)
    """
    detail = H5P_SCORES.coerce_frame(h5p_scores)
    if detail.empty:
        return H5P_SCORES_SUMMARY.empty_frame()
    detail = detail.assign(
        _finished=detail["is_finished"].fillna(False).astype("int64"),
        _latest=detail[["opened_at", "finished_at"]].max(axis=1, skipna=True),
    )
    grouped = detail.groupby(_KEY, sort=True, dropna=False)
    sums = grouped[["score", "max_score", "time_spent"]].sum(min_count=1)  # NULL if all NULL
    out = pd.DataFrame({
        "total_contents": grouped["content_id"].size(),
        "completed_contents": grouped["_finished"].sum(),
        "total_score": sums["score"],
        "total_max_score": sums["max_score"],
        "total_time_spent": sums["time_spent"],
        "last_activity_at": grouped["_latest"].max(),
    }).reset_index()
    score = out["total_score"].astype("Float64")
    max_score = out["total_max_score"].astype("Float64")
    pct = (score / max_score.where(max_score > 0) * 100.0).astype("float64")
    out["overall_percentage"] = pct
    return H5P_SCORES_SUMMARY.coerce_frame(out)


def video_summary(video_progress: pd.DataFrame) -> pd.DataFrame:
    """``video_progress`` → ``video_progress_summary``, one row per (user_id, course_id) with rows.

    * ``total_videos`` = number of rows (opened videos)
    * ``completed_videos`` = rows with status ``completed``
    * ``in_progress_videos`` = rows with status ``in_progress`` or ``started``
    * ``total_duration`` = sum of ``duration``
    * ``total_watched_time`` = sum over rows of min(current_time, duration), i.e. current_time
      clipped to the duration when the duration is known (current_time itself when it is not;
      rows without current_time add nothing)
    * ``average_progress`` = mean of ``progress_percent``
    """
    detail = VIDEO_PROGRESS.coerce_frame(video_progress)
    if detail.empty:
        return VIDEO_PROGRESS_SUMMARY.empty_frame()
    status = detail["status"]
    watched = detail["current_time"].where(
        detail["duration"].isna(), detail[["current_time", "duration"]].min(axis=1, skipna=False)
    )
    detail = detail.assign(
        _completed=(status == "completed").astype("int64"),
        _in_progress=status.isin(["in_progress", "started"]).astype("int64"),
        _watched=watched,
    )
    grouped = detail.groupby(_KEY, sort=True, dropna=False)
    sums = grouped[["duration", "_watched"]].sum(min_count=1)  # NULL if all NULL
    out = pd.DataFrame({
        "total_videos": grouped["content_id"].size(),
        "completed_videos": grouped["_completed"].sum(),
        "in_progress_videos": grouped["_in_progress"].sum(),
        "total_duration": sums["duration"],
        "total_watched_time": sums["_watched"],
        "average_progress": grouped["progress_percent"].mean(),
    }).reset_index()
    return VIDEO_PROGRESS_SUMMARY.coerce_frame(out)


@dataclass(frozen=True)
class Summary:
    """A summary table: which detail table it aggregates, and how."""

    table: str
    detail: str
    aggregate: Callable[[pd.DataFrame], pd.DataFrame]
    description: str


SUMMARIES: tuple[Summary, ...] = (
    Summary(
        H5P_SCORES_SUMMARY.name, H5P_SCORES.name, h5p_summary,
        "Per-learner aggregate of `h5p_scores`: attempted and finished contents, scores, time.",
    ),
    Summary(
        VIDEO_PROGRESS_SUMMARY.name, VIDEO_PROGRESS.name, video_summary,
        "Per-learner aggregate of `video_progress`: opened, completed and in-progress videos.",
    ),
)
"""Every summary table, declared once: the summary assets, their ``matches_detail`` checks and
the simulated replay are generated from it."""
