"""Warehouse assets (group ``warehouse``): the ten ERD tables, partitioned by ``course_id``.

Every asset is written by the ``warehouse_io_manager`` to the table of its name, one course
partition replaced per transaction. Detail tables keep only learners enrolled in the course; the
summaries aggregate their detail table; ``raw_data`` joins everything per learner.
"""


from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from moocassets import keys, schema
from moocassets.assets.features import FEATURE_INPUTS, as_of_values
from moocassets.checks import check_specs, checked_output
from moocassets.partitions import course_partitions
from moocassets.transforms import risk, summaries
from moocassets.transforms.enrolled import restrict_to_enrolled

Checked = Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]
"""What a warehouse asset yields: its checked frame, then its check evaluations (checks.py)."""


def _warehouse_kwargs(spec: schema.TableSpec, description: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "partitions_def": course_partitions,
        "group_name": keys.WAREHOUSE_GROUP,
        "io_manager_key": keys.WAREHOUSE_IO,
        "pool": keys.WAREHOUSE_POOL,  # bounds concurrent warehouse writes across runs
        "dagster_type": spec.dagster_type,
        "kinds": {"mysql", "pandas", "table"},
        "owners": ["team:learning-analytics"],
        "description": f"{description}\n\nTable `{spec.name}`; key "
        f"`({', '.join(spec.unique_key)})`.",
        "metadata": {
            keys.PARTITION_EXPR_METADATA: spec.partition_column,
            "dagster/column_schema": spec.table_schema,
            "dagster/table_name": spec.name,
        },
        "check_specs": check_specs(spec),
        "code_version": "1",
    }


@dg.asset(
    ins={"extract": dg.AssetIn("mooc_enrollments_extract")},
    **_warehouse_kwargs(schema.ENROLLMENTS, "Learners enrolled in the course (from MOOC M1)."),
)
def enrollments(extract: pd.DataFrame) -> Checked:
    frame = schema.ENROLLMENTS.coerce_frame(extract)
    yield from checked_output(schema.ENROLLMENTS, frame, enrolled=frame,
                              metadata={"learners": dg.MetadataValue.int(len(frame))})


def _detail_table(spec: schema.TableSpec, extract_name: str, description: str) -> Any:
    @dg.asset(
        ins={"extract": dg.AssetIn(extract_name), "enrolled": dg.AssetIn("enrollments")},
        **_warehouse_kwargs(spec, description),
    )
    def _asset(
        context: dg.AssetExecutionContext, extract: pd.DataFrame, enrolled: pd.DataFrame
    ) -> Checked:
        kept, dropped = restrict_to_enrolled(extract, enrolled)
        if len(dropped):
            context.log.warning(
                f"{spec.name}: dropped {len(dropped)} rows of {dropped['user_id'].nunique()} "
                f"learners not enrolled (e.g. user_id {int(dropped['user_id'].iloc[0])})"
            )
        metadata = {
            "rows_not_enrolled_dropped": dg.MetadataValue.int(len(dropped)),
            "learners": dg.MetadataValue.int(int(kept["user_id"].nunique())),
        }
        yield from checked_output(spec, spec.coerce_frame(kept), enrolled=enrolled,
                                  metadata=metadata)

    return _asset


mooc_grades = _detail_table(
    schema.MOOC_GRADES, "mooc_grades_extract", "Grade and pass status per learner (MOOC M4)."
)
mooc_progress = _detail_table(
    schema.MOOC_PROGRESS, "mooc_progress_extract", "Course progress per learner (MOOC M5)."
)
mooc_discussions = _detail_table(
    schema.MOOC_DISCUSSIONS, "mooc_discussions_extract",
    "Forum activity per learner (MOOC M6); absent learners had none.",
)
h5p_scores = _detail_table(
    schema.H5P_SCORES, "h5p_scores_extract", "H5P score per learner and attempted content (H1)."
)
video_progress = _detail_table(
    schema.VIDEO_PROGRESS, "video_progress_extract", "Progress per learner and opened video (H2)."
)
dashboard_summary = _detail_table(
    schema.DASHBOARD_SUMMARY, "dashboard_extract",
    "Per-learner dashboard (H3 combined progress, H4 fallback).",
)


