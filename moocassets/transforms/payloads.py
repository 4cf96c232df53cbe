"""Source payloads → warehouse rows, with per-record validation (pure functions, no I/O).

Inputs are the decoded JSON records as the sources send them, envelopes already unwrapped by the
clients (spec/source-apis.md): a list of row dicts for M1/M4/M5/M6, and per learner the whole
H1/H2/H3/H4 object (``None`` = the 404 ``no_data`` answer = no rows).

Every parser returns :class:`Parsed`: the rows as a frame that passes its table's
``coerce_frame`` + ``validate_frame``, the records it rejected with a reason, and how many records
it examined (``seen``). A bad record is rejected, never stored and never raises; only records are
rejected, never the whole course (the caller applies the reject-share threshold).

What counts as one record (``seen``):

* M1/M4/M5/M6: one list item.
* H1/H2: one item of ``scores`` / ``video_progress``. A learner payload that is unusable as a
  whole (bad learner key, echoed ``user_id`` differing from the key, ``scores`` not a list) rejects
  each of its items with the same reason (or counts as one record when it has no item list).
* H3/H4: one learner payload.

Common rules: the learner id is ``user_id`` falling back to ``id``, int or digit string → int,
must be positive; unknown fields are ignored; missing optional fields are NULL; numbers may come
as numeric strings (H5P); booleans must be JSON booleans, 0/1 or ``"true"``/``"false"``;
free-text display names (titles, chapter names, full names) longer than their column are
truncated, identifiers (username, email, letter grade) that are too long reject the record.
Duplicates of the key within one payload: the first is kept, the others are rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from moocassets.schema import (
    DASHBOARD_SUMMARY,
    ENROLLMENTS,
    H5P_SCORES,
    MOOC_DISCUSSIONS,
    MOOC_GRADES,
    MOOC_PROGRESS,
    VIDEO_PROGRESS,
    VIDEO_STATUSES,
    TableSpec,
    frame_from_records,
)
from moocassets.transforms.timeparse import (
    TimeParseError,
    epoch_to_timestamp,
    parse_timestamp,
    to_utc,
)

__all__ = [
    "COURSE_FRAME_COLUMNS",
    "Parsed",
    "Reject",
    "course_frame",
    "dashboard_rows",
    "discussion_rows",
    "enrollment_rows",
    "grade_rows",
    "h5p_score_rows",
    "progress_rows",
    "video_rows",
]

# Endpoint labels used in Reject.endpoint (spec ids).
EP_ENROLLMENTS = "M1 course-enrollments-attributes"
EP_GRADES = "M4 export/student-grades"
EP_PROGRESS = "M5 export/student-progress"
EP_DISCUSSIONS = "M6 export/student-discussions"
EP_SCORES = "H1 scores"
EP_VIDEO = "H2 video-progress"
EP_DASHBOARD = {"H3": "H3 combined-progress", "H4": "H4 dashboard"}

COURSE_FRAME_COLUMNS = ("course_id", "display_name", "start", "end")


@dataclass(frozen=True)
class Reject:
    """One record that was not stored, and why."""

    endpoint: str
    course_id: str
    record_ref: str  # e.g. "user_id=12", "item #37", "user_id=12 content_id=45"
    reason: str


@dataclass
class Parsed:
    """Rows for one table, the rejected records, and how many records were examined."""

    frame: pd.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    seen: int = 0

    @property
    def reject_share(self) -> float:
        """Rejected records / records examined (0.0 when nothing was examined)."""
        return len(self.rejects) / self.seen if self.seen else 0.0


class _Bad(Exception):
    """A record fails validation; the message is the reject reason."""


# =============================================================================================
# Field readers (raise _Bad with the reject reason)
# =============================================================================================


def _user_id_value(value: Any, what: str = "user id") -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Bad(f"missing {what}")
    if isinstance(value, bool):
        raise _Bad(f"non-integer {what} {value!r}")
    if isinstance(value, int):
        uid = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _Bad(f"non-integer {what} {value!r}")
        uid = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise _Bad(f"non-integer {what} {value!r}")
        uid = int(text)
    else:
        raise _Bad(f"non-integer {what} {value!r}")
    if uid <= 0:
        raise _Bad(f"non-positive {what} {uid}")
    return uid


def _record_user_id(rec: Mapping[str, Any]) -> int:
    value = rec.get("user_id")
    if value is None:
        value = rec.get("id")
    return _user_id_value(value)


def _number(value: Any, name: str) -> float | None:
    """A finite number (int/float or numeric text); None/"" → None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Bad(f"non-numeric {name} {value!r}")
    if isinstance(value, int | float):
        num = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            num = float(text)
        except ValueError:
            raise _Bad(f"non-numeric {name} {value!r}") from None
    else:
        raise _Bad(f"non-numeric {name} {value!r}")
    if not math.isfinite(num):
        raise _Bad(f"non-numeric {name} {value!r}")
    return num


