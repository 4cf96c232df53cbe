"""Warehouse asset checks: the pure evaluations, and their place in the asset step (MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from moocassets import schema
from moocassets.assets.warehouse import WAREHOUSE_BY_TABLE
from moocassets.checks import (
    SUMMARY_OF,
    Outcome,
    check_specs,
    column_mismatches,
    evaluate_dropout_varies,
    evaluate_table,
    evaluate_unique_key,
)
from moocassets.io import WarehouseIOManager, WarehouseResource
from moocassets.partitions import course_partitions
from moocassets.transforms import summaries

COURSE = "course-v1:Uni+CHK+2025"
USERS = [101, 102, 103]
T = datetime(2025, 10, 1, tzinfo=UTC)


def _h5p(percentage: float = 50.0) -> pd.DataFrame:
    return schema.frame_from_records(schema.H5P_SCORES, [
        {"user_id": u, "course_id": COURSE, "content_id": c, "score": 5 * c, "max_score": 10 * c,
         "percentage": percentage if (u, c) == (USERS[0], 2) else 50.0, "is_finished": c == 1,
         "opened_at": T, "finished_at": T, "time_spent": 30.5}
        for u in USERS[:2] for c in (1, 2)
    ])


def _frames() -> dict[str, pd.DataFrame]:
    rec = schema.frame_from_records
    h5p = _h5p()
    video = rec(schema.VIDEO_PROGRESS, [
        {"user_id": u, "course_id": COURSE, "content_id": 7, "progress_percent": 40.0,
         "current_time": 40.0, "duration": 100.0, "status": "in_progress"}
        for u in USERS
    ])
    frames = {
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
    return {name: schema.table_spec(name).coerce_frame(f) for name, f in frames.items()}


def _evaluate(table: str, frames: dict[str, pd.DataFrame]) -> dict[str, Outcome]:
    aggregate = None
    if table in SUMMARY_OF:  # what the summary asset passes: the aggregate of the detail it read
        detail, summarize = SUMMARY_OF[table]
        aggregate = summarize(frames[detail])
    return evaluate_table(schema.table_spec(table), frames[table], enrolled=frames["enrollments"],
                          aggregate=aggregate)


# ---------------------------------------------------------------------------------- pure


@pytest.mark.parametrize("table", [t.name for t in schema.WAREHOUSE_TABLES])
def test_good_data_passes_every_declared_check(table: str) -> None:
    outcomes = _evaluate(table, _frames())
    # every declared check is evaluated, and nothing else
    assert set(outcomes) == {s.name for s in check_specs(schema.table_spec(table))}
    failed = {n: o.description for n, o in outcomes.items() if not o.passed}
    assert not failed, failed


def test_out_of_range_percentage_fails_naming_table_column_and_key() -> None:
    frames = _frames()
    frames["mooc_grades"].loc[1, "grade_percentage"] = 250
    outcome = _evaluate("mooc_grades", frames)["value_ranges"]
    assert not outcome.passed and outcome.severity == dg.AssetCheckSeverity.ERROR
    text = outcome.description
    assert "mooc_grades" in text and "grade_percentage" in text
    assert f"user_id={USERS[1]}" in text and "250" in text


def test_learner_not_enrolled_fails() -> None:
    frames = _frames()
    frames["mooc_progress"].loc[2, "user_id"] = 999
    outcomes = _evaluate("mooc_progress", frames)
    assert not outcomes["learners_enrolled"].passed
    text = outcomes["learners_enrolled"].description
    assert "mooc_progress" in text and "user_id=999" in text
    assert outcomes["value_ranges"].passed


def test_summary_mismatch_fails_naming_only_the_changed_column() -> None:
    frames = _frames()
    summary = frames["h5p_scores_summary"]
    summary.loc[summary["user_id"] == USERS[0], "total_score"] += 3
    outcome = _evaluate("h5p_scores_summary", frames)["matches_detail"]
    assert not outcome.passed
    text = outcome.description
    assert "h5p_scores_summary" in text and "total_score" in text and str(USERS[0]) in text
    assert "overall_percentage" not in text.split("total_score")[0]


def test_video_summary_missing_learner_fails() -> None:
    frames = _frames()
    summary = frames["video_progress_summary"]
    frames["video_progress_summary"] = summary[summary["user_id"] != USERS[2]]
    outcome = _evaluate("video_progress_summary", frames)["matches_detail"]
    assert not outcome.passed and "missing" in outcome.description


def test_raw_data_missing_a_learner_fails() -> None:
    frames = _frames()
    frames["raw_data"] = frames["raw_data"][frames["raw_data"]["user_id"] != USERS[1]]
    outcome = _evaluate("raw_data", frames)["one_row_per_enrolled_learner"]
    assert not outcome.passed
    assert "raw_data" in outcome.description
    assert f"user_id={USERS[1]}" in outcome.description


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


# ------------------------------------------------------------- in the asset step (MariaDB)


def _extract(name: str, frame: pd.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=course_partitions, io_manager_key="extract_io_manager")
    def _a() -> pd.DataFrame:
        return frame

    return _a


def _run(
    database_url: str, instance: dg.DagsterInstance, h5p: pd.DataFrame
) -> dg.ExecuteInProcessResult:
    frames = _frames()
    return dg.materialize(
        [_extract("mooc_enrollments_extract", frames["enrollments"]),
         _extract("h5p_scores_extract", h5p),
         *(WAREHOUSE_BY_TABLE[t] for t in ("enrollments", "h5p_scores", "h5p_scores_summary"))],
        partition_key=COURSE, instance=instance, raise_on_error=False,
        resources={"extract_io_manager": dg.InMemoryIOManager(),
                   "warehouse_io_manager": WarehouseIOManager(database_url=database_url)},
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(course_partitions.name, [COURSE])
        yield inst


@pytest.mark.mysql
def test_checks_run_inside_the_asset_step_after_the_write(
    mysql_database_url: str, instance: dg.DagsterInstance
) -> None:
    result = _run(mysql_database_url, instance, _h5p())
    assert result.success
    # no separate check steps: the checks are part of each asset's own step
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert steps == {"mooc_enrollments_extract", "h5p_scores_extract", "enrollments",
                     "h5p_scores", "h5p_scores_summary"}
    evaluations = result.get_asset_check_evaluations()
    by_asset: dict[str, set[str]] = {}
    for ev in evaluations:
        assert ev.passed, ev.description
        assert ev.target_materialization_data is not None
        assert ev.target_materialization_data.run_id == result.run_id  # checks the new rows
        by_asset.setdefault(ev.asset_key.to_user_string(), set()).add(ev.check_name)
    assert by_asset == {
        name: {s.name for s in check_specs(schema.table_spec(name))}
        for name in ("enrollments", "h5p_scores", "h5p_scores_summary")
    }


@pytest.mark.mysql
def test_failed_blocking_check_writes_nothing_and_stops_downstream(
    mysql_database_url: str, instance: dg.DagsterInstance
) -> None:
    assert _run(mysql_database_url, instance, _h5p()).success
    stored = WarehouseResource(database_url=mysql_database_url).read_table("h5p_scores")

    result = _run(mysql_database_url, instance, _h5p(percentage=250.0))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "h5p_scores"
    message = str(failure.step_failure_data.error)  # type: ignore[union-attr]
    for needle in ("h5p_scores", "value_ranges", "percentage", f"user_id={USERS[0]}", "250",
                   "nothing written"):
        assert needle in message, needle
    failed = {(e.asset_key.to_user_string(), e.check_name)
              for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {("h5p_scores", "value_ranges")}
    materialized = {e.asset_key.to_user_string()  # type: ignore[union-attr]
                    for e in result.get_asset_materialization_events()
                    for e in [e.event_specific_data.materialization]}  # type: ignore[union-attr]
    assert "h5p_scores" not in materialized and "h5p_scores_summary" not in materialized
    after = WarehouseResource(database_url=mysql_database_url).read_table("h5p_scores")
    pd.testing.assert_frame_equal(after, stored)  # the previous rows are intact


def test_summary_comparison_tolerances_and_nulls() -> None:
    dec = schema.H5P_SCORES_SUMMARY.column("total_time_spent")  # DECIMAL(14, 2)
    got = column_mismatches(
        pd.Series([1.004, None, 2.0, None]), pd.Series([1.0, None, None, 3.0]), dec)
    assert got.tolist() == [False, False, True, True]  # within half a cent; NULL only = NULL
    when = schema.H5P_SCORES_SUMMARY.column("last_activity_at")
    a = pd.Series(pd.to_datetime([T, T + timedelta(seconds=2)], utc=True))
    b = pd.Series(pd.to_datetime([T + timedelta(milliseconds=500), T], utc=True))
    assert column_mismatches(a, b, when).tolist() == [False, True]
    name = schema.ENROLLMENTS.column("username")
    assert column_mismatches(pd.Series(["x", None]), pd.Series(["x", "y"]), name).tolist() == [
        False, True]
