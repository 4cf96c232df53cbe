"""Payload → warehouse rows: every envelope-unwrapped shape, variant and reject reason."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
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
    Reject,
    course_frame,
    dashboard_rows,
    discussion_rows,
    enrollment_rows,
    grade_rows,
    h5p_score_rows,
    progress_rows,
    video_rows,
)
from moocassets.transforms.timeparse import (
    TimeParseError,
    epoch_to_timestamp,
    parse_timestamp,
)

COURSE = "course-v1:DHQG-HCM+FM101+2025_S2"
FETCHED = datetime(2025, 11, 1, 12, 0, tzinfo=UTC)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def check_table(spec: TableSpec, parsed: Parsed) -> pd.DataFrame:
    """The frame is already in the declared form: coercing changes nothing, validation passes."""
    frame = parsed.frame
    assert list(frame.columns) == spec.column_names
    coerced = spec.coerce_frame(frame)
    pd.testing.assert_frame_equal(coerced, frame)
    spec.validate_frame(coerced)
    assert (frame["course_id"] == COURSE).all()
    if "fetched_at" in frame.columns:
        assert (frame["fetched_at"] == ts("2025-11-01 12:00")).all()
    return frame


def only_row(frame: pd.DataFrame) -> dict[str, Any]:
    assert len(frame) == 1
    return frame.iloc[0].to_dict()


def reasons(parsed: Parsed) -> list[tuple[str, str]]:
    return [(r.record_ref, r.reason) for r in parsed.rejects]


# =============================================================================================
# timeparse
# =============================================================================================


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-02T08:00:00Z", "2025-09-02 08:00:00"),
        ("2025-09-02T08:00:00", "2025-09-02 08:00:00"),  # naive = UTC
        ("2025-09-02T08:00:00.250Z", "2025-09-02 08:00:00.250"),
        ("2025-09-02T08:00:00.123456789Z", "2025-09-02 08:00:00.123456"),  # > µs truncated
        ("2025-09-02T15:00:00+07:00", "2025-09-02 08:00:00"),  # offset honoured
        ("2025-09-02 08:00:00", "2025-09-02 08:00:00"),  # H4/H5P text format, UTC
        (" 2025-09-02T08:00:00Z ", "2025-09-02 08:00:00"),
    ],
)
def test_parse_timestamp_variants(text: str, expected: str) -> None:
    assert parse_timestamp(text) == ts(expected)
    assert str(parse_timestamp(text).tz) == "UTC"


@pytest.mark.parametrize("value", [None, "", "   ", float("nan"), pd.NaT])
def test_parse_timestamp_no_value(value: Any) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01T00:00:00Z", "9999-12-31T00:00:00", 5])
def test_parse_timestamp_rejects(value: Any) -> None:
    with pytest.raises(TimeParseError):
        parse_timestamp(value)


def test_parse_timestamp_datetimes() -> None:
    assert parse_timestamp(datetime(2025, 1, 1, 7)) == ts("2025-01-01 07:00")
    ict = timezone(timedelta(hours=7))
    assert parse_timestamp(datetime(2025, 1, 1, 7, tzinfo=ict)) == ts("2025-01-01 00:00")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, None),
        (1, None),  # a flag, never 1970-01-01
        (946_684_799, None),
        (946_684_800, "2000-01-01 00:00:00"),
        (1_736_900_000, "2025-01-15 00:13:20"),
        (1_736_900_000.5, "2025-01-15 00:13:20.5"),
        (1_736_900_000_000, None),  # milliseconds: not plausible seconds
    ],
)
def test_epoch_to_timestamp(seconds: float, expected: str | None) -> None:
    got = epoch_to_timestamp(seconds)
    assert got == (None if expected is None else ts(expected))


# =============================================================================================
# M2 course details
# =============================================================================================


@pytest.mark.parametrize(
    ("details", "start", "end"),
    [
        ({"display_name": "Tài chính", "start": "2025-08-01T00:00:00Z",
          "end": "2025-12-31T00:00:00Z"}, "2025-08-01", "2025-12-31"),
        ({"display_name": "Tài chính", "start": "2025-08-01T00:00:00", "end": None},
         "2025-08-01", None),
        ({"display_name": "Tài chính", "start": "2025-08-01T07:00:00+07:00"},
         "2025-08-01", None),
        ({"success": True, "data": {"display_name": "Tài chính", "start": "2025-08-01T00:00:00Z",
                                    "end": "2025-12-31T00:00:00.000Z"}},
         "2025-08-01", "2025-12-31"),
    ],
)
def test_course_frame(details: dict[str, Any], start: str, end: str | None) -> None:
    frame = course_frame(COURSE, details)
    assert list(frame.columns) == ["course_id", "display_name", "start", "end"]
    assert str(frame["start"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["end"].dtype) == "datetime64[ns, UTC]"
    row = only_row(frame)
    assert row["course_id"] == COURSE
    assert row["display_name"] == "Tài chính"
    assert row["start"] == ts(start)
    assert (row["end"] is pd.NaT) if end is None else (row["end"] == ts(end))


def test_course_frame_unparseable_date_raises() -> None:
    with pytest.raises(ValueError, match="course-v1:DHQG-HCM"):
        course_frame(COURSE, {"display_name": "x", "start": "soon", "end": None})


# =============================================================================================
# M1 enrollments
# =============================================================================================

M1_ITEM = {
    "user_id": 1234, "username": "sv001", "email": "sv001@example.edu",
    "full_name": "Nguyen Van A", "enrollment_id": 55501, "mode": "audit", "is_active": True,
    "created": "2025-09-02T08:00:00Z",
    "student_info": {"mssv": "2101234", "full_name_vn": "Nguyễn Văn A", "class_code": "K21"},
    "all_attributes": [{"name": "gender", "value": "m"}],
    "some_new_field": "ignored",
}


def test_enrollment_full_item() -> None:
    parsed = enrollment_rows(COURSE, [M1_ITEM], FETCHED)
    row = only_row(check_table(ENROLLMENTS, parsed))
    assert parsed.rejects == [] and parsed.seen == 1
    assert row["user_id"] == 1234
    assert (row["username"], row["email"], row["full_name"]) == (
        "sv001", "sv001@example.edu", "Nguyen Van A")
    assert row["enrollment_id"] == 55501
    assert row["mode"] == "audit"
    assert bool(row["is_active"]) is True
    assert row["created"] == ts("2025-09-02 08:00")
    assert row["all_attributes"] == {
        "student_info": M1_ITEM["student_info"], "all_attributes": M1_ITEM["all_attributes"]}


@pytest.mark.parametrize(
    ("item", "user_id", "created"),
    [
        # whole seconds, as the DATETIME column stores them
        ({"id": 7, "created": "2025-09-02T08:00:00.123Z"}, 7, "2025-09-02 08:00:00"),
        ({"id": "8", "created": "2025-09-02T08:00:00"}, 8, "2025-09-02 08:00"),
        ({"user_id": " 9 ", "id": 999, "created": None}, 9, None),
        ({"user_id": 10.0, "mode": "Verified"}, 10, None),
    ],
)
def test_enrollment_id_fallback_and_minimal_items(
    item: dict[str, Any], user_id: int, created: str | None
) -> None:
    parsed = enrollment_rows(COURSE, [item], FETCHED)
    row = only_row(check_table(ENROLLMENTS, parsed))
    assert row["user_id"] == user_id
    assert (row["created"] is pd.NaT) if created is None else row["created"] == ts(created)
    assert row["all_attributes"] is None  # neither student_info nor all_attributes sent
    assert row["username"] is None and row["email"] is None
    assert pd.isna(row["is_active"])


def test_enrollment_mode_is_normalised() -> None:
    parsed = enrollment_rows(COURSE, [{"user_id": 10, "mode": " Verified "}], FETCHED)
    assert parsed.frame.loc[0, "mode"] == "verified"


@pytest.mark.parametrize(
    ("item", "ref", "reason"),
    [
        ({"username": "x"}, "item #0", "missing user id"),
        ({"user_id": None, "id": None}, "item #0", "missing user id"),
        ({"user_id": "abc"}, "item #0", "non-integer user id 'abc'"),
        ({"user_id": 1.5}, "item #0", "non-integer user id 1.5"),
        ({"user_id": True}, "item #0", "non-integer user id True"),
        ({"user_id": 0}, "item #0", "non-positive user id 0"),
        ({"id": "-4"}, "item #0", "non-positive user id -4"),
        ({"user_id": 5, "created": "2025-02-30T00:00:00Z"}, "user_id=5",
         "unparseable created '2025-02-30T00:00:00Z'"),
        ({"user_id": 5, "mode": "premium"}, "user_id=5", "unknown mode 'premium'"),
        ({"user_id": 5, "is_active": "maybe"}, "user_id=5", "non-boolean is_active 'maybe'"),
        ({"user_id": 5, "enrollment_id": -1}, "user_id=5", "negative enrollment_id -1"),
        ({"user_id": 5, "username": "u" * 151}, "user_id=5", "username longer than 150 characters"),
        ("not a record", "item #0", "record is not an object (str)"),
    ],
)
def test_enrollment_rejects(item: Any, ref: str, reason: str) -> None:
    good = {"user_id": 1, "enrollment_id": 1}
    parsed = enrollment_rows(COURSE, [good, item], FETCHED)
    ref = ref.replace("item #0", "item #1")
    assert reasons(parsed) == [(ref, reason)]
    assert parsed.rejects[0].endpoint.startswith("M1")
    assert parsed.rejects[0].course_id == COURSE
    assert parsed.seen == 2
    assert check_table(ENROLLMENTS, parsed)["user_id"].tolist() == [1]


def test_enrollment_duplicates_keep_the_first() -> None:
    items = [
        {"user_id": 1, "username": "first", "enrollment_id": 10},
        {"user_id": 1, "username": "second", "enrollment_id": 11},
        {"user_id": 2, "username": "other", "enrollment_id": 10},
        {"id": "3", "username": "third", "enrollment_id": 12},
    ]
    parsed = enrollment_rows(COURSE, items, FETCHED)
    frame = check_table(ENROLLMENTS, parsed)
    assert frame[["user_id", "username"]].values.tolist() == [[1, "first"], [3, "third"]]
    assert reasons(parsed) == [
        ("user_id=1", "duplicate user_id 1"), ("user_id=2", "duplicate enrollment_id 10")]
    assert parsed.seen == 4
    assert parsed.reject_share == 0.5


def test_empty_payload_gives_empty_typed_frame() -> None:
    parsed = enrollment_rows(COURSE, [], FETCHED)
    assert parsed.seen == 0 and parsed.rejects == [] and parsed.reject_share == 0.0
    pd.testing.assert_frame_equal(parsed.frame, ENROLLMENTS.empty_frame())


def test_reject_is_a_frozen_value() -> None:
    r = Reject("M4", COURSE, "user_id=1", "x")
    assert r == Reject("M4", COURSE, "user_id=1", "x")
    with pytest.raises(AttributeError):
        r.reason = "y"  # type: ignore[misc]


# =============================================================================================
# M4 grades
# =============================================================================================


@pytest.mark.parametrize(
    ("sent", "percent_grade", "grade_percentage"),
    [
        ({"percent_grade": 0.81, "grade_percentage": 81.0}, 0.81, 81.0),  # "students" envelope
        ({"grade_percentage": 81.0}, 0.81, 81.0),  # "grade_table" envelope: derive the fraction
        ({"percent_grade": 0.815}, 0.815, 81.5),  # only the fraction: derive the percentage
        ({"percent_grade": "0.5"}, 0.5, 50.0),  # numeric text
        ({"percent_grade": 0, "grade_percentage": 0}, 0.0, 0.0),
        ({"grade_percentage": 100}, 1.0, 100.0),
        ({}, None, None),
    ],
)
def test_grade_percentages(
    sent: dict[str, Any], percent_grade: float | None, grade_percentage: float | None
) -> None:
    parsed = grade_rows(COURSE, [{"user_id": 1234, **sent}], FETCHED)
    row = only_row(check_table(MOOC_GRADES, parsed))
    for col, want in (("percent_grade", percent_grade), ("grade_percentage", grade_percentage)):
        assert math.isnan(row[col]) if want is None else row[col] == pytest.approx(want)


@pytest.mark.parametrize(
    ("letter", "expected"),
    [("B", "B"), ("Pass", "Pass"), ("", None), ("  ", None), (None, None), (" A ", "A")],
)
def test_grade_letter(letter: str | None, expected: str | None) -> None:
    item = {"user_id": 1, "grade_percentage": 50, "is_passed": False}
    if letter is not None:
        item["letter_grade"] = letter
    row = only_row(check_table(MOOC_GRADES, grade_rows(COURSE, [item], FETCHED)))
    assert row["letter_grade"] == expected


@pytest.mark.parametrize(
    ("is_passed", "expected"),
    [(True, True), (False, False), (1, True), ("false", False), (None, None)],
)
def test_grade_is_passed(is_passed: Any, expected: bool | None) -> None:
    row = only_row(grade_rows(COURSE, [{"user_id": 1, "is_passed": is_passed}], FETCHED).frame)
    assert pd.isna(row["is_passed"]) if expected is None else bool(row["is_passed"]) is expected


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"grade_percentage": 250}, "grade_percentage 250 outside [0, 100]"),
        ({"grade_percentage": -1}, "grade_percentage -1 outside [0, 100]"),
        ({"percent_grade": 81}, "percent_grade 81 outside [0, 1]"),
        ({"grade_percentage": "A+"}, "non-numeric grade_percentage 'A+'"),
        ({"grade_percentage": float("nan")}, "non-numeric grade_percentage nan"),
        ({"is_passed": "yes"}, "non-boolean is_passed 'yes'"),
        ({"letter_grade": "X" * 33}, "letter_grade longer than 32 characters"),
    ],
)
def test_grade_rejects(item: dict[str, Any], reason: str) -> None:
    parsed = grade_rows(COURSE, [{"user_id": 1, "grade_percentage": 90}, {"user_id": 2, **item}],
                        FETCHED)
    assert reasons(parsed) == [("user_id=2", reason)]
    assert parsed.rejects[0].endpoint.startswith("M4")
    assert check_table(MOOC_GRADES, parsed)["user_id"].tolist() == [1]


# =============================================================================================
# M5 progress
# =============================================================================================


@pytest.mark.parametrize(
    ("blocks", "rate", "expected"),
    [
        ({"total_blocks": 181, "completed_blocks": 178}, 98.29, 98.34),  # 178/181 = 98.342 %
        ({"total_blocks": 4, "completed_blocks": 1}, 10.0, 25.0),  # blocks win over the rate
        ({}, 55.5, 55.5),  # blocks absent: completion_rate
        ({"total_blocks": 0, "completed_blocks": 0}, 12.0, 12.0),  # total 0: completion_rate
        ({"total_blocks": 10}, 40.0, 40.0),  # completed unknown: completion_rate
        ({}, None, None),
    ],
)
def test_progress_percent(blocks: dict[str, int], rate: float | None, expected: float | None
                          ) -> None:
    item = {"user_id": 1, "completion_rate": rate, **blocks}
    row = only_row(check_table(MOOC_PROGRESS, progress_rows(COURSE, [item], FETCHED)))
    got = row["progress_percent"]
    assert math.isnan(got) if expected is None else got == pytest.approx(expected)
    assert math.isnan(row["completion_rate"]) if rate is None else row["completion_rate"] == rate


def test_progress_text_and_time_fields() -> None:
    long_unit = "Bài " + "x" * 600
    item = {"user_id": "1234", "current_chapter": "Chương 3: Chức năng của thị trường tài chính",
            "current_section": "", "current_unit": long_unit, "completion_rate": 98.29,
            "last_activity": "2025-12-20T09:11:55Z"}
    rows = [item, {"user_id": 5, "completion_rate": 0, "last_activity": None}]
    frame = check_table(MOOC_PROGRESS, progress_rows(COURSE, rows, FETCHED))
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["current_chapter"] == "Chương 3: Chức năng của thị trường tài chính"
    assert first["current_section"] is None
    assert first["current_unit"] == long_unit[:512]
    assert first["last_activity"] == ts("2025-12-20 09:11:55")
    assert second["last_activity"] is pd.NaT


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"total_blocks": 10, "completed_blocks": 11}, "completed_blocks 11 > total_blocks 10"),
        ({"total_blocks": -1}, "negative total_blocks -1"),
        ({"completed_blocks": 2.5}, "non-integer completed_blocks 2.5"),
        ({"completion_rate": 100.5}, "completion_rate 100.5 outside [0, 100]"),
        ({"last_activity": "20/12/2025"}, "unparseable last_activity '20/12/2025'"),
    ],
)
def test_progress_rejects(item: dict[str, Any], reason: str) -> None:
    parsed = progress_rows(COURSE, [{"user_id": 3, **item}], FETCHED)
    assert reasons(parsed) == [("user_id=3", reason)]
    assert parsed.seen == 1 and parsed.frame.empty
    check_table(MOOC_PROGRESS, parsed)


# =============================================================================================
# M6 discussions
# =============================================================================================


def test_discussion_rows_as_sent() -> None:
    rows = [
        {"user_id": 1234, "username": "sv", "threads_count": 5, "comments_count": 15,
         "total_interactions": 20, "questions_count": 3, "total_upvotes": 12},
        {"user_id": 2, "threads_count": "1", "comments_count": 0.0, "total_interactions": 1},
    ]
    frame = check_table(MOOC_DISCUSSIONS, discussion_rows(COURSE, rows, FETCHED))
    counts = ["threads_count", "comments_count", "total_interactions", "questions_count",
              "total_upvotes"]
    assert frame.loc[0, counts].tolist() == [5, 15, 20, 3, 12]
    assert frame.loc[1, counts[:3]].tolist() == [1, 0, 1]
    assert frame.loc[1, counts[3:]].isna().all()  # not sent: NULL, not 0


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"threads_count": -2}, "negative threads_count -2"),
        ({"total_upvotes": 1.5}, "non-integer total_upvotes 1.5"),
        ({"comments_count": "many"}, "non-numeric comments_count 'many'"),
    ],
)
def test_discussion_rejects(item: dict[str, Any], reason: str) -> None:
    parsed = discussion_rows(COURSE, [{"user_id": 9, **item}, {"user_id": 9}], FETCHED)
    # the first is rejected, so the second is not a duplicate and is kept
    assert reasons(parsed) == [("user_id=9", reason)]
    assert check_table(MOOC_DISCUSSIONS, parsed)["user_id"].tolist() == [9]


# =============================================================================================
# H1 scores
# =============================================================================================


def h1(uid: Any, *items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"user_id": str(uid), "course_id": COURSE,
            "summary": {"total_contents": 99}, "scores": list(items), **extra}


H1_ITEM = {"id": 1, "content_id": 45, "score": 90, "max_score": 100, "opened": 1736900000,
           "finished": 1736900930, "time": 300, "content_title": "Bài tập 1", "percentage": 90.0,
           "folder_id": 10, "folder_name": "Chương 1", "total_contents_in_folder": 25}


def test_h5p_scores_full_item() -> None:
    parsed = h5p_score_rows(COURSE, {1234: h1(1234, H1_ITEM)}, FETCHED)
    row = only_row(check_table(H5P_SCORES, parsed))
    assert parsed.seen == 1 and parsed.rejects == []
    assert (row["user_id"], row["content_id"]) == (1234, 45)  # H5P's string id → int
    assert (row["score"], row["max_score"], row["percentage"]) == (90, 100, 90.0)
    assert row["opened_at"] == ts("2025-01-15 00:13:20")
    assert row["finished_at"] == ts("2025-01-15 00:28:50")
    assert bool(row["is_finished"]) is True
    assert row["time_spent"] == 300.0
    assert (row["folder_id"], row["folder_name"]) == (10, "Chương 1")
    assert row["content_title"] == "Bài tập 1"


@pytest.mark.parametrize(
    ("opened", "finished", "opened_at", "finished_at", "is_finished"),
    [
        (1, 1, None, None, True),  # plugin docs: 0/1 flags, never 1970
        (1, 0, None, None, False),
        (0, 0, None, None, False),
        (1736900000, 0, "2025-01-15 00:13:20", None, False),
        (1736900000, 1736900930, "2025-01-15 00:13:20", "2025-01-15 00:28:50", True),
        (1736900000, 1, "2025-01-15 00:13:20", None, True),  # mixed
        ("1736900000", "1", "2025-01-15 00:13:20", None, True),  # numeric text
        (946684799, 946684800, None, "2000-01-01 00:00:00", True),  # plausibility boundary
        ("2025-01-15 10:00:00", "2025-01-15 10:05:00", "2025-01-15 10:00", "2025-01-15 10:05",
         True),  # H4-style text times, UTC
        (None, None, None, None, None),  # not sent: unknown
    ],
)
def test_h5p_flags_versus_epochs(
    opened: Any, finished: Any, opened_at: str | None, finished_at: str | None,
    is_finished: bool | None,
) -> None:
    item = {"content_id": 1, "score": 1, "max_score": 1, "opened": opened, "finished": finished}
    row = only_row(check_table(H5P_SCORES, h5p_score_rows(COURSE, {7: h1(7, item)}, FETCHED)))
    assert (row["opened_at"] is pd.NaT) if opened_at is None else row["opened_at"] == ts(opened_at)
    assert (row["finished_at"] is pd.NaT) if finished_at is None else (
        row["finished_at"] == ts(finished_at))
    assert pd.isna(row["is_finished"]) if is_finished is None else (
        bool(row["is_finished"]) is is_finished)


@pytest.mark.parametrize(
    ("item", "score", "max_score", "percentage", "time_spent"),
    [
        ({"score": 3, "max_score": 4}, 3, 4, 75.0, None),  # percentage computed
        ({"score": 1, "max_score": 3, "time": 12.75}, 1, 3, 33.33, 12.75),  # decimal seconds
        ({"score": 0, "max_score": 0}, 0, 0, None, None),  # no denominator: NULL
        ({"score": "8", "max_score": "10", "percentage": "80.5"}, 8, 10, 80.5, None),
        ({"score": 8.5, "max_score": 10}, 9, 10, 85.0, None),  # fractional points rounded
        ({}, None, None, None, None),
    ],
)
def test_h5p_scores_and_percentage(
    item: dict[str, Any], score: int | None, max_score: int | None, percentage: float | None,
    time_spent: float | None,
) -> None:
    row = only_row(check_table(
        H5P_SCORES, h5p_score_rows(COURSE, {7: h1(7, {"content_id": 3, **item})}, FETCHED)))
    for col, want in (("score", score), ("max_score", max_score)):
        assert pd.isna(row[col]) if want is None else row[col] == want
    for col, want in (("percentage", percentage), ("time_spent", time_spent)):
        assert math.isnan(row[col]) if want is None else row[col] == pytest.approx(want)


def test_h5p_no_data_learners_and_mapping_shapes() -> None:
    payloads = {
        1: None,  # 404 no_data: no rows, not a record
        2: h1(2),  # empty scores list
        3: {"user_id": 3},  # no scores key at all: a malformed answer, one rejected record
        4: h1(4, {"content_id": 1}, {"content_id": 2}),
        5: {"scores": [{"content_id": 1}]},  # no echoed user_id: the key is the learner
    }
    parsed = h5p_score_rows(COURSE, payloads, FETCHED)
    frame = check_table(H5P_SCORES, parsed)
    assert frame[["user_id", "content_id"]].values.tolist() == [[4, 1], [4, 2], [5, 1]]
    assert parsed.seen == 4
    assert reasons(parsed) == [("user_id=3", "no scores list in the answer")]


@pytest.mark.parametrize(
    ("item", "ref", "reason"),
    [
        ({"content_id": 9, "score": "n/a"}, "user_id=7 content_id=9", "non-numeric score 'n/a'"),
        ({"content_id": 9, "percentage": 250}, "user_id=7 content_id=9",
         "percentage 250 outside [0, 100]"),
        ({"content_id": 9, "score": 11, "max_score": 10}, "user_id=7 content_id=9",
         "score 11 > max_score 10"),
        ({"content_id": 9, "score": -1}, "user_id=7 content_id=9", "negative score -1"),
        ({"content_id": 9, "opened": -5}, "user_id=7 content_id=9", "negative opened -5"),
        ({"content_id": 9, "finished": "someday"}, "user_id=7 content_id=9",
         "unparseable finished 'someday'"),
        ({"content_id": 9, "time": -3}, "user_id=7 content_id=9", "negative time -3"),
        ({"score": 1}, "user_id=7 item #1", "missing content_id"),
        ({"content_id": "x"}, "user_id=7 item #1", "non-numeric content_id 'x'"),
        ({"content_id": 1}, "user_id=7 content_id=1", "duplicate content_id 1"),
        ([1, 2], "user_id=7 item #1", "record is not an object (list)"),
    ],
)
def test_h5p_item_rejects(item: Any, ref: str, reason: str) -> None:
    first = {"content_id": 1, "score": 5, "max_score": 10, "content_title": "kept"}
    parsed = h5p_score_rows(COURSE, {7: h1(7, first, item)}, FETCHED)
    assert reasons(parsed) == [(ref, reason)]
    assert parsed.rejects[0].endpoint.startswith("H1")
    assert parsed.seen == 2
    frame = check_table(H5P_SCORES, parsed)
    assert frame[["content_id", "content_title"]].values.tolist() == [[1, "kept"]]


@pytest.mark.parametrize(
    ("key", "payload", "rejected", "reason"),
    [
        (7, h1(8, {"content_id": 1}, {"content_id": 2}), 2,
         "echoed user_id '8' differs from the requested learner 7"),
        (7, h1("abc", {"content_id": 1}), 1, "non-integer echoed user_id 'abc'"),
        (0, h1(0, {"content_id": 1}), 1, "non-positive learner key 0"),
        (7, {"user_id": "7", "scores": {"content_id": 1}}, 1, "scores is not a list"),
        (7, ["not", "an", "object"], 1, "payload is not an object (list)"),
    ],
)
def test_h5p_payload_level_rejects(key: Any, payload: Any, rejected: int, reason: str) -> None:
    parsed = h5p_score_rows(COURSE, {key: payload, 99: h1(99, {"content_id": 1})}, FETCHED)
    assert [r.reason for r in parsed.rejects] == [reason] * rejected
    assert all(r.record_ref.startswith(f"user_id={key}") for r in parsed.rejects)
    assert parsed.seen == rejected + 1
    assert check_table(H5P_SCORES, parsed)["user_id"].tolist() == [99]


# =============================================================================================
# H2 video progress
# =============================================================================================


def h2(uid: Any, *items: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": str(uid), "course_id": COURSE, "summary": {"total_videos": 20},
            "video_progress": list(items)}


def test_video_rows_decimals_and_statuses() -> None:
    items = [
        {"id": 1, "content_id": 50, "content_title": "Video bài giảng 1", "progress_percent": 100,
         "current_time": 600, "duration": 600, "status": "completed", "folder_id": 10,
         "folder_name": "Chương 1", "total_contents_in_folder": 25},
        {"content_id": 51, "progress_percent": 83.08, "current_time": 498.48, "duration": "600.00",
         "status": "In_Progress"},
        {"content_id": 52, "status": "started", "current_time": 0.5},
        {"content_id": 53, "status": "not_started"},
        {"content_id": 54},
    ]
    parsed = video_rows(COURSE, {1234: h2(1234, *items), 5: None}, FETCHED)
    frame = check_table(VIDEO_PROGRESS, parsed)
    assert parsed.seen == 5 and parsed.rejects == []
    assert frame["user_id"].unique().tolist() == [1234]
    assert frame["current_time"].tolist()[:3] == [600.0, 498.48, 0.5]
    assert frame["duration"].tolist()[:2] == [600.0, 600.0]
    assert frame["progress_percent"].tolist()[:2] == [100.0, 83.08]
    assert frame["status"].tolist() == ["completed", "in_progress", "started", "not_started", None]
    assert frame.loc[0, "content_title"] == "Video bài giảng 1"
    assert frame.loc[0, "folder_id"] == 10


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"status": "paused"}, "unknown status 'paused'"),
        ({"progress_percent": 150}, "progress_percent 150 outside [0, 100]"),
        ({"duration": -600}, "negative duration -600"),
        ({"current_time": "10:00"}, "non-numeric current_time '10:00'"),
    ],
)
def test_video_rejects(item: dict[str, Any], reason: str) -> None:
    parsed = video_rows(COURSE, {3: h2(3, {"content_id": 60, **item})}, FETCHED)
    assert reasons(parsed) == [("user_id=3 content_id=60", reason)]
    assert parsed.rejects[0].endpoint.startswith("H2")
    assert parsed.frame.empty
    check_table(VIDEO_PROGRESS, parsed)


# =============================================================================================
# H3 / H4 dashboards
# =============================================================================================

H3 = {
    "user_id": "1234", "course_id": COURSE,
    "overall": {"total_items": 50, "completed_items": 40, "overall_completion": 80.0,
                "total_contents_in_course_folders": 48},
    "video_progress": {"total_videos": 30, "completed_videos": 25, "in_progress_videos": 3,
                       "not_started_videos": 2, "average_progress": 85.5, "total_duration": 7200,
                       "total_watched_time": 6500},
    "scores": {"total_contents": 20, "completed_contents": 15, "pending_contents": 5,
               "total_score": 1350, "total_max_score": 2000, "average_percentage": 67.5,
               "total_time_spent": 3600.5},
}
H4 = {
    "user_id": "1235",
    "overview": {"overall_completion": "66.67", "total_items": 30, "completed_items": 20,
                 "items_to_complete": 10},
    "h5p_stats": {"total_contents": 12, "completed_contents": 8, "total_score": 700,
                  "total_max_score": 1200, "average_percentage": 58.33, "total_time_spent": 1800},
    "folder_scores_stats": {"total_folders": 4, "completed_folders": 2},
    "video_stats": {"total_videos": 18, "completed_videos": 9, "in_progress_videos": 4,
                    "average_video_progress": 51.25},
    "recent_activities": [{"time": "2025-10-01 08:00:00"}], "top_achievements": [],
}
DASH_COLS = ["overall_completion", "total_items", "completed_items", "h5p_total_contents",
             "video_total_videos", "h5p_completed_contents", "video_completed_videos",
             "h5p_contents_in_course", "h5p_total_time_spent", "source"]


def test_dashboard_h3_and_h4_mapping() -> None:
    parsed = dashboard_rows(COURSE, {1234: ("H3", H3), 1235: ("H4", H4), 1236: None}, FETCHED)
    frame = check_table(DASHBOARD_SUMMARY, parsed).set_index("user_id")
    assert parsed.seen == 2 and parsed.rejects == []
    assert frame.loc[1234, DASH_COLS].tolist() == [80.0, 50, 40, 20, 30, 15, 25, 48, 3600.5, "H3"]
    h4 = frame.loc[1235, DASH_COLS].tolist()
    assert h4[:7] == [66.67, 30, 20, 12, 18, 8, 9]
    assert pd.isna(h4[7])  # H4 does not know the course's H5P item count
    assert h4[8:] == [1800.0, "H4"]


def test_dashboard_missing_sections_are_null() -> None:
    parsed = dashboard_rows(COURSE, {5: ("H3", {"overall": {"overall_completion": 10}})}, FETCHED)
    row = only_row(check_table(DASHBOARD_SUMMARY, parsed))
    assert row["overall_completion"] == 10.0
    assert all(pd.isna(row[c]) for c in DASH_COLS[1:9])


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (("H9", H3), "unknown dashboard source 'H9'"),
        (H3, "unknown dashboard source None"),
        (("H3", {**H3, "overall": {"overall_completion": 120}}),
         "overall_completion 120 outside [0, 100]"),
        (("H4", {**H4, "user_id": 1234, "video_stats": {"total_videos": -1}}),
         "negative total_videos -1"),
        (("H3", {**H3, "scores": [1]}), "scores is not an object"),
        (("H3", {**H3, "user_id": "99"}),
         "echoed user_id '99' differs from the requested learner 1234"),
        (("H4", "<html>"), "payload is not an object (str)"),
    ],
)
def test_dashboard_rejects(answer: Any, reason: str) -> None:
    parsed = dashboard_rows(COURSE, {1234: answer, 1235: ("H4", H4)}, FETCHED)
    assert reasons(parsed) == [("user_id=1234", reason)]
    assert parsed.seen == 2
    assert check_table(DASHBOARD_SUMMARY, parsed)["user_id"].tolist() == [1235]


def test_dashboard_duplicate_learner_keeps_first() -> None:
    parsed = dashboard_rows(COURSE, {1235: ("H4", H4), "1235": ("H3", {**H3, "user_id": "1235"})},
                            FETCHED)
    assert reasons(parsed) == [("user_id=1235", "duplicate user_id 1235")]
    assert check_table(DASHBOARD_SUMMARY, parsed)["source"].tolist() == ["H4"]
