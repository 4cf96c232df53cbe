"""raw_data features and the is_dropout label, on hand-computed learners."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from moocassets.schema import (
    DASHBOARD_SUMMARY,
    ENROLLMENTS,
    H5P_SCORES_SUMMARY,
    MOOC_DISCUSSIONS,
    MOOC_GRADES,
    MOOC_PROGRESS,
    RAW_DATA,
    VIDEO_PROGRESS_SUMMARY,
    TableSpec,
    frame_from_records,
)
from moocassets.transforms.features import build_raw_data, dropout_label, dropout_labels
from moocassets.transforms.payloads import course_frame

COURSE = "course-v1:DHQG-HCM+FM101+2025_S2"
START, END = "2025-09-01T00:00:00Z", "2025-12-31T00:00:00Z"
RUNNING = datetime(2025, 11, 1, tzinfo=UTC)  # 61 of 121 days: elapsed 0.5041
AFTER_END = datetime(2026, 3, 1, tzinfo=UTC)


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def na(value: Any) -> bool:
    return value is None or value is pd.NaT or value is pd.NA or (
        isinstance(value, float) and math.isnan(value))


def course(start: str | None = START, end: str | None = END) -> pd.DataFrame:
    return course_frame(COURSE, {"display_name": "FM101", "start": start, "end": end})


TABLES: dict[str, TableSpec] = {
    "enrollments": ENROLLMENTS, "grades": MOOC_GRADES, "progress": MOOC_PROGRESS,
    "discussions": MOOC_DISCUSSIONS, "h5p_summary": H5P_SCORES_SUMMARY,
    "video_summary": VIDEO_PROGRESS_SUMMARY, "dashboard": DASHBOARD_SUMMARY,
}


def build(
    learners: dict[int, dict[str, dict[str, Any]]],
    *,
    evaluation_time: datetime = RUNNING,
    course_df: pd.DataFrame | None = None,
    inactivity_days: int = 21,
) -> pd.DataFrame:
    """learners: uid → {table: row fields}; every learner is enrolled (default 2025-09-01)."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    for uid, tables in learners.items():
        tables = {"enrollments": {}, **tables}
        tables["enrollments"] = {"created": T("2025-09-01"), "enrollment_id": uid,
                                 **tables["enrollments"]}
        for name, fields in tables.items():
            rows[name].append({"user_id": uid, "course_id": COURSE, **fields})
    frames = {name: frame_from_records(TABLES[name], rows[name]) for name in TABLES}
    out = build_raw_data(
        **frames, course=course() if course_df is None else course_df,
        evaluation_time=evaluation_time, inactivity_days=inactivity_days,
    )
    pd.testing.assert_frame_equal(RAW_DATA.coerce_frame(out), out)
    RAW_DATA.validate_frame(out)
    assert sorted(out["user_id"].tolist()) == sorted(learners)
    assert out["dropout_risk_score"].isna().all()
    assert out["dropout_risk_reasons"].isna().all() and out["dropout_risk_model"].isna().all()
    return out


def row_of(frame: pd.DataFrame, uid: int) -> dict[str, Any]:
    rows = frame[frame["user_id"] == uid]
    assert len(rows) == 1
    return rows.iloc[0].to_dict()


def assert_row(row: dict[str, Any], expected: dict[str, Any]) -> None:
    for col, want in expected.items():
        got = row[col]
        if want is None:
            assert na(got), f"{col}: expected NULL, got {got!r}"
        elif isinstance(want, float):
            assert got == pytest.approx(want), col
        else:
            assert got == want, f"{col}: expected {want!r}, got {got!r}"


# ---- the running course's learners ------------------------------------------------------------

