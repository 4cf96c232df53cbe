"""Stand-in assets with the real graph's keys, groups, partitions and dependencies (no I/O).

Automation tests put the production conditions on these (through ``with_automation``) and
report materializations into an ephemeral instance, so they run in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from moocassets.partitions import course_partitions

ROOT_EXTRACTS = [
    "mooc_course_extract",
    "mooc_enrollments_extract",
    "mooc_grades_extract",
    "mooc_progress_extract",
    "mooc_discussions_extract",
]
H5P_EXTRACTS = ["h5p_scores_extract", "video_progress_extract", "dashboard_extract"]
EXTRACTS = [*ROOT_EXTRACTS, *H5P_EXTRACTS]
WAREHOUSE_DEPS: dict[str, list[str]] = {
    "enrollments": ["mooc_enrollments_extract"],
    "mooc_grades": ["mooc_grades_extract", "enrollments"],
    "mooc_progress": ["mooc_progress_extract", "enrollments"],
    "mooc_discussions": ["mooc_discussions_extract", "enrollments"],
    "h5p_scores": ["h5p_scores_extract", "enrollments"],
    "video_progress": ["video_progress_extract", "enrollments"],
    "dashboard_summary": ["dashboard_extract", "enrollments"],
    "h5p_scores_summary": ["h5p_scores", "enrollments"],
    "video_progress_summary": ["video_progress", "enrollments"],
    "raw_data_history": [
        "enrollments", "mooc_grades", "mooc_progress", "mooc_discussions",
        "h5p_scores_summary", "video_progress_summary", "dashboard_summary",
        "mooc_course_extract",
    ],
    "raw_data": [
        "enrollments", "mooc_grades", "mooc_progress", "mooc_discussions",
        "h5p_scores_summary", "video_progress_summary", "dashboard_summary",
        "mooc_course_extract", "dropout_risk_model",
    ],
}
ALL_ASSETS = [*EXTRACTS, *WAREHOUSE_DEPS]  # every course-partitioned asset
MODEL = "dropout_risk_model"  # unpartitioned, group risk, trained on raw_data_history


def _asset(name: str, group: str, deps: Sequence[str]) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name=group, deps=list(deps), partitions_def=course_partitions)
    def _a() -> None:
        return None

    return _a


def standin_assets() -> list[dg.AssetsDefinition]:
    return [
        *(_asset(n, "extract", []) for n in ROOT_EXTRACTS),
        *(_asset(n, "extract", ["mooc_enrollments_extract"]) for n in H5P_EXTRACTS),
        *(_asset(n, "warehouse", deps) for n, deps in WAREHOUSE_DEPS.items()),
        _model(),
    ]


def _model() -> dg.AssetsDefinition:
    @dg.asset(name=MODEL, group_name="risk", deps=["raw_data_history"])
    def _m() -> None:
        return None

    return _m
