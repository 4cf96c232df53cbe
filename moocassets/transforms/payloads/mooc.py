"""MOOC (Open edX) payloads → rows: M2 course details, M1 enrollments, M4/M5/M6 exports.

Each export is a list of row dicts (envelopes already unwrapped by the client), one row per
learner. Rules common to both systems are in the package docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from moocassets.schema import (
    ENROLLMENTS,
    MOOC_DISCUSSIONS,
    MOOC_GRADES,
    MOOC_PROGRESS,
    TableSpec,
    frame_from_records,
)
from moocassets.transforms.payloads.records import (
    BadRecord,
    Parsed,
    Reject,
    check_bounds,
    quote,
    read_bool,
    read_bounded,
    read_count,
    read_percent,
    read_text,
    read_time,
    record_user_id,
    utc,
)
from moocassets.transforms.timeparse import TimeParseError, parse_timestamp

__all__ = [
    "COURSE_FRAME_COLUMNS",
    "EP_DISCUSSIONS",
    "EP_ENROLLMENTS",
    "EP_GRADES",
    "EP_PROGRESS",
    "course_frame",
    "discussion_rows",
    "enrollment_rows",
    "grade_rows",
    "progress_rows",
]

# Endpoint labels used in Reject.endpoint (spec ids).
EP_COURSE = "M2 course-details/display-name"
EP_ENROLLMENTS = "M1 course-enrollments-attributes"
EP_GRADES = "M4 export/student-grades"
EP_PROGRESS = "M5 export/student-progress"
EP_DISCUSSIONS = "M6 export/student-discussions"

COURSE_FRAME_COLUMNS = ("course_id", "display_name", "start", "end")


def course_frame(course_id: str, details: Mapping[str, Any]) -> pd.DataFrame:
    """One row ``course_id, display_name, start, end`` from the M2 ``data`` object.

    ``start``/``end`` are ``datetime64[ns, UTC]`` (NaT when null; ``end`` may be null). The
    ``{"success": ..., "data": {...}}`` envelope is unwrapped if passed whole. An unparseable
    date raises ``ValueError``: a wrong course end would silently move every learner's ``as_of``.
    """
    data = details
    inner = details.get("data")
    if isinstance(inner, Mapping) and "display_name" not in details:
        data = inner
    try:
        start = parse_timestamp(data.get("start"))
        end = parse_timestamp(data.get("end"))
    except TimeParseError as exc:
        raise ValueError(f"course {course_id}: M2 course details: {exc}") from exc
    name = data.get("display_name")
    return pd.DataFrame(
        {
            "course_id": pd.Series([course_id], dtype=object),
            "display_name": pd.Series([None if name is None else str(name)], dtype=object),
            "start": pd.Series([start], dtype="datetime64[ns, UTC]"),
            "end": pd.Series([end], dtype="datetime64[ns, UTC]"),
        }
    )


_RowBuilder = Callable[[Mapping[str, Any], int], dict[str, Any]]


def _parse_rows(
    *,
    spec: TableSpec,
    endpoint: str,
    course_id: str,
    items: Sequence[Any],
    fetched_at: datetime,
    build: _RowBuilder,
    extra_unique: str | None = None,
) -> Parsed:
    """Shared loop for one-row-per-learner endpoints: id, build, de-duplicate, reject."""
    fetched = utc(fetched_at)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    seen_ids: set[int] = set()
    seen_extra: set[Any] = set()
    for i, item in enumerate(items):
        ref = f"item #{i}"
        try:
            if not isinstance(item, Mapping):
                raise BadRecord(f"record is not an object ({type(item).__name__})")
            uid = record_user_id(item)
            ref = f"user_id={uid}"
            row = build(item, uid)
            check_bounds(spec, row)
            if uid in seen_ids:
                raise BadRecord(f"duplicate user_id {uid}")
            if extra_unique is not None and row[extra_unique] is not None:
                if row[extra_unique] in seen_extra:
                    raise BadRecord(f"duplicate {extra_unique} {row[extra_unique]}")
                seen_extra.add(row[extra_unique])
        except BadRecord as bad:
            rejects.append(Reject(endpoint, course_id, ref, str(bad)))
            continue
        seen_ids.add(uid)
        row.update(course_id=course_id, user_id=uid)
        if "fetched_at" in spec.column_names:
            row["fetched_at"] = fetched
        rows.append(row)
    return Parsed(frame_from_records(spec, rows), rejects, len(items))


def enrollment_rows(
    course_id: str, items: Sequence[Mapping[str, Any]], fetched_at: datetime
) -> Parsed:
    """M1 items → ``enrollments``.

    ``all_attributes`` = ``{"student_info": ..., "all_attributes": [...]}`` as sent (NULL when both
    are absent). ``mode`` must be a known Open edX mode (lower-cased); ``created`` ISO-8601 → UTC;
    ``enrollment_id`` a non-negative integer, unique within the payload.
    """
    mode_col = ENROLLMENTS.column("mode")
    modes = mode_col.categories or frozenset()

    def build(item: Mapping[str, Any], uid: int) -> dict[str, Any]:
        mode = item.get("mode")
        if mode is not None:
            if not isinstance(mode, str):
                raise BadRecord(f"unknown mode {quote(mode)}")
            mode = mode.strip().lower() or None
            if mode is not None and mode not in modes:
                raise BadRecord(f"unknown mode {quote(item.get('mode'))}")
        info, attrs = item.get("student_info"), item.get("all_attributes")
        return {
            "username": read_text(ENROLLMENTS, "username", item.get("username"), truncate=False),
            "email": read_text(ENROLLMENTS, "email", item.get("email"), truncate=False),
            "full_name": read_text(ENROLLMENTS, "full_name", item.get("full_name"), truncate=True),
            "enrollment_id": read_count(item.get("enrollment_id"), "enrollment_id"),
            "mode": mode,
            "is_active": read_bool(item.get("is_active"), "is_active"),
            "created": read_time(item.get("created"), "created"),
            "all_attributes": (
                None if info is None and attrs is None
                else {"student_info": info, "all_attributes": attrs}
            ),
        }

    return _parse_rows(
        spec=ENROLLMENTS, endpoint=EP_ENROLLMENTS, course_id=course_id, items=items,
        fetched_at=fetched_at, build=build, extra_unique="enrollment_id",
    )


def grade_rows(course_id: str, rows: Sequence[Mapping[str, Any]], fetched_at: datetime) -> Parsed:
    """M4 rows (either envelope, unwrapped) → ``mooc_grades``.

    ``percent_grade`` is 0-1 and ``grade_percentage`` 0-100; when only one is sent the other is
    derived (x100 / /100); when both are sent both are kept as sent. An empty/blank
    ``letter_grade`` is NULL. ``is_passed`` is kept as sent (NULL when missing).
    """

    def build(item: Mapping[str, Any], uid: int) -> dict[str, Any]:
        frac = read_bounded(item.get("percent_grade"), "percent_grade", 0.0, 1.0)
        pct = read_percent(item.get("grade_percentage"), "grade_percentage")
        if pct is None and frac is not None:
            pct = frac * 100.0
        if frac is None and pct is not None:
            frac = pct / 100.0
        letter = item.get("letter_grade")
        letter = letter.strip() if isinstance(letter, str) else letter
        return {
            "percent_grade": frac,
            "grade_percentage": pct,
            "letter_grade": read_text(MOOC_GRADES, "letter_grade", letter, truncate=False),
            "is_passed": read_bool(item.get("is_passed"), "is_passed"),
        }

    return _parse_rows(
        spec=MOOC_GRADES, endpoint=EP_GRADES, course_id=course_id, items=rows,
        fetched_at=fetched_at, build=build,
    )


def progress_rows(
    course_id: str, rows: Sequence[Mapping[str, Any]], fetched_at: datetime
) -> Parsed:
    """M5 rows (either envelope, unwrapped) → ``mooc_progress``.

    ``progress_percent`` = completed_blocks / total_blocks x 100 when both are known and
    total_blocks > 0, else ``completion_rate``. ``completed_blocks > total_blocks`` is rejected.
    Empty chapter/section/unit names are NULL; ``last_activity`` null → NULL.
    """

    def build(item: Mapping[str, Any], uid: int) -> dict[str, Any]:
        total = read_count(item.get("total_blocks"), "total_blocks")
        done = read_count(item.get("completed_blocks"), "completed_blocks")
        rate = read_percent(item.get("completion_rate"), "completion_rate")
        if total is not None and done is not None and total > 0:
            if done > total:
                raise BadRecord(f"completed_blocks {done} > total_blocks {total}")
            progress: float | None = done / total * 100.0
        else:
            progress = rate
        return {
            "total_blocks": total,
            "completed_blocks": done,
            "progress_percent": progress,
            "current_chapter": read_text(
                MOOC_PROGRESS, "current_chapter", item.get("current_chapter"), truncate=True),
            "current_section": read_text(
                MOOC_PROGRESS, "current_section", item.get("current_section"), truncate=True),
            "current_unit": read_text(
                MOOC_PROGRESS, "current_unit", item.get("current_unit"), truncate=True),
            "completion_rate": rate,
            "last_activity": read_time(item.get("last_activity"), "last_activity"),
        }

    return _parse_rows(
        spec=MOOC_PROGRESS, endpoint=EP_PROGRESS, course_id=course_id, items=rows,
        fetched_at=fetched_at, build=build,
    )


_DISCUSSION_COUNTS = (
    "threads_count", "comments_count", "total_interactions", "questions_count", "total_upvotes",
)


def discussion_rows(
    course_id: str, rows: Sequence[Mapping[str, Any]], fetched_at: datetime
) -> Parsed:
    """M6 rows → ``mooc_discussions``, counts as sent (non-negative integers; missing → NULL)."""

    def build(item: Mapping[str, Any], uid: int) -> dict[str, Any]:
        return {name: read_count(item.get(name), name) for name in _DISCUSSION_COUNTS}

    return _parse_rows(
        spec=MOOC_DISCUSSIONS, endpoint=EP_DISCUSSIONS, course_id=course_id, items=rows,
        fetched_at=fetched_at, build=build,
    )
