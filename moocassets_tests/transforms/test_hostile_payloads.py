"""Hostile payloads, derived from the documented ones: one bad record never crashes a course and
never stores a wrong value. Every value outside its column is a counted reject with a bounded
reason; the rest of the course's records are kept (issue: hardening, part 1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from moocassets.schema import (
    DASHBOARD_SUMMARY,
    ENROLLMENTS,
    H5P_SCORES,
    MOOC_DISCUSSIONS,
    MOOC_GRADES,
    MOOC_PROGRESS,
    VIDEO_PROGRESS,
    TableSpec,
)
from moocassets.transforms.payloads import (
    Parsed,
    dashboard_rows,
    discussion_rows,
    enrollment_rows,
    grade_rows,
    h5p_score_rows,
    progress_rows,
    video_rows,
)
from moocassets.transforms.payloads.records import QUOTE_LIMIT

COURSE = "course-v1:DHQG-HCM+FM101+2025_S2"
FETCHED = datetime(2025, 11, 1, 12, 0, tzinfo=UTC)
GOOD_GRADE = {"user_id": 1, "grade_percentage": 81.0, "letter_grade": "B", "is_passed": True}


def _stored(spec: TableSpec, parsed: Parsed) -> pd.DataFrame:
    """What would be written: the frame passes the column's own checks (so the database would
    accept it) and every record is either a row or a counted reject."""
    frame = spec.coerce_frame(parsed.frame)
    spec.validate_frame(frame)
    return frame


def _one_reject(parsed: Parsed) -> str:
    assert len(parsed.rejects) == 1, parsed.rejects
    return parsed.rejects[0].reason


# ---- learner ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("²", "non-integer user id '²'"),             # a digit to str.isdigit, not to int()
        ("١٢٣", "non-integer user id '١٢٣'"),        # Arabic-Indic digits: not silently 123
        ("9" * 5000, "non-integer user id '999"),    # int() would refuse > 4300 digits
        (2**70, "user id 1180591620717411303424 outside [1, 2147483647]"),
        (3_000_000_000, "user id 3000000000 outside [1, 2147483647]"),
    ],
)
def test_a_bad_learner_id_in_an_export_rejects_that_row_only(user_id: Any, reason: str) -> None:
    parsed = grade_rows(COURSE, [GOOD_GRADE, {**GOOD_GRADE, "user_id": user_id}], FETCHED)
    assert _one_reject(parsed).startswith(reason)
    assert len(_one_reject(parsed)) < QUOTE_LIMIT + 60
    assert _stored(MOOC_GRADES, parsed)["user_id"].tolist() == [1]


def test_an_echoed_learner_id_that_is_not_a_number_rejects_that_learner() -> None:
    body = {"user_id": "²", "scores": [{"content_id": 1, "score": 1, "max_score": 2}]}
    good = {"user_id": "8", "scores": [{"content_id": 1, "score": 1, "max_score": 2}]}
    parsed = h5p_score_rows(COURSE, {7: body, 8: good}, FETCHED)
    assert _one_reject(parsed) == "non-integer echoed user_id '²'"
    assert _stored(H5P_SCORES, parsed)["user_id"].tolist() == [8]


# ---- values beyond their column -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "spec", "good", "bad", "reason"),
    [
        (discussion_rows, MOOC_DISCUSSIONS, {"user_id": 1, "comments_count": 3},
         {"user_id": 2, "comments_count": 1e30}, "comments_count 1e+30 outside [0, 2147483647]"),
        (progress_rows, MOOC_PROGRESS, {"user_id": 1, "total_blocks": 10},
         {"user_id": 2, "total_blocks": 2**40},
         "total_blocks 1099511627776 outside [0, 2147483647]"),
        (enrollment_rows, ENROLLMENTS, {"user_id": 1, "enrollment_id": 5},
         {"user_id": 2, "enrollment_id": 2**35}, "enrollment_id 34359738368 outside"),
    ],
)
def test_an_export_value_beyond_its_column_is_a_counted_reject(
    parse: Any, spec: TableSpec, good: dict[str, Any], bad: dict[str, Any], reason: str
) -> None:
    parsed = parse(COURSE, [good, bad], FETCHED)
    assert _one_reject(parsed).startswith(reason)
    assert parsed.rejects[0].record_ref == "user_id=2"
    assert _stored(spec, parsed)["user_id"].tolist() == [1]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"content_id": 2**40}, "content_id 1099511627776 outside [0, 2147483647]"),
        ({"content_id": 2, "time": 1e15}, "time_spent 1e+15 outside [0, 9999999999.99]"),
        ({"content_id": 2, "score": 3e9, "max_score": 4e9},
         "score 3000000000 outside [0, 2147483647]"),
    ],
)
def test_an_h5p_value_beyond_its_column_is_a_counted_reject(
    item: dict[str, Any], reason: str
) -> None:
    body = {"scores": [{"content_id": 1, "score": 1, "max_score": 2}, item]}
    parsed = h5p_score_rows(COURSE, {7: body}, FETCHED)
    assert _one_reject(parsed) == reason
    assert parsed.seen == 2
    assert _stored(H5P_SCORES, parsed)["content_id"].tolist() == [1]


def test_a_dashboard_count_beyond_its_column_is_a_counted_reject() -> None:
    answer = ("H3", {"overall": {"overall_completion": 10, "total_items": 1e12}})
    good = ("H3", {"overall": {"overall_completion": 20}})
    parsed = dashboard_rows(COURSE, {5: answer, 6: good}, FETCHED)
    assert _one_reject(parsed) == "total_items 1000000000000 outside [0, 2147483647]"
    assert _stored(DASHBOARD_SUMMARY, parsed)["user_id"].tolist() == [6]


# ---- objects and lists where text belongs -------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "spec", "good", "bad", "reason"),
    [
        (grade_rows, MOOC_GRADES, GOOD_GRADE, {"user_id": 2, "letter_grade": {"x": 1}},
         "letter_grade is an object, not text: {'x': 1}"),
        (enrollment_rows, ENROLLMENTS, {"user_id": 1, "username": "an"},
         {"user_id": 2, "username": {"first": "A"}},
         "username is an object, not text: {'first': 'A'}"),
        (progress_rows, MOOC_PROGRESS, {"user_id": 1, "current_chapter": "Ch. 1"},
         {"user_id": 2, "current_chapter": ["Ch. 1", "Ch. 2"]},
         "current_chapter is a list, not text: ['Ch. 1', 'Ch. 2']"),
        (enrollment_rows, ENROLLMENTS, {"user_id": 1, "mode": "audit"},
         {"user_id": 2, "mode": ["audit"]}, "unknown mode ['audit']"),
    ],
)
def test_an_object_or_list_in_a_text_field_is_rejected_not_stored_as_its_repr(
    parse: Any, spec: TableSpec, good: dict[str, Any], bad: dict[str, Any], reason: str
) -> None:
    parsed = parse(COURSE, [good, bad], FETCHED)
    assert _one_reject(parsed) == reason
    assert _stored(spec, parsed)["user_id"].tolist() == [1]


def test_an_object_as_video_folder_name_is_rejected() -> None:
    body = {"video_progress": [{"content_id": 1, "folder_name": "Week 1"},
                               {"content_id": 2, "folder_name": {"id": 4}}]}
    parsed = video_rows(COURSE, {7: body}, FETCHED)
    assert _one_reject(parsed) == "folder_name is an object, not text: {'id': 4}"
    assert _stored(VIDEO_PROGRESS, parsed)["folder_name"].tolist() == ["Week 1"]


# ---- bounded reasons ----------------------------------------------------------------------------


def test_a_huge_bad_value_gives_a_short_reason_that_says_its_size() -> None:
    huge = "x" * 1_000_000
    parsed = grade_rows(COURSE, [GOOD_GRADE, {**GOOD_GRADE, "user_id": 2, "is_passed": huge}],
                        FETCHED)
    reason = _one_reject(parsed)
    assert len(reason) < QUOTE_LIMIT + 80
    assert reason.startswith("non-boolean is_passed 'xxxx") and "1,000,000 characters" in reason
    parsed = grade_rows(COURSE, [{**GOOD_GRADE, "letter_grade": {"k": huge}}], FETCHED)
    assert len(_one_reject(parsed)) < QUOTE_LIMIT + 80


# ---- one rule for malformed answers on both systems ---------------------------------------------


@pytest.mark.parametrize(
    ("parse", "body", "reason"),
    [
        (h5p_score_rows, {"user_id": "7", "scores": None}, "scores is null, not a list"),
        (h5p_score_rows, {}, "no scores list in the answer"),
        (video_rows, {"user_id": "7", "video_progress": None},
         "video_progress is null, not a list"),
    ],
)
def test_a_learner_answer_without_its_list_is_one_counted_reject(
    parse: Any, body: dict[str, Any], reason: str
) -> None:
    parsed = parse(COURSE, {7: body, 8: None}, FETCHED)  # 8: 404 no_data, not a record
    assert parsed.seen == 1 and _one_reject(parsed) == reason
    assert parsed.rejects[0].record_ref == "user_id=7"
    assert parsed.frame.empty


@pytest.mark.parametrize("source", ["H3", "H4"])
def test_an_empty_dashboard_answer_is_rejected_not_stored_as_an_all_null_row(source: str) -> None:
    parsed = dashboard_rows(COURSE, {7: (source, {}), 8: (source, {"user_id": 8})}, FETCHED)
    assert parsed.seen == 2 and len(parsed.rejects) == 2
    assert parsed.rejects[0].reason.startswith("none of the sections ")
    assert parsed.frame.empty


def test_an_item_that_is_not_an_object_in_an_export_rejects_that_item_only() -> None:
    parsed = grade_rows(COURSE, [GOOD_GRADE, "oops"], FETCHED)
    assert parsed.rejects[0].record_ref == "item #1"
    assert _one_reject(parsed) == "record is not an object (str)"
    assert _stored(MOOC_GRADES, parsed)["user_id"].tolist() == [1]


# ---- booleans as flags --------------------------------------------------------------------------


def test_opened_and_finished_sent_as_json_booleans_are_flags_never_times() -> None:
    body = {"scores": [
        {"content_id": 1, "score": 1, "max_score": 1, "opened": True, "finished": True},
        {"content_id": 2, "score": 0, "max_score": 1, "opened": True, "finished": False},
    ]}
    parsed = h5p_score_rows(COURSE, {7: body}, FETCHED)
    assert parsed.rejects == []
    frame = _stored(H5P_SCORES, parsed)
    assert frame["is_finished"].tolist() == [True, False]
    assert frame["opened_at"].isna().all() and frame["finished_at"].isna().all()
