"""Per-course-partition automation: new partitions, staleness, ended courses, guards, retries.

Production conditions (``with_automation``) on stand-in assets with the real graph; events are
reported into an ephemeral instance and ticks are evaluated at chosen times (no sleeping).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from moocassets import keys
from moocassets.automation import AutomationSettings, with_automation
from moocassets.automation.conditions import COURSE_ENDS_METADATA_KEY, course_end_from_metadata
from moocassets_tests.automation.standins import (
    ALL_ASSETS,
    EXTRACTS,
    H5P_EXTRACTS,
    MODEL,
    ROOT_EXTRACTS,
    WAREHOUSE_DEPS,
    WAREHOUSE_TABLES,
    standin_assets,
)
from moocassets_tests.automation.ticks import evaluate, requested

SETTINGS = AutomationSettings(
    stale_after=timedelta(hours=12),
    max_attempts=3,
    retry_base_delay=timedelta(minutes=10),
    retry_reset_after=None,
)
RUNNING = "course-v1:Uni+RUN+2025"
ENDED = "course-v1:Uni+END+2024"
OTHER = "course-v1:O'Reilly+X+1"

_evaluate = evaluate


def _requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, set[str]]:
    return requested(result, ALL_ASSETS)


def _materialize(
    instance: dg.DagsterInstance, course: str, names: list[str], end: datetime | None = None
) -> None:
    for name in names:
        metadata = {}
        if name == "mooc_course_extract":
            metadata[COURSE_ENDS_METADATA_KEY] = dg.MetadataValue.json(
                {course: end.isoformat() if end else None}
            )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=name, partition=course, metadata=metadata)
        )


@pytest.fixture
def defs() -> dg.Definitions:
    return with_automation(dg.Definitions(assets=standin_assets()), SETTINGS)


def _now() -> datetime:
    return datetime.now(UTC)


def test_conditions_are_applied_and_freshness_only_on_warehouse(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for name in ALL_ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.automation_condition is not None
        assert (node.freshness_policy is not None) == (name in WAREHOUSE_TABLES), name


def test_new_partition_is_loaded_once_end_to_end(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    t0 = _now()
    first = _evaluate(defs, instance, t0)
    assert first.total_requested == 0
    instance.add_dynamic_partitions("course_id", [RUNNING])
    seen = _evaluate(defs, instance, t0 + timedelta(seconds=30), first.cursor)
    # just registered: left alone for the settle time (a backfill's run may be about to start)
    assert seen.total_requested == 0
    settled = t0 + timedelta(seconds=30) + SETTINGS.settle
    second = _evaluate(defs, instance, settled, seen.cursor)
    # every asset of the new course, in one tick (downstream counts the parents' requests)
    assert _requested(second) == {name: {RUNNING} for name in ALL_ASSETS}
    third = _evaluate(defs, instance, settled + timedelta(seconds=30), second.cursor)
    assert third.total_requested == 0


def _loaded(instance: dg.DagsterInstance, end_of: dict[str, datetime | None]) -> None:
    instance.add_dynamic_partitions("course_id", list(end_of))
    for course, end in end_of.items():
        _materialize(instance, course, ALL_ASSETS, end)


def test_fresh_stale_and_ended_courses(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    t0 = _now()
    _loaded(instance, {RUNNING: t0 + timedelta(days=30), ENDED: t0 - timedelta(days=2),
                       OTHER: None})
    fresh = _evaluate(defs, instance, t0 + timedelta(hours=1))
    assert fresh.total_requested == 0

    stale = _evaluate(defs, instance, t0 + timedelta(hours=13), fresh.cursor)
    requested = _requested(stale)
    # the running and the open-ended course are refreshed with everything downstream;
    # the ended course (loaded after its end: final) is not
    assert requested == {name: {RUNNING, OTHER} for name in ALL_ASSETS}


def test_course_that_ended_after_the_last_load_gets_one_final_refresh(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    t0 = _now()
    _loaded(instance, {ENDED: None})  # loaded while running (end unknown yet)
    last_load = max(
        instance.get_latest_materialization_event(dg.AssetKey(n)).timestamp  # type: ignore[union-attr]
        for n in ALL_ASSETS
    )
    end = datetime.fromtimestamp(last_load, UTC) + timedelta(microseconds=1)
    first = _evaluate(defs, instance, t0 + timedelta(minutes=1))
    assert first.total_requested == 0
    # the course extract learns the end date (its own load is after the end: final) ...
    _materialize(instance, ENDED, ["mooc_course_extract"], end)
    second = _evaluate(defs, instance, t0 + timedelta(minutes=2), first.cursor)
    # ... which the features (reading the dates), raw_data and its history snapshot follow
    follow = ["learner_features", "raw_data", "raw_data_history"]
    assert _requested(second) == {name: {ENDED} for name in follow}
    _materialize(instance, ENDED, follow)  # (that request's run)
    third = _evaluate(defs, instance, t0 + timedelta(minutes=3), second.cursor)
    assert third.total_requested == 0
    tick = _evaluate(defs, instance, t0 + timedelta(hours=13), third.cursor)
    requested = _requested(tick)
    # one final refresh of what was loaded before the end; the course extract is final already
    assert set(requested) == set(ALL_ASSETS) - {"mooc_course_extract"}
    assert all(keys == {ENDED} for keys in requested.values())
    _materialize(instance, ENDED, [n for n in ALL_ASSETS if n != "mooc_course_extract"])
    later = _evaluate(defs, instance, t0 + timedelta(days=3), tick.cursor)
    assert later.total_requested == 0


def test_missing_upstream_never_triggers_downstream(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    t0 = _now()
    instance.add_dynamic_partitions("course_id", [RUNNING, OTHER])
    _materialize(instance, OTHER, EXTRACTS)  # OTHER: extracts present, warehouse missing
    warehouse_only = dg.AssetSelection.groups(keys.WAREHOUSE_GROUP, keys.FEATURES_GROUP)
    seen = _evaluate(defs, instance, t0 + timedelta(minutes=1), selection=warehouse_only)
    assert seen.total_requested == 0  # first sight of never-loaded partitions: settling
    tick = _evaluate(defs, instance, t0 + timedelta(minutes=1) + SETTINGS.settle, seen.cursor,
                     selection=warehouse_only)
    requested = _requested(tick)
    assert all(RUNNING not in keys for keys in requested.values())  # its extracts are missing
    assert requested == {name: {OTHER} for name in WAREHOUSE_DEPS}


def test_failing_refresh_is_retried_with_backoff_and_bounded(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    t0 = _now()
    _loaded(instance, {RUNNING: None})
    start = t0 + timedelta(hours=13)
    cursor = None
    request_times: list[int] = []
    for minute in range(0, 121, 10):  # every 10 minutes for 2 hours; nothing ever succeeds
        result = _evaluate(defs, instance, start + timedelta(minutes=minute), cursor)
        cursor = result.cursor
        if RUNNING in _requested(result).get("mooc_enrollments_extract", set()):
            request_times.append(minute)
        assert result.total_requested <= len(ALL_ASSETS)
    # first request, then after 10, 20 more minutes (exponential), then give up (max 3)
    assert request_times == [0, 10, 30]

    # a successful materialization resets the bookkeeping: stale again 13 h later -> refreshed
    _materialize(instance, RUNNING, ALL_ASSETS)
    later = _evaluate(defs, instance, _now() + timedelta(hours=13), cursor)
    assert RUNNING in _requested(later).get("mooc_enrollments_extract", set())


def test_course_end_metadata_parsing() -> None:
    end = datetime(2025, 12, 31, tzinfo=UTC)
    json_meta = {COURSE_ENDS_METADATA_KEY: dg.MetadataValue.json({RUNNING: end.isoformat()})}
    assert course_end_from_metadata(json_meta, RUNNING) == end
    assert course_end_from_metadata(json_meta, OTHER) is None
    open_ended = {COURSE_ENDS_METADATA_KEY: dg.MetadataValue.json({RUNNING: None})}
    assert course_end_from_metadata(open_ended, RUNNING) is None
    assert course_end_from_metadata({}, RUNNING) is None


def test_h5p_extracts_follow_a_refreshed_enrollments_extract(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    t0 = _now()
    _loaded(instance, {RUNNING: None})
    first = _evaluate(defs, instance, t0 + timedelta(minutes=1))
    assert first.total_requested == 0
    _materialize(instance, RUNNING, ["mooc_enrollments_extract"])  # e.g. a manual run
    tick = _evaluate(defs, instance, t0 + timedelta(minutes=2), first.cursor)
    requested = _requested(tick)
    assert set(requested) >= {*H5P_EXTRACTS, "enrollments", "raw_data"}
    assert not set(requested) & set(ROOT_EXTRACTS)


def test_model_retrains_weekly_and_a_retrain_does_not_refresh_every_course(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    now = _now()
    monday_4am = (now + timedelta(days=7 - now.weekday())).replace(
        hour=4, minute=0, second=0, microsecond=0
    )  # the next Monday 04:00 UTC
    ended = now - timedelta(days=1)
    _loaded(instance, {ENDED: ended, OTHER: ended})  # final data: no refreshes of their own
    before = _evaluate(defs, instance, monday_4am - timedelta(minutes=5))
    assert before.total_requested == 0  # a missing model holds nothing back (fallback score)
    tick = _evaluate(defs, instance, monday_4am + timedelta(minutes=1), before.cursor)
    assert tick.get_num_requested(dg.AssetKey(MODEL)) == 1
    assert tick.total_requested == 1
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=MODEL))
    after = _evaluate(defs, instance, monday_4am + timedelta(minutes=2), tick.cursor)
    # the retrained model is picked up by each course's next refresh, not by a storm now
    assert after.total_requested == 0
    week = _evaluate(defs, instance, monday_4am + timedelta(minutes=3), after.cursor)
    assert week.get_num_requested(dg.AssetKey(MODEL)) == 0