@dg.asset(
    ins={"detail": dg.AssetIn("h5p_scores"), "enrolled": dg.AssetIn("enrollments")},
    **_warehouse_kwargs(
        schema.H5P_SCORES_SUMMARY,
        "Per-learner aggregate of `h5p_scores`: attempted and finished contents, scores, time.",
    ),
)
def h5p_scores_summary(detail: pd.DataFrame, enrolled: pd.DataFrame) -> Checked:
    aggregate = summaries.h5p_summary(detail)
    frame = schema.H5P_SCORES_SUMMARY.coerce_frame(aggregate)
    yield from checked_output(schema.H5P_SCORES_SUMMARY, frame, enrolled=enrolled,
                              aggregate=aggregate)


@dg.asset(
    ins={"detail": dg.AssetIn("video_progress"), "enrolled": dg.AssetIn("enrollments")},
    **_warehouse_kwargs(
        schema.VIDEO_PROGRESS_SUMMARY,
        "Per-learner aggregate of `video_progress`: opened, completed and in-progress videos.",
    ),
)
def video_progress_summary(detail: pd.DataFrame, enrolled: pd.DataFrame) -> Checked:
    aggregate = summaries.video_summary(detail)
    frame = schema.VIDEO_PROGRESS_SUMMARY.coerce_frame(aggregate)
    yield from checked_output(schema.VIDEO_PROGRESS_SUMMARY, frame, enrolled=enrolled,
                              aggregate=aggregate)


def _lineage(
    pairs: dict[str, list[tuple[str, str]]],
) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        {
            col: [dg.TableColumnDep(asset_key=dg.AssetKey(a), column_name=c) for a, c in deps]
            for col, deps in pairs.items()
        }
    )


RAW_DATA_LINEAGE = _lineage(
    {
        "user_id": [("enrollments", "user_id")],
        "course_id": [("enrollments", "course_id")],
        "enrollment_date": [("enrollments", "created")],
        "mooc_grade_percentage": [("mooc_grades", "grade_percentage")],
        "mooc_letter_grade": [("mooc_grades", "letter_grade")],
        "mooc_is_passed": [("mooc_grades", "is_passed")],
        "progress_percent": [
            ("dashboard_summary", "overall_completion"),
            ("h5p_scores_summary", "completed_contents"),
            ("h5p_scores_summary", "total_contents"),
            ("video_progress_summary", "completed_videos"),
            ("video_progress_summary", "total_videos"),
        ],
        "current_chapter": [("mooc_progress", "current_chapter")],
        "current_section": [("mooc_progress", "current_section")],
        "current_unit": [("mooc_progress", "current_unit")],
        "mooc_completion_rate": [("mooc_progress", "completion_rate")],
        "h5p_total_contents": [
            ("dashboard_summary", "h5p_total_contents"),
            ("h5p_scores_summary", "total_contents"),
        ],
        "video_total_videos": [
            ("dashboard_summary", "video_total_videos"),
            ("video_progress_summary", "total_videos"),
        ],
        "discussion_threads_count": [("mooc_discussions", "threads_count")],
        "discussion_comments_count": [("mooc_discussions", "comments_count")],
        "discussion_total_interactions": [("mooc_discussions", "total_interactions")],
        "discussion_questions_count": [("mooc_discussions", "questions_count")],
        "discussion_total_upvotes": [("mooc_discussions", "total_upvotes")],
        "last_activity_at": [
            ("mooc_progress", "last_activity"),
            ("h5p_scores_summary", "last_activity_at"),
        ],
        "days_since_last_activity": [
            ("mooc_progress", "last_activity"),
            ("h5p_scores_summary", "last_activity_at"),
        ],
        "weeks_since_enrollment": [("enrollments", "created")],
        "course_elapsed_fraction": [
            ("mooc_course_extract", "start"),
            ("mooc_course_extract", "end"),
        ],
        "h5p_completed_contents": [
            ("dashboard_summary", "h5p_completed_contents"),
            ("h5p_scores_summary", "completed_contents"),
        ],
        "h5p_completion_rate": [
            ("dashboard_summary", "h5p_completed_contents"),
            ("dashboard_summary", "h5p_contents_in_course"),
        ],
        "h5p_overall_percentage": [("h5p_scores_summary", "overall_percentage")],
        "h5p_total_time_spent": [("h5p_scores_summary", "total_time_spent")],
        "video_completed_videos": [("video_progress_summary", "completed_videos")],
        "video_completion_rate": [
            ("video_progress_summary", "completed_videos"),
            ("video_progress_summary", "total_videos"),
        ],
        "video_watch_rate": [
            ("video_progress_summary", "total_watched_time"),
            ("video_progress_summary", "total_duration"),
        ],
        "pace_gap": [
            ("mooc_progress", "completion_rate"),
            ("mooc_course_extract", "start"),
            ("mooc_course_extract", "end"),
        ],
        "is_dropout": [
            ("mooc_grades", "is_passed"),
            ("mooc_progress", "last_activity"),
            ("h5p_scores_summary", "last_activity_at"),
            ("enrollments", "created"),
        ],
    }
)