def _bounded(
    value: Any, name: str, lo: float | None = 0.0, hi: float | None = None
) -> float | None:
    num = _number(value, name)
    if num is None:
        return None
    if lo is not None and hi is not None and not lo <= num <= hi:
        raise _Bad(f"{name} {num:g} outside [{lo:g}, {hi:g}]")
    if lo is not None and num < lo:
        raise _Bad(f"negative {name} {num:g}" if lo == 0 else f"{name} {num:g} below {lo:g}")
    if hi is not None and num > hi:
        raise _Bad(f"{name} {num:g} above {hi:g}")
    return num


def _pct(value: Any, name: str) -> float | None:
    return _bounded(value, name, 0.0, 100.0)


def _count(value: Any, name: str) -> int | None:
    """A non-negative integer (5.0 and "5" accepted; 5.5, -1 rejected)."""
    num = _bounded(value, name)
    if num is None:
        return None
    if num != int(num):
        raise _Bad(f"non-integer {name} {value!r}")
    return int(num)


def _optional_int(value: Any, name: str) -> int | None:
    num = _number(value, name)
    if num is None:
        return None
    if num != int(num):
        raise _Bad(f"non-integer {name} {value!r}")
    return int(num)


def _bool(value: Any, name: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        if not text:
            return None
    raise _Bad(f"non-boolean {name} {value!r}")


def _time(value: Any, name: str) -> pd.Timestamp | None:
    try:
        return parse_timestamp(value)
    except TimeParseError:
        raise _Bad(f"unparseable {name} {value!r}") from None


def _text(spec: TableSpec, name: str, value: Any, *, truncate: bool) -> str | None:
    """Text for a varchar column: None/"" → None; too long → truncated or rejected."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        return None
    length = spec.column(name).length
    if length is not None and len(text) > length:
        if not truncate:
            raise _Bad(f"{name} longer than {length} characters")
        text = text[:length]
    return text


def _section(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Bad(f"{key} is not an object")
    return value


def _utc(fetched_at: datetime) -> pd.Timestamp:
    return to_utc(fetched_at)


# =============================================================================================
# Course
# =============================================================================================


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


# =============================================================================================
# MOOC row lists (M1, M4, M5, M6)
# =============================================================================================

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
    fetched = _utc(fetched_at)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    seen_ids: set[int] = set()
    seen_extra: set[Any] = set()
    for i, item in enumerate(items):
        ref = f"item #{i}"
        try:
            if not isinstance(item, Mapping):
                raise _Bad(f"record is not an object ({type(item).__name__})")
            uid = _record_user_id(item)
            ref = f"user_id={uid}"
            row = build(item, uid)
            if uid in seen_ids:
                raise _Bad(f"duplicate user_id {uid}")
            if extra_unique is not None and row[extra_unique] is not None:
                if row[extra_unique] in seen_extra:
                    raise _Bad(f"duplicate {extra_unique} {row[extra_unique]}")
                seen_extra.add(row[extra_unique])
        except _Bad as bad:
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
            mode = str(mode).strip().lower() or None
            if mode is not None and mode not in modes:
                raise _Bad(f"unknown mode {item.get('mode')!r}")
        info, attrs = item.get("student_info"), item.get("all_attributes")
        return {
            "username": _text(ENROLLMENTS, "username", item.get("username"), truncate=False),
            "email": _text(ENROLLMENTS, "email", item.get("email"), truncate=False),
            "full_name": _text(ENROLLMENTS, "full_name", item.get("full_name"), truncate=True),
            "enrollment_id": _count(item.get("enrollment_id"), "enrollment_id"),
            "mode": mode,
            "is_active": _bool(item.get("is_active"), "is_active"),
            "created": _time(item.get("created"), "created"),
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
        frac = _bounded(item.get("percent_grade"), "percent_grade", 0.0, 1.0)
        pct = _pct(item.get("grade_percentage"), "grade_percentage")
        if pct is None and frac is not None:
            pct = frac * 100.0
        if frac is None and pct is not None:
            frac = pct / 100.0
        letter = item.get("letter_grade")
        letter = letter.strip() if isinstance(letter, str) else letter
        return {
            "percent_grade": frac,
            "grade_percentage": pct,
            "letter_grade": _text(MOOC_GRADES, "letter_grade", letter, truncate=False),
            "is_passed": _bool(item.get("is_passed"), "is_passed"),
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
        total = _count(item.get("total_blocks"), "total_blocks")
        done = _count(item.get("completed_blocks"), "completed_blocks")
        rate = _pct(item.get("completion_rate"), "completion_rate")
        if total is not None and done is not None and total > 0:
            if done > total:
                raise _Bad(f"completed_blocks {done} > total_blocks {total}")
            progress: float | None = done / total * 100.0
        else:
            progress = rate
        return {
            "total_blocks": total,
            "completed_blocks": done,
            "progress_percent": progress,
            "current_chapter": _text(
                MOOC_PROGRESS, "current_chapter", item.get("current_chapter"), truncate=True),
            "current_section": _text(
                MOOC_PROGRESS, "current_section", item.get("current_section"), truncate=True),
            "current_unit": _text(
                MOOC_PROGRESS, "current_unit", item.get("current_unit"), truncate=True),
            "completion_rate": rate,
            "last_activity": _time(item.get("last_activity"), "last_activity"),
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
        return {name: _count(item.get(name), name) for name in _DISCUSSION_COUNTS}

    return _parse_rows(
        spec=MOOC_DISCUSSIONS, endpoint=EP_DISCUSSIONS, course_id=course_id, items=rows,
        fetched_at=fetched_at, build=build,
    )


# =============================================================================================
# H5P per-learner payloads (H1, H2)
# =============================================================================================

_ItemBuilder = Callable[[Mapping[str, Any]], dict[str, Any]]


def _learner_id(key: Any, payload: Mapping[str, Any]) -> int:
    """The requested learner (mapping key); an echoed ``user_id`` must agree with it."""
    uid = _user_id_value(key, "learner key")
    echoed = payload.get("user_id")
    if echoed is not None and _user_id_value(echoed, "echoed user_id") != uid:
        raise _Bad(f"echoed user_id {echoed!r} differs from the requested learner {uid}")
    return uid


def _parse_detail(
    *,
    spec: TableSpec,
    endpoint: str,
    list_key: str,
    course_id: str,
    payloads: Mapping[Any, Mapping[str, Any] | None],
    fetched_at: datetime,
    build: _ItemBuilder,
) -> Parsed:
    """Shared loop for H1/H2: one row per (learner, content_id); see the module docstring."""
    fetched = _utc(fetched_at)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    seen = 0
    for key, payload in payloads.items():
        if payload is None:  # 404 no_data: the learner has no rows
            continue
        items: Any = payload.get(list_key) if isinstance(payload, Mapping) else None
        try:
            if not isinstance(payload, Mapping):
                raise _Bad(f"payload is not an object ({type(payload).__name__})")
            uid = _learner_id(key, payload)
            if items is None:
                items = []
            if not isinstance(items, list | tuple):
                raise _Bad(f"{list_key} is not a list")
        except _Bad as bad:
            count = len(items) if isinstance(items, list | tuple) and items else 1
            seen += count
            rejects.extend(
                Reject(endpoint, course_id,
                       f"user_id={key}" + (f" item #{i}" if count > 1 else ""), str(bad))
                for i in range(count)
            )
            continue
        contents: set[int] = set()
        for i, item in enumerate(items):
            seen += 1
            ref = f"user_id={uid} item #{i}"
            try:
                if not isinstance(item, Mapping):
                    raise _Bad(f"record is not an object ({type(item).__name__})")
                content_id = _count(item.get("content_id"), "content_id")
                if content_id is None:
                    raise _Bad("missing content_id")
                ref = f"user_id={uid} content_id={content_id}"
                row = build(item)
                if content_id in contents:
                    raise _Bad(f"duplicate content_id {content_id}")
            except _Bad as bad:
                rejects.append(Reject(endpoint, course_id, ref, str(bad)))
                continue
            contents.add(content_id)
            row.update(user_id=uid, course_id=course_id, content_id=content_id,
                       fetched_at=fetched)
            rows.append(row)
    return Parsed(frame_from_records(spec, rows), rejects, seen)


def _flag_or_time(value: Any, name: str) -> tuple[bool | None, pd.Timestamp | None]:
    """H1 ``opened``/``finished``: (value > 0, the time when it is a plausible epoch).

    Numbers (or numeric text) are 0/1 flags or epoch seconds; a ``YYYY-MM-DD HH:MM:SS`` /
    ISO text is a time (and so "yes"). Missing → (None, None).
    """
    if value is None:
        return None, None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            num: float | None = float(text)
        except ValueError:
            num = None
        if num is None:
            ts = _time(text, name)
            return True, ts
    num = _bounded(value, name)
    if num is None:
        return None, None
    return num > 0, epoch_to_timestamp(num)


def _int_score(value: Any, name: str) -> tuple[float | None, int | None]:
    """(raw value, value for the INT column): fractional points are rounded half up."""
    num = _bounded(value, name)
    if num is None:
        return None, None
    return num, math.floor(num + 0.5)


def h5p_score_rows(
    course_id: str, payloads: Mapping[int, Mapping[str, Any] | None], fetched_at: datetime
) -> Parsed:
    """H1 payloads per learner → ``h5p_scores`` (one row per attempted content).

    * ``opened``/``finished`` > 0 means opened/finished (``is_finished``); ``opened_at`` /
      ``finished_at`` only when the value is a plausible epoch (≥ 2000-01-01), never 1970 from a
      flag ``1``; a text timestamp is also accepted.
    * ``time`` (decimal seconds) → ``time_spent``.
    * ``percentage`` as sent (0-100), else score / max_score x 100 (NULL when max_score is 0 or
      unknown). ``score > max_score`` is rejected. Fractional points are rounded half up for
      the INT columns (the percentage is derived from the unrounded values).
    * The summary block of the payload is ignored: ``h5p_scores_summary`` is derived from the rows.
    """

    def build(item: Mapping[str, Any]) -> dict[str, Any]:
        raw_score, score = _int_score(item.get("score"), "score")
        raw_max, max_score = _int_score(item.get("max_score"), "max_score")
        if raw_score is not None and raw_max is not None and raw_score > raw_max:
            raise _Bad(f"score {raw_score:g} > max_score {raw_max:g}")
        pct = _pct(item.get("percentage"), "percentage")
        if pct is None and raw_score is not None and raw_max:
            pct = raw_score / raw_max * 100.0
        _, opened_at = _flag_or_time(item.get("opened"), "opened")
        finished, finished_at = _flag_or_time(item.get("finished"), "finished")
        return {
            "content_title": _text(
                H5P_SCORES, "content_title", item.get("content_title"), truncate=True),
            "score": score,
            "max_score": max_score,
            "percentage": pct,
            "opened_at": opened_at,
            "finished_at": finished_at,
            "is_finished": finished,
            "time_spent": _bounded(item.get("time"), "time"),
            "folder_id": _optional_int(item.get("folder_id"), "folder_id"),
            "folder_name": _text(
                H5P_SCORES, "folder_name", item.get("folder_name"), truncate=True),
        }

    return _parse_detail(
        spec=H5P_SCORES, endpoint=EP_SCORES, list_key="scores", course_id=course_id,
        payloads=payloads, fetched_at=fetched_at, build=build,
    )


def video_rows(
    course_id: str, payloads: Mapping[int, Mapping[str, Any] | None], fetched_at: datetime
) -> Parsed:
    """H2 payloads per learner → ``video_progress`` (one row per opened video).

    ``current_time``/``duration`` keep their decimals (DECIMAL(12,2)); ``progress_percent`` 0-100
    as sent (NULL when missing); ``status`` (lower-cased) must be completed / in_progress /
    started / not_started, NULL when missing. The payload's summary block is ignored.
    """

    def build(item: Mapping[str, Any]) -> dict[str, Any]:
        status = item.get("status")
        if status is not None:
            norm = str(status).strip().lower()
            if norm not in VIDEO_STATUSES:
                raise _Bad(f"unknown status {status!r}")
            status = norm
        return {
            "content_title": _text(
                VIDEO_PROGRESS, "content_title", item.get("content_title"), truncate=True),
            "progress_percent": _pct(item.get("progress_percent"), "progress_percent"),
            "current_time": _bounded(item.get("current_time"), "current_time"),
            "duration": _bounded(item.get("duration"), "duration"),
            "status": status,
            "folder_id": _optional_int(item.get("folder_id"), "folder_id"),
            "folder_name": _text(
                VIDEO_PROGRESS, "folder_name", item.get("folder_name"), truncate=True),
        }

    return _parse_detail(
        spec=VIDEO_PROGRESS, endpoint=EP_VIDEO, list_key="video_progress", course_id=course_id,
        payloads=payloads, fetched_at=fetched_at, build=build,
    )


# =============================================================================================
# Dashboards (H3, H4 fallback)
# =============================================================================================


def _dashboard_h3(p: Mapping[str, Any]) -> dict[str, Any]:
    overall, videos, scores = (_section(p, k) for k in ("overall", "video_progress", "scores"))
    return {
        "overall_completion": _pct(overall.get("overall_completion"), "overall_completion"),
        "total_items": _count(overall.get("total_items"), "total_items"),
        "completed_items": _count(overall.get("completed_items"), "completed_items"),
        "h5p_total_contents": _count(scores.get("total_contents"), "total_contents"),
        "video_total_videos": _count(videos.get("total_videos"), "total_videos"),
        "h5p_completed_contents": _count(scores.get("completed_contents"), "completed_contents"),
        "video_completed_videos": _count(videos.get("completed_videos"), "completed_videos"),
        "h5p_contents_in_course": _count(
            overall.get("total_contents_in_course_folders"), "total_contents_in_course_folders"),
        "h5p_total_time_spent": _bounded(scores.get("total_time_spent"), "total_time_spent"),
    }


def _dashboard_h4(p: Mapping[str, Any]) -> dict[str, Any]:
    overview, h5p, videos = (_section(p, k) for k in ("overview", "h5p_stats", "video_stats"))
    return {
        "overall_completion": _pct(overview.get("overall_completion"), "overall_completion"),
        "total_items": _count(overview.get("total_items"), "total_items"),
        "completed_items": _count(overview.get("completed_items"), "completed_items"),
        "h5p_total_contents": _count(h5p.get("total_contents"), "total_contents"),
        "video_total_videos": _count(videos.get("total_videos"), "total_videos"),
        "h5p_completed_contents": _count(h5p.get("completed_contents"), "completed_contents"),
        "video_completed_videos": _count(videos.get("completed_videos"), "completed_videos"),
        "h5p_contents_in_course": None,  # H4 does not know the course's H5P item count
        "h5p_total_time_spent": _bounded(h5p.get("total_time_spent"), "total_time_spent"),
    }


def dashboard_rows(
    course_id: str,
    payloads: Mapping[int, tuple[str, Mapping[str, Any]] | None],
    fetched_at: datetime,
) -> Parsed:
    """H3 (or H4 fallback) payload per learner → ``dashboard_summary`` (one row per learner).

    H3: overall.{overall_completion, total_items, completed_items,
    total_contents_in_course_folders → h5p_contents_in_course}, scores.{total_contents →
    h5p_total_contents, completed_contents, total_time_spent}, video_progress.{total_videos,
    completed_videos}. H4: the same from overview / h5p_stats / video_stats, with
    ``h5p_contents_in_course`` NULL. ``source`` records which endpoint answered.
    """
    fetched = _utc(fetched_at)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    seen = 0
    kept: set[int] = set()
    for key, answer in payloads.items():
        if answer is None:
            continue
        seen += 1
        source = answer[0] if isinstance(answer, tuple) and len(answer) == 2 else None
        endpoint = EP_DASHBOARD.get(source, "H3/H4 dashboard") if isinstance(source, str) else (
            "H3/H4 dashboard"
        )
        ref = f"user_id={key}"
        try:
            if source not in EP_DASHBOARD:
                raise _Bad(f"unknown dashboard source {source!r}")
            payload = answer[1]
            if not isinstance(payload, Mapping):
                raise _Bad(f"payload is not an object ({type(payload).__name__})")
            uid = _learner_id(key, payload)
            ref = f"user_id={uid}"
            row = _dashboard_h3(payload) if source == "H3" else _dashboard_h4(payload)
        except _Bad as bad:
            rejects.append(Reject(endpoint, course_id, ref, str(bad)))
            continue
        if uid in kept:
            rejects.append(Reject(endpoint, course_id, ref, f"duplicate user_id {uid}"))
            continue
        kept.add(uid)
        row.update(user_id=uid, course_id=course_id, source=source, fetched_at=fetched)
        rows.append(row)
    return Parsed(frame_from_records(DASHBOARD_SUMMARY, rows), rejects, seen)
