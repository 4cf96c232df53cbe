"""Keep warehouse rows consistent with the enrollment list (pure)."""

from __future__ import annotations

import pandas as pd


def restrict_to_enrolled(
    frame: pd.DataFrame, enrollments: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into rows of enrolled learners and rows of learners not enrolled.

    A learner is enrolled in a course when ``(user_id, course_id)`` is in ``enrollments``. Sources
    keep data of learners who unenrolled; the warehouse must not (removals are reflected).
    """
    if frame.empty:
        return frame.reset_index(drop=True), frame.iloc[0:0]
    enrolled = pd.MultiIndex.from_frame(
        enrollments[["user_id", "course_id"]].astype({"user_id": "Int64"})
    )
    keys = pd.MultiIndex.from_frame(frame[["user_id", "course_id"]].astype({"user_id": "Int64"}))
    mask = keys.isin(enrolled)
    return frame[mask].reset_index(drop=True), frame[~mask].reset_index(drop=True)
