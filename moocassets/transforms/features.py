"""Warehouse tables → ``raw_data``: features and the ``is_dropout`` label (spec/raw-data.md).

Pure: the evaluation time is a parameter, nothing reads the clock. One row per enrollment; every
other table is left-joined on ``(user_id, course_id)``. A value whose inputs are missing is NULL,
never 0 or a sentinel, except the discussion counts (a learner absent from M6 has 0).

Decisions where the spec leaves room (also in the docstrings below):

* ``as_of`` = ``evaluation_time``, or ``course_end`` when the course ended before it.
* ``last_activity_at`` = the latest of ``mooc_progress.last_activity`` and
  ``h5p_scores_summary.last_activity_at`` that is known at ``as_of``:

  - ended course (``as_of = course_end``): activity after the course end is ignored, so a course
    replayed later gives the same row and no feature leaks information from after ``as_of``.
    The sources only keep the *latest* activity, so a learner whose only recorded activity lies
    after the end counts as "no activity as of the end".
  - running course (``as_of = evaluation_time``): a time after ``as_of`` can only be clock skew
    between the source and the run (the data was fetched before or around the evaluation), so it
    is clipped to ``as_of`` (the learner is active "now").
* ``progress_percent``: ``dashboard_summary.overall_completion`` when the learner has a dashboard
  row with a value, else (H5P completed + completed videos) / (H5P attempted + opened videos) x 100
  over the summary rows that exist; NULL when neither summary exists or the denominator is 0.
* ``h5p_total_contents``, ``h5p_completed_contents``, ``h5p_total_time_spent``,
  ``video_total_videos``, ``video_completed_videos``: the dashboard value when present, else the
  summary's; NULL without either (a 404 learner has no summary row and so NULL, not 0).
* ``h5p_completion_rate`` = h5p_completed_contents / dashboard ``h5p_contents_in_course`` (H3
  ``total_contents_in_course_folders``); NULL when that is unknown (H4, no dashboard) or 0.
* ``video_completion_rate`` = video_completed_videos / video_total_videos;
  ``video_watch_rate`` = total_watched_time / total_duration. Rates are clipped to [0, 1] and NULL
  on a 0 or unknown denominator.
* ``is_dropout``: see :func:`dropout_label`. A learner without a grade row counts as not passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from moocassets import keys
from moocassets.schema import (
    DASHBOARD_SUMMARY,
    ENROLLMENTS,
    H5P_SCORES_SUMMARY,
    MOOC_DISCUSSIONS,
    MOOC_GRADES,
    MOOC_PROGRESS,
    RAW_DATA,
    VIDEO_PROGRESS_SUMMARY,
)
from moocassets.transforms.timeparse import to_utc

__all__ = [
    "DEFAULT_INACTIVITY_DAYS",
    "INPUT_TABLES",
    "RAW_DATA_LINEAGE",
    "Lineage",
    "build_raw_data",
    "dropout_label",
    "dropout_labels",
]

DEFAULT_INACTIVITY_DAYS = 21

INPUT_TABLES: dict[str, str] = {
    "enrollments": ENROLLMENTS.name,
    "grades": MOOC_GRADES.name,
    "progress": MOOC_PROGRESS.name,
    "discussions": MOOC_DISCUSSIONS.name,
    "h5p_summary": H5P_SCORES_SUMMARY.name,
    "video_summary": VIDEO_PROGRESS_SUMMARY.name,
    "dashboard": DASHBOARD_SUMMARY.name,
    "course": keys.COURSE_EXTRACT,
}
""":func:`build_raw_data` argument → the table (asset) whose rows it receives; ``course`` is the
course details frame (``course_id, start, end``) of ``mooc_course_extract``."""
_KEY = ["user_id", "course_id"]

@dataclass(frozen=True)
class Lineage:
    """Where one ``raw_data`` column comes from: source ``(table, column)`` pairs, and how."""

    sources: tuple[tuple[str, str], ...]
    how: str


def _l(how: str, *sources: tuple[str, str]) -> Lineage:
    return Lineage(tuple(sources), how)


_ENR, _GR, _PR, _DI = ENROLLMENTS.name, MOOC_GRADES.name, MOOC_PROGRESS.name, MOOC_DISCUSSIONS.name
_HS, _VS, _DB = H5P_SCORES_SUMMARY.name, VIDEO_PROGRESS_SUMMARY.name, DASHBOARD_SUMMARY.name
_COURSE = keys.COURSE_EXTRACT
_LAST = ((_PR, "last_activity"), (_HS, "last_activity_at"))

RAW_DATA_LINEAGE: dict[str, Lineage] = {
    "user_id": _l("the learner", (_ENR, "user_id")),
    "course_id": _l("the course", (_ENR, "course_id")),
    "enrollment_date": _l("as stored", (_ENR, "created")),
    "mooc_grade_percentage": _l("as stored (0–100)", (_GR, "grade_percentage")),
    "mooc_letter_grade": _l("as stored; NULL when none", (_GR, "letter_grade")),
    "mooc_is_passed": _l("as stored", (_GR, "is_passed")),
    "progress_percent": _l(
        "the dashboard's overall completion, else (H5P completed + completed videos) / "
        "(H5P attempted + opened videos) × 100",
        (_DB, "overall_completion"), (_HS, "completed_contents"), (_HS, "total_contents"),
        (_VS, "completed_videos"), (_VS, "total_videos"),
    ),
    "current_chapter": _l("as stored", (_PR, "current_chapter")),
    "current_section": _l("as stored", (_PR, "current_section")),
    "current_unit": _l("as stored", (_PR, "current_unit")),
    "mooc_completion_rate": _l("as stored (0–100)", (_PR, "completion_rate")),
    "h5p_total_contents": _l(
        "the dashboard's count, else the summary's", (_DB, "h5p_total_contents"),
        (_HS, "total_contents"),
    ),
    "video_total_videos": _l(
        "the dashboard's count, else the summary's", (_DB, "video_total_videos"),
        (_VS, "total_videos"),
    ),
    "discussion_threads_count": _l("as stored; 0 when absent", (_DI, "threads_count")),
    "discussion_comments_count": _l("as stored; 0 when absent", (_DI, "comments_count")),
    "discussion_total_interactions": _l(
        "as stored; 0 when absent", (_DI, "total_interactions")),
    "discussion_questions_count": _l("as stored; 0 when absent", (_DI, "questions_count")),
    "discussion_total_upvotes": _l("as stored; 0 when absent", (_DI, "total_upvotes")),
    "last_activity_at": _l("the latest MOOC or H5P activity known at as_of", *_LAST),
    "days_since_last_activity": _l("whole days from last_activity_at to as_of", *_LAST),
    "weeks_since_enrollment": _l("whole weeks from enrollment to as_of", (_ENR, "created")),
    "course_elapsed_fraction": _l(
        "(as_of − start) / (end − start), clipped to [0, 1]", (_COURSE, "start"),
        (_COURSE, "end"),
    ),
    "h5p_completed_contents": _l(
        "the dashboard's count, else the summary's", (_DB, "h5p_completed_contents"),
        (_HS, "completed_contents"),
    ),
    "h5p_completion_rate": _l(
        "completed / H5P contents that exist in the course", (_DB, "h5p_completed_contents"),
        (_DB, "h5p_contents_in_course"),
    ),
    "h5p_overall_percentage": _l("as aggregated", (_HS, "overall_percentage")),
    "h5p_total_time_spent": _l(
        "the dashboard's total, else the summary's", (_DB, "h5p_total_time_spent"),
        (_HS, "total_time_spent"),
    ),
    "video_completed_videos": _l(
        "the dashboard's count, else the summary's", (_DB, "video_completed_videos"),
        (_VS, "completed_videos"),
    ),
    "video_completion_rate": _l(
        "completed videos / videos", (_VS, "completed_videos"), (_VS, "total_videos")),
    "video_watch_rate": _l(
        "watched time / duration of opened videos", (_VS, "total_watched_time"),
        (_VS, "total_duration"),
    ),
    "pace_gap": _l(
        "mooc_completion_rate − 100 × course_elapsed_fraction", (_PR, "completion_rate"),
        (_COURSE, "start"), (_COURSE, "end"),
    ),
    "is_dropout": _l(
        "not passed and no activity for the inactivity window as of as_of (see dropout_label)",
        (_GR, "is_passed"), *_LAST, (_ENR, "created"),
    ),
}
"""Column lineage of ``raw_data``, declared once: the standard ``dagster/column_lineage`` metadata
and the readable table on the asset's page are both generated from it."""