FULL = {  # every source, H3 dashboard
    "grades": {"grade_percentage": 72.5, "percent_grade": 0.725, "letter_grade": "C",
               "is_passed": False},
    "progress": {"completion_rate": 60.0, "current_chapter": "Chương 3", "current_section": "3.1",
                 "current_unit": "Bài 2", "last_activity": T("2025-10-30 12:00")},
    "discussions": {"threads_count": 2, "comments_count": 3, "total_interactions": 5,
                    "questions_count": 1, "total_upvotes": 4},
    "h5p_summary": {"total_contents": 10, "completed_contents": 8, "total_score": 750,
                    "total_max_score": 1000, "overall_percentage": 75.0,
                    "total_time_spent": 3600.0, "last_activity_at": T("2025-10-31 06:00")},
    "video_summary": {"total_videos": 20, "completed_videos": 10, "in_progress_videos": 5,
                      "total_duration": 7200.0, "total_watched_time": 3600.0},
    "dashboard": {"overall_completion": 55.5, "total_items": 70, "completed_items": 20,
                  "h5p_total_contents": 12, "h5p_completed_contents": 9,
                  "h5p_contents_in_course": 48, "h5p_total_time_spent": 4000.0,
                  "video_total_videos": 22, "video_completed_videos": 11, "source": "H3"},
}
SUMMARIES_ONLY = {  # no dashboard row: fallbacks
    "grades": {"grade_percentage": 30.0, "is_passed": False},
    "progress": {"completion_rate": 20.0, "last_activity": T("2025-10-01 00:00")},
    "h5p_summary": {"total_contents": 4, "completed_contents": 1, "overall_percentage": 50.0,
                    "total_time_spent": 90.5},
    "video_summary": {"total_videos": 6, "completed_videos": 3, "total_duration": 1000.0,
                      "total_watched_time": 1500.0},  # watched > duration: rate clipped to 1
}
NEVER_ACTIVE: dict[str, dict[str, Any]] = {"enrollments": {"created": T("2025-09-02")}}
JUST_ENROLLED: dict[str, dict[str, Any]] = {"enrollments": {"created": T("2025-10-20 12:00")}}
PASSED_IDLE = {
    "grades": {"grade_percentage": 90.0, "letter_grade": "A", "is_passed": True},
    "progress": {"completion_rate": 100.0, "last_activity": T("2025-09-02")},
}
NO_H5P = {  # the H5P system answered 404 for H1/H2/H3: no summary, no dashboard row
    "grades": {"grade_percentage": 10.0, "is_passed": False},
    "progress": {"completion_rate": 5.0, "last_activity": T("2025-10-25")},
    "discussions": {"threads_count": 1, "comments_count": 0, "total_interactions": 1},
}
ZERO_DENOMINATORS = {
    "progress": {"completion_rate": 0.0, "last_activity": T("2025-10-31")},
    "video_summary": {"total_videos": 2, "completed_videos": 0, "total_duration": 0.0,
                      "total_watched_time": 0.0},
    "dashboard": {"overall_completion": None, "h5p_total_contents": 0,
                  "h5p_completed_contents": 0, "h5p_contents_in_course": 0,
                  "video_total_videos": 0, "video_completed_videos": 0, "source": "H3"},
}
H4_DASHBOARD = {
    "h5p_summary": {"total_contents": 3, "completed_contents": 3, "overall_percentage": 90.0,
                    "last_activity_at": T("2025-10-20")},
    "dashboard": {"overall_completion": 25.0, "h5p_total_contents": 3,
                  "h5p_completed_contents": 3, "h5p_contents_in_course": None,
                  "video_total_videos": 4, "video_completed_videos": 1, "source": "H4"},
}

ENROLLED_AFTER_AS_OF: dict[str, dict[str, Any]] = {"enrollments": {"created": T("2025-11-20")}}

RUNNING_LEARNERS = {1: FULL, 2: SUMMARIES_ONLY, 3: NEVER_ACTIVE, 4: JUST_ENROLLED, 5: PASSED_IDLE,
                    6: NO_H5P, 7: ZERO_DENOMINATORS, 8: H4_DASHBOARD, 9: ENROLLED_AFTER_AS_OF}
