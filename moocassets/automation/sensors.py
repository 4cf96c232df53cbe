"""Sensors: course discovery (registers ``course_id`` partitions) and new enrollments.

Neither sensor does heavy work: discovery makes one M3 call and requests no runs (the automation
conditions load newly registered partitions); the enrollment sensor reads one M1 page per known
course, in rotation, within a per-tick time budget. Both keep their state in the sensor cursor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster import SensorEvaluationContext

from moocassets.partitions import (
    COURSE_PARTITIONS_NAME,
    course_partitions,
    invalid_course_key_reason,
)
from moocassets.sources import MoocApiResource, SourceError

DISCOVERY_SENSOR_NAME = "course_discovery_sensor"
ENROLLMENTS_SENSOR_NAME = "new_enrollments_sensor"
TRIGGER_TAG = "moocassets/trigger"

ENROLLMENT_REFRESH_SELECTION = dg.AssetSelection.assets("mooc_enrollments_extract").downstream()
"""What a new enrollment refreshes: the M1 extract and everything downstream, up to raw_data."""


@dataclass(frozen=True)
class SensorSettings:
    discovery_interval_seconds: int = 300
    enrollments_interval_seconds: int = 60
    tick_budget_seconds: float = 40.0
    """Stop visiting courses once this much of a tick is spent (the gRPC limit is 60 s)."""
    page_size: int = 200
    max_courses_per_tick: int = 200


def _budgeted(mooc: MoocApiResource, seconds: float) -> MoocApiResource:
    """A copy whose single calls cannot outlive the tick budget (hooks are carried over)."""
    budget = max(1.0, seconds)
    return mooc.model_copy(
        update={
            "call_budget_seconds": min(mooc.call_budget_seconds, budget),
            "timeout_seconds": min(mooc.timeout_seconds, budget),
            "export_timeout_seconds": min(mooc.export_timeout_seconds, budget),
        }
    )


# ---------------------------------------------------------------------------------------------
# Course discovery
# ---------------------------------------------------------------------------------------------


@dataclass
class DiscoveryCursor:
    known: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: str | None) -> DiscoveryCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(known=list(data.get("known", [])), invalid=list(data.get("invalid", [])))

    def dump(self) -> str:
        return json.dumps({"known": sorted(self.known), "invalid": sorted(self.invalid)})


@dataclass(frozen=True)
class DiscoveryPlan:
    new: list[str]
    invalid: dict[str, str]  # id -> reason (newly seen invalid ids only)
    cursor: DiscoveryCursor


def plan_discovery(
    listed: Sequence[dict[str, Any]], cursor: DiscoveryCursor, registered: set[str]
) -> DiscoveryPlan:
    """Pure part of the discovery tick: which ids to register, which to warn about."""
    valid: list[str] = []
    invalid: dict[str, str] = {}
    for item in listed:
        course_id = item.get("id") if isinstance(item, dict) else None
        if course_id is None and isinstance(item, dict):
            course_id = item.get("course_id")
        reason = invalid_course_key_reason(course_id)
        if reason is None:
            valid.append(str(course_id))
        else:
            invalid[repr(course_id) if not isinstance(course_id, str) else course_id] = reason
    known = set(cursor.known)
    new = sorted({c for c in valid if c not in known and c not in registered})
    newly_invalid = {k: v for k, v in invalid.items() if k not in set(cursor.invalid)}
    return DiscoveryPlan(
        new=new,
        invalid=newly_invalid,
        cursor=DiscoveryCursor(
            known=sorted(known | set(valid)), invalid=sorted(set(cursor.invalid) | set(invalid))
        ),
    )


def _discovery_fn(settings: SensorSettings) -> Any:
    def course_discovery_sensor(
        context: SensorEvaluationContext, mooc: MoocApiResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Register new MOOC courses (M3) as ``course_id`` partitions. Requests no runs:
        the extract assets' automation condition loads newly added partitions."""
        cursor = DiscoveryCursor.load(context.cursor)
        try:
            listed = _budgeted(mooc, settings.tick_budget_seconds).list_courses(log=context.log)
        except SourceError as exc:
            return dg.SkipReason(f"course list (M3) failed, will retry next tick: {exc}")
        registered = set(context.instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME))
        plan = plan_discovery(listed.data, cursor, registered)
        if plan.invalid:
            context.log.warning(
                f"{len(plan.invalid)} course id(s) cannot be partition keys and are skipped: "
                + "; ".join(f"{cid!r} ({why})" for cid, why in sorted(plan.invalid.items()))
            )
        if not plan.new:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no new courses ({len(registered)} registered)"),
                cursor=plan.cursor.dump(),
            )
        context.log.info(f"registering {len(plan.new)} new course(s): {plan.new[:20]}")
        return dg.SensorResult(
            dynamic_partitions_requests=[course_partitions.build_add_request(plan.new)],
            cursor=plan.cursor.dump(),
        )

    return course_discovery_sensor