def lineage_markdown() -> str:
    """:data:`RAW_DATA_LINEAGE` as a Markdown table: column ← source table.column, how."""
    lines = ["| column | ← from | how |", "|---|---|---|"]
    for column, lineage in RAW_DATA_LINEAGE.items():
        sources = ", ".join(f"`{table}.{source}`" for table, source in lineage.sources)
        lines.append(f"| `{column}` | {sources} | {lineage.how} |")
    return "\n".join(lines)

_DAY = pd.Timedelta(days=1)
_UTC = "datetime64[ns, UTC]"


def _check_days(inactivity_days: int) -> None:
    if isinstance(inactivity_days, bool) or not isinstance(inactivity_days, int | np.integer):
        raise TypeError(f"inactivity_days must be an int, got {inactivity_days!r}")
    if inactivity_days < 1:
        raise ValueError(f"inactivity_days must be >= 1, got {inactivity_days}")


def _ts(value: datetime | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None or value is pd.NaT:
        return None
    return to_utc(value)


def dropout_label(
    *,
    passed: bool | None,
    last_activity_at: datetime | None,
    enrollment_date: datetime | None,
    as_of: datetime,
    inactivity_days: int = DEFAULT_INACTIVITY_DAYS,
) -> bool:
    """The ``is_dropout`` rule for one learner (naive times are UTC).

    TRUE when the learner has not passed (``passed`` FALSE or unknown) and either

    * their last activity is at least ``inactivity_days`` days before ``as_of``, or
    * they never showed any activity (``last_activity_at`` is None) and enrolled at least
      ``inactivity_days`` days before ``as_of``.

    A learner who passed is never a dropout. Never active with an unknown enrollment date →
    FALSE (nothing shows the learner has had ``inactivity_days`` to start).
    """
    _check_days(inactivity_days)
    if passed is True:
        return False
    horizon = pd.Timedelta(days=inactivity_days)
    now = to_utc(as_of)
    last = _ts(last_activity_at)
    if last is not None:
        return bool(now - last >= horizon)
    enrolled = _ts(enrollment_date)
    return enrolled is not None and bool(now - enrolled >= horizon)


def dropout_labels(
    *,
    passed: pd.Series,
    last_activity_at: pd.Series,
    enrollment_date: pd.Series,
    as_of: pd.Series,
    inactivity_days: int = DEFAULT_INACTIVITY_DAYS,
) -> pd.Series:
    """Vectorized :func:`dropout_label` over aligned series (result: non-null ``boolean``)."""
    _check_days(inactivity_days)
    horizon = pd.Timedelta(days=inactivity_days)
    now = pd.to_datetime(as_of, utc=True)
    last = pd.to_datetime(last_activity_at, utc=True)
    enrolled = pd.to_datetime(enrollment_date, utc=True)
    not_passed = ~passed.astype("boolean").fillna(False).astype(bool)
    inactive = last.notna() & ((now - last) >= horizon)
    never_active = last.isna() & enrolled.notna() & ((now - enrolled) >= horizon)
    return (not_passed & (inactive | never_active)).astype("boolean")


def _prefixed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Key columns plus ``columns`` renamed (source → target), with a presence marker."""
    out = frame[[*_KEY, *columns]].rename(columns=columns)
    return out.assign(**{f"_has_{next(iter(columns.values()))}": True})


def _ratio(num: pd.Series, den: pd.Series, scale: float = 1.0) -> pd.Series:
    """num / den x scale as float64; NaN (NULL) when either is NULL or den is 0."""
    n = num.astype("Float64")
    d = den.astype("Float64")
    return (n / d.where(d > 0) * scale).astype("float64")


def _first_known(primary: pd.Series, fallback: pd.Series) -> pd.Series:
    return primary.where(primary.notna(), fallback)


def build_raw_data(
    *,
    enrollments: pd.DataFrame,
    grades: pd.DataFrame,
    progress: pd.DataFrame,
    discussions: pd.DataFrame,
    h5p_summary: pd.DataFrame,
    video_summary: pd.DataFrame,
    dashboard: pd.DataFrame,
    course: pd.DataFrame,
    evaluation_time: datetime,
    inactivity_days: int = DEFAULT_INACTIVITY_DAYS,
) -> pd.DataFrame:
    """One ``raw_data`` row per enrollment, as of ``evaluation_time`` (see the module docstring).

    Inputs are the warehouse frames of their tables (coerced here, extra columns such as ``id``
    ignored); ``course`` has ``course_id, start, end`` (as :func:`payloads.course_frame`; a
    course without a row has unknown dates). ``dropout_risk_score``, ``dropout_risk_reasons`` and
    ``dropout_risk_model`` are NULL: a later stage fills them.
    """
    _check_days(inactivity_days)
    evaluation = to_utc(evaluation_time)

    enr = ENROLLMENTS.coerce_frame(enrollments)
    if enr.empty:
        return RAW_DATA.empty_frame()
    base = enr[[*_KEY, "created"]].rename(columns={"created": "enrollment_date"})

    gr = _prefixed(MOOC_GRADES.coerce_frame(grades), {
        "grade_percentage": "mooc_grade_percentage",
        "letter_grade": "mooc_letter_grade",
        "is_passed": "mooc_is_passed",
    })
    pr = _prefixed(MOOC_PROGRESS.coerce_frame(progress), {
        "current_chapter": "current_chapter",
        "current_section": "current_section",
        "current_unit": "current_unit",
        "completion_rate": "mooc_completion_rate",
        "last_activity": "_mooc_last_activity",
    })
    di = _prefixed(MOOC_DISCUSSIONS.coerce_frame(discussions), {
        "threads_count": "discussion_threads_count",
        "comments_count": "discussion_comments_count",
        "total_interactions": "discussion_total_interactions",
        "questions_count": "discussion_questions_count",
        "total_upvotes": "discussion_total_upvotes",
    })
    hs = _prefixed(H5P_SCORES_SUMMARY.coerce_frame(h5p_summary), {
        "total_contents": "_hs_total",
        "completed_contents": "_hs_completed",
        "overall_percentage": "h5p_overall_percentage",
        "total_time_spent": "_hs_time",
        "last_activity_at": "_h5p_last_activity",
    })
    vs = _prefixed(VIDEO_PROGRESS_SUMMARY.coerce_frame(video_summary), {
        "total_videos": "_vs_total",
        "completed_videos": "_vs_completed",
        "total_duration": "_vs_duration",
        "total_watched_time": "_vs_watched",
    })
    db = _prefixed(DASHBOARD_SUMMARY.coerce_frame(dashboard), {
        "overall_completion": "_db_overall",
        "h5p_total_contents": "_db_h5p_total",
        "h5p_completed_contents": "_db_h5p_completed",
        "h5p_contents_in_course": "_db_h5p_in_course",
        "h5p_total_time_spent": "_db_h5p_time",
        "video_total_videos": "_db_video_total",
        "video_completed_videos": "_db_video_completed",
    })
    df = base
    for part in (gr, pr, di, hs, vs, db):
        df = df.merge(part, on=_KEY, how="left", validate="one_to_one")

    # ---- time --------------------------------------------------------------------------------
    dates = course[["course_id", "start", "end"]].drop_duplicates("course_id")
    dates = dates.assign(
        _start=pd.to_datetime(dates["start"], utc=True).astype(_UTC),
        _end=pd.to_datetime(dates["end"], utc=True).astype(_UTC),
    )[["course_id", "_start", "_end"]]
    df = df.merge(dates, on="course_id", how="left")
    evaluation_s = pd.Series(evaluation, index=df.index, dtype=_UTC)
    ended = df["_end"].notna() & (df["_end"] < evaluation_s)
    as_of = evaluation_s.where(~ended, df["_end"])
    df["as_of"] = as_of

    def known_at(col: str) -> pd.Series:
        t = df[col]
        # ended course: ignore activity after the end; running course: clip skew to as_of
        t = t.where(~(ended & (t > as_of)))
        return t.where(~(t > as_of), as_of)

    activity = pd.concat([known_at("_mooc_last_activity"), known_at("_h5p_last_activity")], axis=1)
    last = activity.max(axis=1, skipna=True).astype(_UTC)
    df["last_activity_at"] = last
    df["days_since_last_activity"] = ((as_of - last) // _DAY).astype("Int64")
    weeks = ((as_of - df["enrollment_date"]) // pd.Timedelta(weeks=1)).clip(lower=0)
    df["weeks_since_enrollment"] = weeks.astype("Int64")
    span = df["_end"] - df["_start"]
    span = span.where(span > pd.Timedelta(0))
    # rounded to the stored scale first, so pace_gap agrees with the stored fraction
    df["course_elapsed_fraction"] = ((as_of - df["_start"]) / span).clip(0.0, 1.0).round(4)

    # ---- H5P / video -------------------------------------------------------------------------
    has_h5p, has_video = df["_has__hs_total"].notna(), df["_has__vs_total"].notna()
    done = df["_hs_completed"].astype("Float64").fillna(0) + df["_vs_completed"].astype(
        "Float64").fillna(0)
    total = df["_hs_total"].astype("Float64").fillna(0) + df["_vs_total"].astype(
        "Float64").fillna(0)
    fallback = _ratio(done, total.where(has_h5p | has_video), 100.0).clip(0.0, 100.0)
    df["progress_percent"] = _first_known(df["_db_overall"], fallback)

    df["h5p_total_contents"] = _first_known(df["_db_h5p_total"], df["_hs_total"])
    df["h5p_completed_contents"] = _first_known(df["_db_h5p_completed"], df["_hs_completed"])
    df["h5p_total_time_spent"] = _first_known(df["_db_h5p_time"], df["_hs_time"])
    df["video_total_videos"] = _first_known(df["_db_video_total"], df["_vs_total"])
    df["video_completed_videos"] = _first_known(df["_db_video_completed"], df["_vs_completed"])
    df["h5p_completion_rate"] = _ratio(
        df["h5p_completed_contents"], df["_db_h5p_in_course"]).clip(0.0, 1.0)
    df["video_completion_rate"] = _ratio(
        df["video_completed_videos"], df["video_total_videos"]).clip(0.0, 1.0)
    df["video_watch_rate"] = _ratio(df["_vs_watched"], df["_vs_duration"]).clip(0.0, 1.0)

    # ---- forum: absent from M6 = 0 -----------------------------------------------------------
    absent = df["_has_discussion_threads_count"].isna()
    for col in ("discussion_threads_count", "discussion_comments_count",
                "discussion_total_interactions", "discussion_questions_count",
                "discussion_total_upvotes"):
        df[col] = df[col].astype("Int64").mask(absent, 0)

    df["pace_gap"] = (
        df["mooc_completion_rate"].astype("float64") - 100.0 * df["course_elapsed_fraction"]
    )

    # ---- label, score placeholders -----------------------------------------------------------
    df["is_dropout"] = dropout_labels(
        passed=df["mooc_is_passed"], last_activity_at=last,
        enrollment_date=df["enrollment_date"], as_of=as_of, inactivity_days=inactivity_days,
    )
    for col in ("dropout_risk_score", "dropout_risk_reasons", "dropout_risk_model"):
        df[col] = None
    df["dropout_risk_score"] = df["dropout_risk_score"].astype("float64")

    out = RAW_DATA.coerce_frame(df)
    RAW_DATA.validate_frame(out)
    return out