ZERO_FORUM = {"discussion_threads_count": 0, "discussion_comments_count": 0,
              "discussion_total_interactions": 0, "discussion_questions_count": 0,
              "discussion_total_upvotes": 0}


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        (1, {  # everything known; the dashboard wins over the summaries
            "enrollment_date": T("2025-09-01"), "mooc_grade_percentage": 72.5,
            "mooc_letter_grade": "C", "mooc_is_passed": False, "progress_percent": 55.5,
            "current_chapter": "Chương 3", "current_section": "3.1", "current_unit": "Bài 2",
            "mooc_completion_rate": 60.0, "h5p_total_contents": 12, "video_total_videos": 22,
            "discussion_threads_count": 2, "discussion_comments_count": 3,
            "discussion_total_interactions": 5, "discussion_questions_count": 1,
            "discussion_total_upvotes": 4, "is_dropout": False, "as_of": T("2025-11-01"),
            "last_activity_at": T("2025-10-31 06:00"), "days_since_last_activity": 0,
            "weeks_since_enrollment": 8, "course_elapsed_fraction": 0.5041,
            "h5p_completed_contents": 9, "h5p_completion_rate": 0.1875,  # 9 / 48, not 9 / 12
            "h5p_overall_percentage": 75.0, "h5p_total_time_spent": 4000.0,
            "video_completed_videos": 11, "video_completion_rate": 0.5, "video_watch_rate": 0.5,
            "pace_gap": 9.59,  # 60 - 100 x 0.5041
        }),
        (2, {  # no dashboard: (1 + 3) / (4 + 6) x 100; inactive 31 days, failing
            "progress_percent": 40.0, "h5p_total_contents": 4, "h5p_completed_contents": 1,
            "h5p_completion_rate": None, "h5p_total_time_spent": 90.5, "video_total_videos": 6,
            "video_completed_videos": 3, "video_completion_rate": 0.5, "video_watch_rate": 1.0,
            "last_activity_at": T("2025-10-01"), "days_since_last_activity": 31,
            "is_dropout": True, "pace_gap": -30.41, **ZERO_FORUM,
        }),
        (3, {  # never active, enrolled 60 days before as_of
            "enrollment_date": T("2025-09-02"), "mooc_grade_percentage": None,
            "mooc_letter_grade": None, "mooc_is_passed": None, "progress_percent": None,
            "current_chapter": None, "mooc_completion_rate": None, "h5p_total_contents": None,
            "video_total_videos": None, "last_activity_at": None,
            "days_since_last_activity": None, "weeks_since_enrollment": 8,
            "h5p_completed_contents": None, "h5p_completion_rate": None,
            "h5p_overall_percentage": None, "video_completion_rate": None,
            "video_watch_rate": None, "pace_gap": None, "is_dropout": True, **ZERO_FORUM,
        }),
        (4, {"weeks_since_enrollment": 1, "is_dropout": False,  # never active, but only 11.5 d
             "last_activity_at": None}),
        (5, {"mooc_is_passed": True, "days_since_last_activity": 60, "is_dropout": False}),
        (6, {  # 404 from H5P: no H5P/video numbers at all (NULL, not 0)
            "progress_percent": None, "h5p_total_contents": None, "video_total_videos": None,
            "h5p_completed_contents": None, "h5p_total_time_spent": None,
            "video_completion_rate": None, "video_watch_rate": None,
            "last_activity_at": T("2025-10-25"), "days_since_last_activity": 7,
            "discussion_threads_count": 1, "discussion_questions_count": None,
            "is_dropout": False,
        }),
        (7, {  # zero denominators: NULL rates; no dashboard completion → summary fallback
            "progress_percent": 0.0, "h5p_total_contents": 0, "video_total_videos": 0,
            "h5p_completion_rate": None, "video_completion_rate": None,
            "video_watch_rate": None, "pace_gap": -50.41,
        }),
        (8, {  # H4 fallback dashboard: course H5P count unknown → no completion rate
            "progress_percent": 25.0, "h5p_total_contents": 3, "h5p_completed_contents": 3,
            "h5p_completion_rate": None, "h5p_overall_percentage": 90.0,
            "video_total_videos": 4, "video_completed_videos": 1, "video_completion_rate": 0.25,
            "video_watch_rate": None, "days_since_last_activity": 12, "is_dropout": False,
        }),
        (9, {"weeks_since_enrollment": 0, "is_dropout": False}),  # clipped, not negative
    ],
)
def test_running_course_learners(uid: int, expected: dict[str, Any]) -> None:
    out = build(RUNNING_LEARNERS)
    row = row_of(out, uid)
    assert row["course_id"] == COURSE
    assert row["as_of"] == T("2025-11-01")
    assert_row(row, expected)


