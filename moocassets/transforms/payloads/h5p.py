"""H5P payloads → rows: H1 scores and H2 video progress (one item list per learner), H3
combined progress with the H4 dashboard as fallback (one object per learner).

Inputs are the per-learner answers as the client returns them (``None`` = the 404 ``no_data``
answer = no rows). Rules common to both systems are in the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from moocassets.schema import (
    DASHBOARD_SUMMARY,
    H5P_SCORES,
    VIDEO_PROGRESS,
    VIDEO_STATUSES,
    TableSpec,
    frame_from_records,
)
from moocassets.transforms.payloads.records import (
    BadRecord,
    Parsed,
    Reject,
    check_bounds,
    quote,
    read_bounded,
    read_count,
    read_optional_int,
    read_percent,
    read_section,
    read_text,
    read_time,
    read_user_id,
    utc,
)
from moocassets.transforms.timeparse import epoch_to_timestamp

__all__ = [
    "EP_DASHBOARD",
    "EP_SCORES",
    "EP_VIDEO",
    "dashboard_rows",
    "h5p_score_rows",
    "video_rows",
]

# Endpoint labels used in Reject.endpoint (spec ids).
EP_SCORES = "H1 scores"
EP_VIDEO = "H2 video-progress"
EP_DASHBOARD = {"H3": "H3 combined-progress", "H4": "H4 dashboard"}
EP_DASHBOARDS = "H3 combined-progress (H4 dashboard fallback)"


_ItemBuilder = Callable[[Mapping[str, Any]], dict[str, Any]]


def _learner_id(key: Any, payload: Mapping[str, Any]) -> int:
    """The requested learner (mapping key); an echoed ``user_id`` must agree with it."""
    uid = read_user_id(key, "learner key")
    echoed = payload.get("user_id")
    if echoed is not None and read_user_id(echoed, "echoed user_id") != uid:
        raise BadRecord(
            f"echoed user_id {quote(echoed)} differs from the requested learner {uid}")
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
    fetched = utc(fetched_at)
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    seen = 0
    for key, payload in payloads.items():
        if payload is None:  # 404 no_data: the learner has no rows
            continue
        items: Any = payload.get(list_key) if isinstance(payload, Mapping) else None
        try:
            if not isinstance(payload, Mapping):
                raise BadRecord(f"payload is not an object ({type(payload).__name__})")
            uid = _learner_id(key, payload)
            if items is None:
                raise BadRecord(
                    f"no {list_key} list in the answer" if list_key not in payload
                    else f"{list_key} is null, not a list")
            if not isinstance(items, list | tuple):
                raise BadRecord(f"{list_key} is not a list")
        except BadRecord as bad:
            n_items = len(items) if isinstance(items, list | tuple) and items else 1
            seen += n_items
            rejects.extend(
                Reject(endpoint, course_id,
                       f"user_id={key}" + (f" item #{i}" if n_items > 1 else ""), str(bad))
                for i in range(n_items)
            )
            continue
        contents: set[int] = set()
        for i, item in enumerate(items):
            seen += 1
            ref = f"user_id={uid} item #{i}"
            try:
                if not isinstance(item, Mapping):
                    raise BadRecord(f"record is not an object ({type(item).__name__})")
                content_id = read_count(item.get("content_id"), "content_id")
                if content_id is None:
                    raise BadRecord("missing content_id")
                ref = f"user_id={uid} content_id={content_id}"
                row = build(item)
                check_bounds(spec, {"content_id": content_id, **row})
                if content_id in contents:
                    raise BadRecord(f"duplicate content_id {content_id}")
            except BadRecord as bad:
                rejects.append(Reject(endpoint, course_id, ref, str(bad)))
                continue
            contents.add(content_id)
            row.update(user_id=uid, course_id=course_id, content_id=content_id,
                       fetched_at=fetched)
            rows.append(row)
    return Parsed(frame_from_records(spec, rows), rejects, seen)


def _flag_or_time(value: Any, name: str) -> tuple[bool | None, pd.Timestamp | None]:
    """H1 ``opened``/``finished``: (value > 0, the time when it is a plausible epoch).

    Numbers (or numeric text) are 0/1 flags or epoch seconds; JSON ``true``/``false`` are flags;
    a ``YYYY-MM-DD HH:MM:SS`` / ISO text is a time (and so "yes"). Missing → (None, None).
    """
    if value is None:
        return None, None
    if isinstance(value, bool):  # some plugin versions send JSON true/false: a flag, never a time
        return value, None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            num: float | None = float(text)
        except ValueError:
            num = None
        if num is None:
            ts = read_time(text, name)
            return True, ts
    num = read_bounded(value, name)
    if num is None:
        return None, None
    return num > 0, epoch_to_timestamp(num)


def _int_score(value: Any, name: str) -> tuple[float | None, int | None]:
    """(raw value, value for the INT column): fractional points are rounded half up."""
    num = read_bounded(value, name)
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
            raise BadRecord(f"score {raw_score:g} > max_score {raw_max:g}")
        pct = read_percent(item.get("percentage"), "percentage")
        if pct is None and raw_score is not None and raw_max:
            pct = raw_score / raw_max * 100.0
        _, opened_at = _flag_or_time(item.get("opened"), "opened")
        finished, finished_at = _flag_or_time(item.get("finished"), "finished")
        return {
            "content_title": read_text(
                H5P_SCORES, "content_title", item.get("content_title"), truncate=True),
            "score": score,
            "max_score": max_score,
            "percentage": pct,
            "opened_at": opened_at,
            "finished_at": finished_at,
            "is_finished": finished,
            "time_spent": read_bounded(item.get("time"), "time"),
            "folder_id": read_optional_int(item.get("folder_id"), "folder_id"),
            "folder_name": read_text(
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
            norm = str(status).strip().lower() if isinstance(status, str) else None
            if norm not in VIDEO_STATUSES:
                raise BadRecord(f"unknown status {quote(status)}")
            status = norm
        return {
            "content_title": read_text(
                VIDEO_PROGRESS, "content_title", item.get("content_title"), truncate=True),
            "progress_percent": read_percent(item.get("progress_percent"), "progress_percent"),
            "current_time": read_bounded(item.get("current_time"), "current_time"),
            "duration": read_bounded(item.get("duration"), "duration"),
            "status": status,
            "folder_id": read_optional_int(item.get("folder_id"), "folder_id"),
            "folder_name": read_text(
                VIDEO_PROGRESS, "folder_name", item.get("folder_name"), truncate=True),
        }

    return _parse_detail(
        spec=VIDEO_PROGRESS, endpoint=EP_VIDEO, list_key="video_progress", course_id=course_id,
        payloads=payloads, fetched_at=fetched_at, build=build,
    )



_SECTIONS = {"H3": ("overall", "video_progress", "scores"),
             "H4": ("overview", "h5p_stats", "video_stats")}


def _dashboard_h3(p: Mapping[str, Any]) -> dict[str, Any]:
    overall, videos, scores = (read_section(p, k) for k in ("overall", "video_progress", "scores"))
    return {
        "overall_completion": read_percent(overall.get("overall_completion"), "overall_completion"),
        "total_items": read_count(overall.get("total_items"), "total_items"),
        "completed_items": read_count(overall.get("completed_items"), "completed_items"),
        "h5p_total_contents": read_count(scores.get("total_contents"), "total_contents"),
        "video_total_videos": read_count(videos.get("total_videos"), "total_videos"),
        "h5p_completed_contents": read_count(
            scores.get("completed_contents"), "completed_contents"),
        "video_completed_videos": read_count(videos.get("completed_videos"), "completed_videos"),
        "h5p_contents_in_course": read_count(
            overall.get("total_contents_in_course_folders"), "total_contents_in_course_folders"),
        "h5p_total_time_spent": read_bounded(scores.get("total_time_spent"), "total_time_spent"),
    }


def _dashboard_h4(p: Mapping[str, Any]) -> dict[str, Any]:
    overview, h5p, videos = (read_section(p, k) for k in ("overview", "h5p_stats", "video_stats"))
    return {
        "overall_completion": read_percent(
            overview.get("overall_completion"), "overall_completion"),
        "total_items": read_count(overview.get("total_items"), "total_items"),
        "completed_items": read_count(overview.get("completed_items"), "completed_items"),
        "h5p_total_contents": read_count(h5p.get("total_contents"), "total_contents"),
        "video_total_videos": read_count(videos.get("total_videos"), "total_videos"),
        "h5p_completed_contents": read_count(h5p.get("completed_contents"), "completed_contents"),
        "video_completed_videos": read_count(videos.get("completed_videos"), "completed_videos"),
        "h5p_contents_in_course": None,  # H4 does not know the course's H5P item count
        "h5p_total_time_spent": read_bounded(h5p.get("total_time_spent"), "total_time_spent"),
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
    fetched = utc(fetched_at)
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
                raise BadRecord(f"unknown dashboard source {quote(source)}")
            payload = answer[1]
            if not isinstance(payload, Mapping):
                raise BadRecord(f"payload is not an object ({type(payload).__name__})")
            uid = _learner_id(key, payload)
            ref = f"user_id={uid}"
            sections = _SECTIONS[source]
            if not any(payload.get(name) is not None for name in sections):
                raise BadRecord(f"none of the sections {', '.join(sections)} in the answer")
            row = _dashboard_h3(payload) if source == "H3" else _dashboard_h4(payload)
            check_bounds(DASHBOARD_SUMMARY, row)
        except BadRecord as bad:
            rejects.append(Reject(endpoint, course_id, ref, str(bad)))
            continue
        if uid in kept:
            rejects.append(Reject(endpoint, course_id, ref, f"duplicate user_id {uid}"))
            continue
        kept.add(uid)
        row.update(user_id=uid, course_id=course_id, source=source, fetched_at=fetched)
        rows.append(row)
    return Parsed(frame_from_records(DASHBOARD_SUMMARY, rows), rejects, seen)
