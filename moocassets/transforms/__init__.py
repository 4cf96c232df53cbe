"""Pure transformations: source payloads → warehouse rows → summaries → ``raw_data``.

No I/O, no Dagster, no clock reads: every time is a parameter.
"""

from moocassets.transforms.features import build_raw_data, dropout_label, dropout_labels
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
from moocassets.transforms.summaries import h5p_summary, video_summary

__all__ = [
    "Parsed",
    "Reject",
    "build_raw_data",
    "course_frame",
    "dashboard_rows",
    "discussion_rows",
    "dropout_label",
    "dropout_labels",
    "enrollment_rows",
    "grade_rows",
    "h5p_score_rows",
    "h5p_summary",
    "progress_rows",
    "video_rows",
    "video_summary",
]