ENDED_LEARNERS = {
    # worked to the last day and failed: a failure, not a dropout
    11: {"grades": {"grade_percentage": 40.0, "is_passed": False},
         "progress": {"completion_rate": 70.0, "last_activity": T("2025-12-30 18:00")}},
    # stopped mid-November and failed: dropout
    12: {"grades": {"is_passed": False},
         "progress": {"completion_rate": 30.0, "last_activity": T("2025-11-15")}},
    # MOOC activity after the end does not count; the H5P time before the end does
    13: {"progress": {"last_activity": T("2026-02-01")},
         "h5p_summary": {"total_contents": 1, "completed_contents": 1,
                         "last_activity_at": T("2025-12-20")}},
    # only activity after the end is known: none as of the end → dropout by the never-active rule
    14: {"progress": {"last_activity": T("2026-01-20")}},
}


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        (11, {"last_activity_at": T("2025-12-30 18:00"), "days_since_last_activity": 0,
              "is_dropout": False, "pace_gap": -30.0}),
        (12, {"days_since_last_activity": 46, "is_dropout": True}),
        (13, {"last_activity_at": T("2025-12-20"), "days_since_last_activity": 11,
              "is_dropout": False}),
        (14, {"last_activity_at": None, "days_since_last_activity": None, "is_dropout": True}),
    ],
)
def test_ended_course_is_seen_as_of_its_end(uid: int, expected: dict[str, Any]) -> None:
    out = build(ENDED_LEARNERS, evaluation_time=AFTER_END)
    row = row_of(out, uid)
    assert_row(row, {"as_of": T("2025-12-31"), "course_elapsed_fraction": 1.0,
                     "weeks_since_enrollment": 17, **expected})


def test_ended_course_row_does_not_change_when_replayed_later() -> None:
    first = build(ENDED_LEARNERS, evaluation_time=AFTER_END)
    later = build(ENDED_LEARNERS, evaluation_time=datetime(2027, 1, 1, tzinfo=UTC))
    pd.testing.assert_frame_equal(first, later)


def test_running_course_clips_skewed_future_activity_to_as_of() -> None:
    learners = {21: {"progress": {"last_activity": T("2025-11-01 00:05")}}}
    row = row_of(build(learners), 21)
    assert_row(row, {"last_activity_at": T("2025-11-01"), "days_since_last_activity": 0,
                     "is_dropout": False})


@pytest.mark.parametrize(
    ("course_df", "evaluation", "as_of", "fraction"),
    [
        (course(end=None), AFTER_END, "2026-03-01", None),  # no end: never "ended"
        (course(start=None), RUNNING, "2025-11-01", None),
        # end before start: the end still ends the course, the fraction is unknown
        (course(start=END, end=START), RUNNING, "2025-09-01", None),
        (course(start="2025-11-10T00:00:00Z"), RUNNING, "2025-11-01", 0.0),  # not started
        (course().iloc[0:0], AFTER_END, "2026-03-01", None),  # no course row at all
    ],
)
def test_course_dates_missing_or_odd(
    course_df: pd.DataFrame, evaluation: datetime, as_of: str, fraction: float | None
) -> None:
    learners = {31: {"progress": {"completion_rate": 50.0, "last_activity": T("2025-10-01")}}}
    row = row_of(build(learners, evaluation_time=evaluation, course_df=course_df), 31)
    assert_row(row, {"as_of": T(as_of), "course_elapsed_fraction": fraction})
    assert na(row["pace_gap"]) if fraction is None else row["pace_gap"] == 50.0


def test_timezone_naive_inputs_are_utc() -> None:
    aware = {41: {"enrollments": {"created": T("2025-09-01 08:00")},
                  "progress": {"last_activity": T("2025-10-10 23:30")}}}
    expected = build(aware)
    frames = {name: spec.empty_frame() for name, spec in TABLES.items()}
    for name in ("enrollments", "progress"):
        frames[name] = frame_from_records(
            TABLES[name], [{"user_id": 41, "course_id": COURSE, "enrollment_id": 41}])
    enr = frames["enrollments"].copy()
    enr["created"] = pd.Series([pd.Timestamp("2025-09-01 08:00")], dtype="datetime64[ns]")
    prog = frames["progress"].copy()
    prog["last_activity"] = pd.Series([pd.Timestamp("2025-10-10 23:30")], dtype="datetime64[ns]")
    naive_course = pd.DataFrame({"course_id": [COURSE],
                                 "start": [pd.Timestamp("2025-09-01")],
                                 "end": [pd.Timestamp("2025-12-31")]})
    got = build_raw_data(
        **{**frames, "enrollments": enr, "progress": prog}, course=naive_course,
        evaluation_time=datetime(2025, 11, 1),  # naive too
    )
    pd.testing.assert_frame_equal(got, expected)
    assert_row(row_of(got, 41), {"last_activity_at": T("2025-10-10 23:30"),
                                 "days_since_last_activity": 21, "is_dropout": True})