_raw_kwargs = _warehouse_kwargs(
    schema.RAW_DATA,
    "One row per learner and course: features, the `is_dropout` label and the dropout risk "
    "(spec/raw-data.md). What teachers and models read.",
)
_raw_kwargs["metadata"] = {**_raw_kwargs["metadata"], "dagster/column_lineage": RAW_DATA_LINEAGE}


@dg.asset(
    ins={
        "learner_features": dg.AssetIn(keys.LEARNER_FEATURES),
        "enrolled": dg.AssetIn(keys.ENROLLMENTS),
        "risk_model": dg.AssetIn(keys.RISK_MODEL),
    },
    # what learner_features derives from, so the lineage shows every table raw_data rests on
    deps=[key for key in FEATURE_INPUTS.values() if key != keys.ENROLLMENTS],
    **_raw_kwargs,
)
def raw_data(
    context: dg.AssetExecutionContext,
    learner_features: pd.DataFrame,
    enrolled: pd.DataFrame,
    risk_model: risk.RiskModel | None,
) -> Checked:
    if risk_model is None:
        context.log.info("no dropout_risk_model materialized yet: scoring with the fallback rule")
        risk_model = risk.fallback_model()
    # the score reads only risk.RISK_INPUT_COLUMNS (never grade/pass, the label or position)
    frame = schema.RAW_DATA.coerce_frame(risk.score_frame(risk_model, learner_features))
    dropout_rate = float(frame["is_dropout"].mean()) if len(frame) else 0.0
    scores = frame["dropout_risk_score"]
    high = risk.RISK_BANDS[-1][1]
    metadata = {
        "learners": dg.MetadataValue.int(len(frame)),
        "dropout_rate": dg.MetadataValue.float(round(dropout_rate, 4)),
        "mean_risk": dg.MetadataValue.float(round(float(scores.mean()), 4) if len(frame)
                                            else 0.0),
        "share_high_risk": dg.MetadataValue.float(
            round(float((scores >= high).mean()), 4) if len(frame) else 0.0
        ),
        "risk_model": dg.MetadataValue.text(risk_model.name),
        "teacher_summary": dg.MetadataValue.md(risk.teacher_summary(frame)),
        "as_of": dg.MetadataValue.text(as_of_values(frame)),
        "dagster/column_lineage": RAW_DATA_LINEAGE,
    }
    yield from checked_output(schema.RAW_DATA, frame, enrolled=enrolled, metadata=metadata)


WAREHOUSE_ASSETS: list[Any] = [
    enrollments,
    mooc_grades,
    mooc_progress,
    mooc_discussions,
    h5p_scores,
    h5p_scores_summary,
    video_progress,
    video_progress_summary,
    dashboard_summary,
    raw_data,
]
