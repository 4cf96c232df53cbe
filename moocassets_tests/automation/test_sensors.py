"""The discovery and new-enrollment sensors against the simulator on a loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import httpx
import pytest

from moocassets.automation.sensors import (
    ENROLLMENT_REFRESH_SELECTION,
    EnrollmentCursor,
    SensorSettings,
    build_sensors,
    count_from,
    enrollment_run_key,
    rotation,
)
from moocassets.simulator import World, WorldConfig, create_app, mooc_base, serve_in_thread
from moocassets.sources import MoocApiResource

SESSION = "automation-test-session"


@pytest.fixture(scope="module")
def sim_root() -> Iterator[str]:
    world = World(WorldConfig(courses=3, learners=30, seed=11))
    app = create_app(world, mooc_email="ops@example.edu", mooc_password="pw",
                     session_ids=[SESSION])
    with serve_in_thread(app) as root:
        yield root


@pytest.fixture
def mooc(sim_root: str) -> MoocApiResource:
    return MoocApiResource(base_url=mooc_base(sim_root), sessionid=SESSION, max_attempts=2)


def _sim_courses(root: str) -> list[str]:
    return [c["course_id"] for c in httpx.get(f"{root}/__sim__/courses").json()["courses"]]


def _sensors(**kw: float) -> dict[str, dg.SensorDefinition]:
    return {s.name: s for s in build_sensors(SensorSettings(**kw))}  # type: ignore[arg-type]


def _tick(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, mooc: MoocApiResource,
    cursor: str | None,
) -> tuple[dg.SensorResult | dg.SkipReason, dg.SensorEvaluationContext]:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"mooc": mooc}
    ) as ctx:
        return sensor(ctx), ctx  # type: ignore[return-value]


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """What the daemon does with the sensor's partition requests."""
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys or []))


def test_sensor_defaults() -> None:
    sensors = _sensors(discovery_interval_seconds=7, enrollments_interval_seconds=3)
    assert sensors["course_discovery_sensor"].minimum_interval_seconds == 7
    assert sensors["new_enrollments_sensor"].minimum_interval_seconds == 3
    assert all(
        s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values()
    )