@pytest.mark.parametrize(
    ("days", "expected"),
    [(7, True), (10, True), (11, False), (21, False)],
)
def test_label_threshold_is_configurable(days: int, expected: bool) -> None:
    learners = {51: {"progress": {"last_activity": T("2025-10-22")}}}  # 10 days before as_of
    row = row_of(build(learners, inactivity_days=days), 51)
    assert row["days_since_last_activity"] == 10
    assert bool(row["is_dropout"]) is expected


def test_empty_enrollments_give_an_empty_typed_frame() -> None:
    out = build_raw_data(
        **{name: spec.empty_frame() for name, spec in TABLES.items()}, course=course(),
        evaluation_time=RUNNING,
    )
    assert out.empty
    pd.testing.assert_series_equal(out.dtypes, RAW_DATA.empty_frame().dtypes)


def test_duplicate_input_rows_are_refused() -> None:
    frames = {name: frame_from_records(spec, [{"user_id": 1, "course_id": COURSE}])
              for name, spec in TABLES.items()}
    frames["grades"] = pd.concat([frames["grades"]] * 2, ignore_index=True)
    with pytest.raises(pd.errors.MergeError):
        build_raw_data(**frames, course=course(), evaluation_time=RUNNING)


# ---- the label rule ---------------------------------------------------------------------------

AS_OF = datetime(2025, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("passed", "last", "enrolled", "days", "expected"),
    [
        (False, "2025-10-11", "2025-09-01", 21, True),  # exactly 21 days idle
        (False, "2025-10-11 00:00:01", "2025-09-01", 21, False),  # one second short
        (None, "2025-09-15", "2025-09-01", 21, True),  # no grade row = not passed
        (True, "2025-09-01", "2025-09-01", 21, False),  # passed: never a dropout
        (True, None, "2025-01-01", 21, False),
        (False, None, "2025-10-11", 21, True),  # never active, enrolled 21 days ago
        (False, None, "2025-10-12", 21, False),
        (False, None, None, 21, False),  # never active, enrolment unknown
        (False, "2025-10-29", "2025-09-01", 3, True),
        (False, "2025-10-30", "2025-09-01", 3, False),
        (False, "2025-10-20", "2025-11-05", 7, True),  # enrolled "after" as_of: activity rules
    ],
)
def test_dropout_label(
    passed: bool | None, last: str | None, enrolled: str | None, days: int, expected: bool
) -> None:
    kwargs = {
        "passed": passed,
        "last_activity_at": None if last is None else T(last).to_pydatetime(),
        "enrollment_date": None if enrolled is None else T(enrolled).to_pydatetime(),
        "as_of": AS_OF, "inactivity_days": days,
    }
    assert dropout_label(**kwargs) is expected
    vector = dropout_labels(
        passed=pd.Series([passed], dtype="boolean"),
        last_activity_at=pd.Series([kwargs["last_activity_at"]], dtype="datetime64[ns, UTC]"),
        enrollment_date=pd.Series([kwargs["enrollment_date"]], dtype="datetime64[ns, UTC]"),
        as_of=pd.Series([AS_OF], dtype="datetime64[ns, UTC]"),
        inactivity_days=days,
    )
    assert str(vector.dtype) == "boolean"
    assert vector.tolist() == [expected]


def test_dropout_label_naive_times_are_utc() -> None:
    assert dropout_label(passed=False, last_activity_at=datetime(2025, 10, 11),
                         enrollment_date=None, as_of=datetime(2025, 11, 1),
                         inactivity_days=21) is True


@pytest.mark.parametrize(("days", "error"), [(0, ValueError), (-5, ValueError),
                                             (1.5, TypeError), (True, TypeError)])
def test_inactivity_days_must_be_a_positive_int(days: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        dropout_label(passed=False, last_activity_at=None, enrollment_date=None, as_of=AS_OF,
                      inactivity_days=days)
    with pytest.raises(error):
        build({1: {}}, inactivity_days=days)