# ---------------------------------------------------------------------------------------------
# New enrollments
# ---------------------------------------------------------------------------------------------


@dataclass
class EnrollmentCursor:
    counts: dict[str, int] = field(default_factory=dict)
    offset: int = 0

    @classmethod
    def load(cls, raw: str | None) -> EnrollmentCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            offset=int(data.get("offset", 0)),
        )

    def dump(self) -> str:
        return json.dumps({"counts": dict(sorted(self.counts.items())), "offset": self.offset})


def rotation(courses: Sequence[str], offset: int) -> list[str]:
    """``courses`` starting at ``offset`` (wrapping)."""
    if not courses:
        return []
    start = offset % len(courses)
    return [*courses[start:], *courses[:start]]


def enrollment_run_key(course_id: str, count: int) -> str:
    return f"{course_id}@{count}"


def count_from(mooc: MoocApiResource, course_id: str, offset: int, page_size: int) -> int:
    """Enrollment count, reading M1 pages from ``offset`` until a short page."""
    count = offset
    while True:
        page = mooc.enrollments_page(course_id, offset=count, limit=page_size).data
        count += len(page)
        if len(page) < page_size:
            return count


ENROLLMENTS_TABLE = dg.AssetKey("enrollments")


def stored_learners(instance: dg.DagsterInstance, course_id: str) -> int | None:
    """Learners in the latest ``enrollments`` materialization of ``course_id`` (None: never).

    The baseline a course is first compared with, so enrollments that arrived before the sensor
    first saw the course are not missed (its first tick may come after the first load)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ENROLLMENTS_TABLE, asset_partitions=[course_id]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("dagster/partition_row_count")
    raw = getattr(value, "value", value)
    return int(raw) if isinstance(raw, int | float) else None


def _enrollments_fn(settings: SensorSettings) -> Any:
    def new_enrollments_sensor(
        context: SensorEvaluationContext, mooc: MoocApiResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Refresh a course (M1 extract and everything downstream) when it has new enrollments.

        Per course the cursor keeps the known enrollment count; a tick reads the M1 page at that
        offset (usually empty). Courses are visited in rotation within a time budget. At first
        sight the known count is the learners of the course's latest ``enrollments``
        materialization; a course never loaded only has its count recorded (its first load is
        automation's)."""
        started = time.monotonic()
        cursor = EnrollmentCursor.load(context.cursor)
        courses = sorted(context.instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME))
        if not courses:
            return dg.SkipReason("no course partitions registered yet")
        order = rotation(courses, cursor.offset)[: settings.max_courses_per_tick]
        client = _budgeted(mooc, settings.tick_budget_seconds)
        counts = {c: n for c, n in cursor.counts.items() if c in set(courses)}
        requests: list[dg.RunRequest] = []
        visited = 0
        errors: list[str] = []
        with client.session():
            for course_id in order:
                if time.monotonic() - started > settings.tick_budget_seconds:
                    break
                visited += 1
                known = counts.get(course_id)
                if known is None:  # first sight: compare with what the warehouse holds
                    known = stored_learners(context.instance, course_id)
                try:
                    count = count_from(client, course_id, known or 0, settings.page_size)
                except SourceError as exc:
                    errors.append(f"{course_id}: {exc}")
                    continue
                counts[course_id] = count
                if known is not None and count > known:
                    context.log.info(
                        f"{course_id}: {count - known} new enrollment(s) ({known} -> {count})"
                    )
                    requests.append(
                        dg.RunRequest(
                            partition_key=course_id,
                            run_key=enrollment_run_key(course_id, count),
                            tags={TRIGGER_TAG: "new_enrollments"},
                        )
                    )
        if errors:
            context.log.warning(f"M1 failed for {len(errors)} course(s): " + "; ".join(errors[:5]))
        new_cursor = EnrollmentCursor(
            counts=counts, offset=(cursor.offset + visited) % len(courses)
        )
        if not requests:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"no new enrollments in {visited} of {len(courses)} course(s)"
                ),
                cursor=new_cursor.dump(),
            )
        return dg.SensorResult(run_requests=requests, cursor=new_cursor.dump())

    return new_enrollments_sensor


def build_sensors(settings: SensorSettings | None = None) -> list[dg.SensorDefinition]:
    """Both sensors, default RUNNING, with the given intervals and budget."""
    s = settings or SensorSettings()
    discovery = dg.sensor(
        name=DISCOVERY_SENSOR_NAME,
        minimum_interval_seconds=s.discovery_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Registers new MOOC courses (M3) as course_id partitions; requests no runs.",
    )(_discovery_fn(s))
    enrollments = dg.sensor(
        name=ENROLLMENTS_SENSOR_NAME,
        minimum_interval_seconds=s.enrollments_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=ENROLLMENT_REFRESH_SELECTION,
        description="Refreshes a course's enrollments and everything downstream when M1 shows "
        "new enrollments (one page read per course, in rotation).",
    )(_enrollments_fn(s))
    return [discovery, enrollments]