def test_discovery_registers_courses_once_and_requests_no_runs(
    sim_root: str, mooc: MoocApiResource, instance: dg.DagsterInstance
) -> None:
    sensor = _sensors()["course_discovery_sensor"]
    first, _ = _tick(sensor, instance, mooc, None)
    assert isinstance(first, dg.SensorResult)
    registered = first.dynamic_partitions_requests[0].partition_keys  # type: ignore[index]
    assert sorted(registered or []) == sorted(_sim_courses(sim_root))
    assert first.dynamic_partitions_requests[0].partitions_def_name == "course_id"  # type: ignore[index]
    assert not first.run_requests
    _apply(instance, first)

    second, _ = _tick(sensor, instance, mooc, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert not second.dynamic_partitions_requests and not second.run_requests
    assert second.skip_reason is not None

    new_id = httpx.post(f"{sim_root}/__sim__/courses",
                        json={"course_id": "course-v1:NEW+C1+2026", "learners": 5}).json()
    third, _ = _tick(sensor, instance, mooc, second.cursor)
    assert isinstance(third, dg.SensorResult)
    assert third.dynamic_partitions_requests[0].partition_keys == [new_id["course_id"]]  # type: ignore[index]
    assert not third.run_requests


def test_discovery_drops_ids_that_cannot_be_partition_keys(
    sim_root: str, mooc: MoocApiResource, instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sensor = _sensors()["course_discovery_sensor"]
    first, _ = _tick(sensor, instance, mooc, None)
    assert isinstance(first, dg.SensorResult)
    _apply(instance, first)
    for bad in ("course-v1:BAD+X...Y+1", "course-v1:BAD+A,B+1"):
        httpx.post(f"{sim_root}/__sim__/courses", json={"course_id": bad, "learners": 1})
    good = httpx.post(f"{sim_root}/__sim__/courses",
                      json={"course_id": "course-v1:GOOD+Z+1", "learners": 1}).json()["course_id"]
    capsys.readouterr()
    second, _ = _tick(sensor, instance, mooc, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert second.dynamic_partitions_requests[0].partition_keys == [good]  # type: ignore[index]
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if " WARNING " in ln]
    assert any("X...Y" in m and "A,B" in m for m in warnings), warnings
    assert "course-v1:BAD" not in str(second.dynamic_partitions_requests)
    # warned once: the next tick stays quiet about them
    _apply(instance, second)
    _tick(sensor, instance, mooc, second.cursor)
    assert " WARNING " not in capsys.readouterr().err


def test_new_enrollment_requests_a_refresh_of_exactly_that_course(
    sim_root: str, mooc: MoocApiResource, instance: dg.DagsterInstance
) -> None:
    courses = _sim_courses(sim_root)[:3]
    instance.add_dynamic_partitions("course_id", courses)
    sensor = _sensors()["new_enrollments_sensor"]
    first, _ = _tick(sensor, instance, mooc, None)
    assert isinstance(first, dg.SensorResult)
    assert not first.run_requests  # first sight only records counts
    counts = EnrollmentCursor.load(first.cursor).counts
    assert set(counts) == set(courses) and all(n > 0 for n in counts.values())

    target = courses[1]
    httpx.post(f"{sim_root}/__sim__/enroll", json={"course_id": target, "count": 2})
    second, _ = _tick(sensor, instance, mooc, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    assert request.partition_key == target
    assert request.run_key == enrollment_run_key(target, counts[target] + 2)
    assert EnrollmentCursor.load(second.cursor).counts[target] == counts[target] + 2

    third, _ = _tick(sensor, instance, mooc, second.cursor)
    assert isinstance(third, dg.SensorResult) and not third.run_requests


def test_enrollments_added_before_the_first_sight_of_a_loaded_course_are_not_missed(
    sim_root: str, mooc: MoocApiResource, instance: dg.DagsterInstance
) -> None:
    course = _sim_courses(sim_root)[0]
    instance.add_dynamic_partitions("course_id", [course])
    loaded = count_from(mooc, course, 0, 200)
    # the course was loaded with `loaded` learners (as the IO manager reports it) ...
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="enrollments", partition=course,
        metadata={"dagster/partition_row_count": dg.MetadataValue.int(loaded)},
    ))
    # ... and a learner enrolled before the sensor ever looked at the course
    httpx.post(f"{sim_root}/__sim__/enroll", json={"course_id": course, "count": 1})
    first, _ = _tick(_sensors()["new_enrollments_sensor"], instance, mooc, None)
    assert isinstance(first, dg.SensorResult)
    assert [r.partition_key for r in first.run_requests] == [course]
    assert first.run_requests[0].run_key == enrollment_run_key(course, loaded + 1)


def test_enrollment_refresh_targets_enrollments_and_everything_downstream() -> None:
    from moocassets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in ENROLLMENT_REFRESH_SELECTION.resolve(graph)}
    assert {"mooc_enrollments_extract", "enrollments", "h5p_scores_extract", "raw_data"} <= keys
    assert "mooc_grades_extract" not in keys


def test_enrollment_sensor_rotates_within_its_course_budget(
    sim_root: str, mooc: MoocApiResource, instance: dg.DagsterInstance
) -> None:
    courses = sorted(_sim_courses(sim_root))[:3]
    instance.add_dynamic_partitions("course_id", courses)
    sensor = _sensors(max_courses_per_tick=2)["new_enrollments_sensor"]
    seen: list[set[str]] = []
    cursor = None
    for _ in range(3):
        result, _ = _tick(sensor, instance, mooc, cursor)
        assert isinstance(result, dg.SensorResult)
        before = set(EnrollmentCursor.load(cursor).counts)
        cursor = result.cursor
        seen.append(set(EnrollmentCursor.load(cursor).counts) - before)
    registered = sorted(instance.get_dynamic_partitions("course_id"))
    assert seen[0] == set(rotation(registered, 0)[:2])
    assert seen[1] == set(rotation(registered, 2)[:2]) - seen[0]
    assert set().union(*seen) == set(registered)
    assert json.loads(cursor or "{}")["offset"] == 6 % len(registered)


def test_rotation_wraps() -> None:
    assert rotation(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert rotation([], 3) == []
