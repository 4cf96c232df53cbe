"""Warehouse asset checks against a real MariaDB database (seeded through the IO layer)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from moocassets import schema
from moocassets.automation.checks import (
    build_warehouse_checks,
    evaluate_dropout_varies,
    evaluate_unique_key,
)
from moocassets.io import WarehouseResource, make_engine, write_table
from moocassets.transforms import summaries
from moocassets_tests.automation.standins import standin_assets

pytestmark = pytest.mark.mysql

COURSE = "course-v1:Uni+CHK+2025"
USERS = [101, 102, 103]
T = datetime(2025, 10, 1, tzinfo=UTC)


def _frames() -> dict[str, pd.DataFrame]:
    rec = schema.frame_from_records
    h5p = rec(schema.H5P_SCORES, [
        {"user_id": u, "course_id": COURSE, "content_id": c, "score": 5 * c, "max_score": 10 * c,
         "percentage": 50.0, "is_finished": c == 1, "opened_at": T, "finished_at": T,
         "time_spent": 30.5}
        for u in USERS[:2] for c in (1, 2)
    ])
    video = rec(schema.VIDEO_PROGRESS, [
        {"user_id": u, "course_id": COURSE, "content_id": 7, "progress_percent": 40.0,
         "current_time": 40.0, "duration": 100.0, "status": "in_progress"}
        for u in USERS
    ])
    return {
        "enrollments": rec(schema.ENROLLMENTS, [
            {"course_id": COURSE, "user_id": u, "enrollment_id": 9000 + u, "mode": "audit",
             "is_active": True, "created": T} for u in USERS]),
        "mooc_grades": rec(schema.MOOC_GRADES, [
            {"user_id": u, "course_id": COURSE, "percent_grade": 0.5, "grade_percentage": 50.0,
             "is_passed": False} for u in USERS]),
        "mooc_progress": rec(schema.MOOC_PROGRESS, [
            {"user_id": u, "course_id": COURSE, "completion_rate": 10.0} for u in USERS]),
        "mooc_discussions": rec(schema.MOOC_DISCUSSIONS, [
            {"user_id": USERS[0], "course_id": COURSE, "threads_count": 1}]),
        "h5p_scores": h5p,
        "h5p_scores_summary": summaries.h5p_summary(h5p),
        "video_progress": video,
        "video_progress_summary": summaries.video_summary(video),
        "dashboard_summary": rec(schema.DASHBOARD_SUMMARY, [
            {"user_id": u, "course_id": COURSE, "overall_completion": 20.0} for u in USERS]),
        "raw_data": rec(schema.RAW_DATA, [
            {"user_id": u, "course_id": COURSE, "is_dropout": u == USERS[0], "as_of": T,
             "weeks_since_enrollment": 0} for u in USERS]),
    }


@pytest.fixture
def warehouse(mysql_database_url: str) -> Iterator[WarehouseResource]:
    engine = make_engine(mysql_database_url)
    for name, frame in _frames().items():
        write_table(engine, schema.table_spec(name), frame, [COURSE])
    yield WarehouseResource(database_url=mysql_database_url)


def _run_checks(warehouse: WarehouseResource, table: str) -> dict[str, dg.AssetCheckEvaluation]:
    """Run ``table``'s checks in a partitioned run, as they run alongside the asset."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("course_id", [COURSE])
    result = dg.materialize(
        [*standin_assets(), *build_warehouse_checks()],
        selection=dg.AssetSelection.assets(table),
        partition_key=COURSE,
        resources={"warehouse": warehouse},
        instance=instance,
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    instance.dispose()
    return evaluations


def _sql(warehouse: WarehouseResource, statement: str) -> None:
    with warehouse.engine().begin() as conn:
        conn.execute(sa.text(statement))


@pytest.mark.parametrize("table", [t.name for t in schema.WAREHOUSE_TABLES])
def test_good_data_passes_every_check(warehouse: WarehouseResource, table: str) -> None:
    evaluations = _run_checks(warehouse, table)
    assert evaluations, table
    failed = {n: e.description for n, e in evaluations.items() if not e.passed}
    if table == "raw_data":  # 3 learners: too few for the label warning to apply
        assert "dropout_label_varies" not in failed
    assert not failed, failed


def test_out_of_range_percentage_fails_naming_table_column_and_key(
    warehouse: WarehouseResource,
) -> None:
    _sql(warehouse, f"UPDATE mooc_grades SET grade_percentage = 250 WHERE user_id = {USERS[1]}")
    ev = _run_checks(warehouse, "mooc_grades")["value_ranges"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert "mooc_grades" in (ev.description or "")
    assert "grade_percentage" in (ev.description or "")
    assert f"user_id={USERS[1]}" in (ev.description or "")
    assert "250" in (ev.description or "")


def test_learner_not_enrolled_fails(warehouse: WarehouseResource) -> None:
    _sql(warehouse, f"UPDATE mooc_progress SET user_id = 999 WHERE user_id = {USERS[2]}")
    evaluations = _run_checks(warehouse, "mooc_progress")
    ev = evaluations["learners_enrolled"]
    assert not ev.passed
    assert "mooc_progress" in (ev.description or "") and "user_id=999" in (ev.description or "")
    assert evaluations["value_ranges"].passed


def test_summary_mismatch_fails_naming_the_column(warehouse: WarehouseResource) -> None:
    _sql(warehouse, f"UPDATE h5p_scores_summary SET total_score = total_score + 3 "
                    f"WHERE user_id = {USERS[0]}")
    ev = _run_checks(warehouse, "h5p_scores_summary")["matches_detail"]
    assert not ev.passed
    text = ev.description or ""
    assert "h5p_scores_summary" in text and "total_score" in text and str(USERS[0]) in text
    assert "overall_percentage" not in text.split("total_score")[0]  # only the changed column


def test_video_summary_missing_learner_fails(warehouse: WarehouseResource) -> None:
    _sql(warehouse, f"DELETE FROM video_progress_summary WHERE user_id = {USERS[2]}")
    ev = _run_checks(warehouse, "video_progress_summary")["matches_detail"]
    assert not ev.passed and "missing" in (ev.description or "")


def test_raw_data_missing_a_learner_fails(warehouse: WarehouseResource) -> None:
    _sql(warehouse, f"DELETE FROM raw_data WHERE user_id = {USERS[1]}")
    ev = _run_checks(warehouse, "raw_data")["one_row_per_enrolled_learner"]
    assert not ev.passed
    assert "raw_data" in (ev.description or "") and f"user_id={USERS[1]}" in (ev.description or "")


def test_blocking_failure_stops_downstream_in_the_same_run(warehouse: WarehouseResource) -> None:
    _sql(warehouse, f"UPDATE h5p_scores SET percentage = 250 WHERE user_id = {USERS[0]}")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("course_id", [COURSE])
    result = dg.materialize(
        [*standin_assets(), *build_warehouse_checks()],
        selection=dg.AssetSelection.assets("h5p_scores", "h5p_scores_summary"),
        partition_key=COURSE, resources={"warehouse": warehouse}, instance=instance,
        raise_on_error=False,
    )
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
                    for m in [m.event_specific_data.materialization]}  # type: ignore[union-attr]
    assert "h5p_scores" in materialized  # written before its checks ran
    assert "h5p_scores_summary" not in materialized  # blocked by the failed check
    instance.dispose()


def test_duplicate_key_fails_with_sample_keys() -> None:
    frame = _frames()["h5p_scores"]
    outcome = evaluate_unique_key(schema.H5P_SCORES, pd.concat([frame, frame.head(1)]))
    assert not outcome.passed
    assert "h5p_scores" in outcome.description and "content_id=1" in outcome.description
    assert f"user_id={USERS[0]}" in outcome.description


def _raw(n: int, weeks: int, dropout: object) -> pd.DataFrame:
    return schema.frame_from_records(schema.RAW_DATA, [
        {"user_id": i + 1, "course_id": COURSE, "as_of": T + timedelta(weeks=weeks),
         "is_dropout": dropout(i) if callable(dropout) else dropout,
         "weeks_since_enrollment": weeks}
        for i in range(n)
    ])


def test_constant_dropout_label_warns_only_for_big_old_courses() -> None:
    warn = evaluate_dropout_varies(_raw(60, 5, False))
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert "is_dropout" in warn.description and COURSE in warn.description
    assert evaluate_dropout_varies(_raw(60, 2, False)).passed  # too young
    assert evaluate_dropout_varies(_raw(20, 8, False)).passed  # too small
    assert evaluate_dropout_varies(_raw(60, 8, lambda i: i % 3 == 0)).passed
