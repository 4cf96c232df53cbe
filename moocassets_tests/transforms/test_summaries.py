"""Detail → summary aggregates, on hand-computed learners."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from moocassets.schema import (
    H5P_SCORES,
    H5P_SCORES_SUMMARY,
    VIDEO_PROGRESS,
    VIDEO_PROGRESS_SUMMARY,
    TableSpec,
    frame_from_records,
)
from moocassets.transforms.payloads import h5p_score_rows, video_rows
from moocassets.transforms.summaries import h5p_summary, video_summary

COURSE = "course-v1:UEL+NLTT241225+2025_12"
T = pd.Timestamp


def checked(spec: TableSpec, frame: pd.DataFrame) -> pd.DataFrame:
    coerced = spec.coerce_frame(frame)
    pd.testing.assert_frame_equal(coerced, frame)
    spec.validate_frame(frame)
    return frame


def score(uid: int, content: int, **kw: Any) -> dict[str, Any]:
    return {"user_id": uid, "course_id": COURSE, "content_id": content, **kw}


def by_user(frame: pd.DataFrame, uid: int) -> dict[str, Any]:
    rows = frame[frame["user_id"] == uid]
    assert len(rows) == 1
    return rows.iloc[0].to_dict()


def na(value: Any) -> bool:
    return value is None or value is pd.NaT or value is pd.NA or (
        isinstance(value, float) and math.isnan(value))


H5P_DETAIL = [
    # learner 1: three attempted, two finished, times from epochs and a flag-only row
    score(1, 10, score=8, max_score=10, is_finished=True, time_spent=120.5,
          opened_at=T("2025-10-01 08:00", tz="UTC"), finished_at=T("2025-10-01 08:30", tz="UTC")),
    score(1, 11, score=2, max_score=10, is_finished=False, time_spent=30,
          opened_at=T("2025-10-03 09:00", tz="UTC")),
    score(1, 12, score=5, max_score=5, is_finished=True, time_spent=None),  # flags only
    # learner 2: only zero-point contents, no times, unknown finished
    score(2, 10, score=0, max_score=0, is_finished=None),
    # learner 3: scores unknown
    score(3, 10, is_finished=False, time_spent=4.25),
]


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        (1, {"total_contents": 3, "completed_contents": 2, "total_score": 15,
             "total_max_score": 25, "overall_percentage": 60.0, "total_time_spent": 150.5,
             "last_activity_at": T("2025-10-03 09:00", tz="UTC")}),
        (2, {"total_contents": 1, "completed_contents": 0, "total_score": 0,
             "total_max_score": 0, "overall_percentage": None, "total_time_spent": None,
             "last_activity_at": None}),
        (3, {"total_contents": 1, "completed_contents": 0, "total_score": None,
             "total_max_score": None, "overall_percentage": None, "total_time_spent": 4.25,
             "last_activity_at": None}),
    ],
)
def test_h5p_summary(uid: int, expected: dict[str, Any]) -> None:
    summary = checked(H5P_SCORES_SUMMARY, h5p_summary(frame_from_records(H5P_SCORES, H5P_DETAIL)))
    assert sorted(summary["user_id"].tolist()) == [1, 2, 3]
    row = by_user(summary, uid)
    assert row["course_id"] == COURSE
    for col, want in expected.items():
        assert na(row[col]) if want is None else row[col] == want, col


def test_h5p_summary_of_parsed_payload() -> None:
    """End to end from an H1 payload: flags are not times, epochs are."""
    payload = {"user_id": "5", "scores": [
        {"content_id": 1, "score": 9, "max_score": 10, "opened": 1, "finished": 1, "time": 10},
        {"content_id": 2, "score": 3, "max_score": 10, "opened": 1736900000, "finished": 0,
         "time": 20.5},
    ]}
    detail = h5p_score_rows(COURSE, {5: payload, 6: None}, datetime(2025, 11, 1, tzinfo=UTC))
    row = by_user(checked(H5P_SCORES_SUMMARY, h5p_summary(detail.frame)), 5)
    assert (row["total_contents"], row["completed_contents"]) == (2, 1)
    assert (row["total_score"], row["total_max_score"], row["overall_percentage"]) == (12, 20, 60.0)
    assert row["total_time_spent"] == 30.5
    assert row["last_activity_at"] == T("2025-01-15 00:13:20", tz="UTC")


VIDEO_DETAIL = [
    {"user_id": 1, "course_id": COURSE, "content_id": 50, "status": "completed",
     "progress_percent": 100, "current_time": 600, "duration": 600},
    {"user_id": 1, "course_id": COURSE, "content_id": 51, "status": "in_progress",
     "progress_percent": 83.08, "current_time": 498.48, "duration": 600},
    {"user_id": 1, "course_id": COURSE, "content_id": 52, "status": "started",
     "progress_percent": 10, "current_time": 700, "duration": 300.5},  # clipped to duration
    {"user_id": 1, "course_id": COURSE, "content_id": 53, "status": "not_started",
     "progress_percent": None, "current_time": None, "duration": 100},
    {"user_id": 2, "course_id": COURSE, "content_id": 50, "status": None,
     "current_time": 42.5, "duration": None},  # duration unknown: current_time counts
    {"user_id": 3, "course_id": COURSE, "content_id": 50, "status": "completed",
     "progress_percent": 100, "current_time": 0, "duration": 0},
]


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        (1, {"total_videos": 4, "completed_videos": 1, "in_progress_videos": 2,
             "total_duration": 1600.5, "total_watched_time": 1398.98,
             "average_progress": 64.36}),  # (100 + 83.08 + 10) / 3 = 64.36
        (2, {"total_videos": 1, "completed_videos": 0, "in_progress_videos": 0,
             "total_duration": None, "total_watched_time": 42.5, "average_progress": None}),
        (3, {"total_videos": 1, "completed_videos": 1, "in_progress_videos": 0,
             "total_duration": 0.0, "total_watched_time": 0.0, "average_progress": 100.0}),
    ],
)
def test_video_summary(uid: int, expected: dict[str, Any]) -> None:
    summary = checked(
        VIDEO_PROGRESS_SUMMARY, video_summary(frame_from_records(VIDEO_PROGRESS, VIDEO_DETAIL)))
    row = by_user(summary, uid)
    for col, want in expected.items():
        assert na(row[col]) if want is None else row[col] == pytest.approx(want), col


def test_video_summary_of_parsed_payload() -> None:
    payload = {"video_progress": [
        {"content_id": 1, "status": "completed", "progress_percent": 100, "current_time": 300.25,
         "duration": 300.25},
        {"content_id": 2, "status": "started", "progress_percent": 5, "current_time": 15,
         "duration": 300},
    ]}
    detail = video_rows(COURSE, {9: payload}, datetime(2025, 11, 1, tzinfo=UTC))
    row = by_user(checked(VIDEO_PROGRESS_SUMMARY, video_summary(detail.frame)), 9)
    assert (row["total_videos"], row["completed_videos"], row["in_progress_videos"]) == (2, 1, 1)
    assert row["total_duration"] == 600.25
    assert row["total_watched_time"] == 315.25
    assert row["average_progress"] == 52.5


@pytest.mark.parametrize(
    ("fn", "detail", "summary"),
    [
        (h5p_summary, H5P_SCORES, H5P_SCORES_SUMMARY),
        (video_summary, VIDEO_PROGRESS, VIDEO_PROGRESS_SUMMARY),
    ],
)
def test_empty_detail_gives_empty_typed_summary(
    fn: Any, detail: TableSpec, summary: TableSpec
) -> None:
    out = fn(detail.empty_frame())
    assert out.empty
    pd.testing.assert_series_equal(out.dtypes, summary.empty_frame().dtypes)
    assert list(out.columns) == summary.column_names


def test_summaries_key_on_course_too() -> None:
    other = "course-v1:X+Y+Z"
    rows = [score(1, 10, score=1, max_score=2), {**score(1, 10, score=2, max_score=2),
                                                  "course_id": other}]
    summary = checked(H5P_SCORES_SUMMARY, h5p_summary(frame_from_records(H5P_SCORES, rows)))
    assert summary.set_index("course_id")["total_score"].to_dict() == {COURSE: 1, other: 2}
