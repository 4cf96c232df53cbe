"""The automation does not race a backfill (issue 15, part 2).

A real ranged run of the course job (``moocassets.backfill.execute_courses``: one run over every
course, with the ``dagster/asset_partition_range_*`` tags) executes in a thread on stand-in assets
of the real graph; gates inside two of its steps hold it at chosen points while the production
conditions are evaluated (``evaluate_automation_conditions``) as the automation sensor would:
before the run exists, while it runs, while a step finishes during a tick, and after it ended.
Nothing the run is materializing, or has just materialized, may be requested.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from moocassets.automation import AutomationSettings, settings_from_env, with_automation
from moocassets.backfill import RANGE_END_TAG, RANGE_START_TAG, execute_courses
from moocassets.partitions import COURSE_PARTITIONS_NAME, course_partitions
from moocassets_tests.automation.standins import (
    ALL_ASSETS,
    H5P_EXTRACTS,
    ROOT_EXTRACTS,
    WAREHOUSE_DEPS,
)
from moocassets_tests.automation.ticks import evaluate, requested

SETTLE = timedelta(seconds=60)
SETTINGS = AutomationSettings(settle=SETTLE, retry_reset_after=None)
COURSES = ["course-v1:Uni+A+2025", "course-v1:Uni+B+2025", "course-v1:Uni+C+2025"]
GATE_TIMEOUT_S = 60.0


class Gate:
    """Holds a step until released; tells the test when the step got there."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()

    def pass_through(self, name: str) -> None:
        self.reached.set()
        if not self.released.wait(GATE_TIMEOUT_S):
            raise TimeoutError(f"gate in {name} was never released")

    def wait_reached(self) -> None:
        assert self.reached.wait(GATE_TIMEOUT_S), "the run never reached its gate"


def _gated_assets(gates: dict[str, Gate]) -> list[dg.AssetsDefinition]:
    """The stand-in graph (same keys, groups, partitions, dependencies); ``gates`` hold steps."""

    def make(name: str, group: str, deps: Sequence[str]) -> dg.AssetsDefinition:
        @dg.asset(name=name, group_name=group, deps=list(deps), partitions_def=course_partitions)
        def _a() -> None:
            if name in gates:
                gates[name].pass_through(name)

        return _a

    @dg.asset(name="dropout_risk_model", group_name="risk", deps=["raw_data_history"])
    def _model() -> None:
        return None

    return [
        *(make(n, "extract", []) for n in ROOT_EXTRACTS),
        *(make(n, "extract", ["mooc_enrollments_extract"]) for n in H5P_EXTRACTS),
        *(make(n, "warehouse", deps) for n, deps in WAREHOUSE_DEPS.items()),
        _model,
    ]


class RangedRun:
    """``execute_courses`` over several courses (one ranged run) in a background thread."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.job = defs.resolve_job_def("course_refresh")
        self.instance = instance
        self.result: dg.ExecuteInProcessResult | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = execute_courses(self.job, self.instance, COURSES)

    def start(self) -> RangedRun:
        self.thread.start()
        return self

    def join(self) -> dg.ExecuteInProcessResult:
        self.thread.join(GATE_TIMEOUT_S)
        assert self.result is not None and self.result.success
        return self.result


def _defs(gates: dict[str, Gate]) -> dg.Definitions:
    job = dg.define_asset_job(
        "course_refresh", selection=dg.AssetSelection.all() - dg.AssetSelection.groups("risk")
    )
    return with_automation(
        dg.Definitions(assets=_gated_assets(gates), jobs=[job], executor=dg.in_process_executor),
        SETTINGS,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_ranged_backfill_is_never_raced_from_registration_to_after_it(
    instance: dg.DagsterInstance,
) -> None:
    """The demo's and the operator's sequence: the automation ticks; the courses are registered;
    seconds later a ranged run starts; it runs for longer than the settle time; it ends."""
    gate = Gate()
    defs = _defs({"h5p_scores_summary": gate})
    idle = evaluate(defs, instance, _now())  # the sensor was ticking before
    assert idle.total_requested == 0

    instance.add_dynamic_partitions(COURSE_PARTITIONS_NAME, COURSES)
    # a tick between the registration and the creation of the backfill's run
    registered = evaluate(defs, instance, _now(), idle.cursor)
    assert requested(registered, ALL_ASSETS) == {}

    run = RangedRun(defs, instance).start()
    gate.wait_reached()  # extracts and most tables written, the summaries' step running
    record = instance.get_run_records(limit=1)[0]
    assert record.dagster_run.tags[RANGE_START_TAG] == COURSES[0]
    assert record.dagster_run.tags[RANGE_END_TAG] == COURSES[-1]
    during = evaluate(defs, instance, _now(), registered.cursor)
    assert requested(during, ALL_ASSETS) == {}
    # a long run: a tick after the settle time still sees it in progress
    later = evaluate(defs, instance, _now() + SETTLE * 2, during.cursor)
    assert requested(later, ALL_ASSETS) == {}

    gate.released.set()
    run.join()
    # once everything it wrote has settled, nothing is due (no cascade of its own writes)
    after = evaluate(defs, instance, _now() + SETTLE * 3, later.cursor)
    assert requested(after, ALL_ASSETS) == {}


class TickSnapshot:
    """What a daemon tick reads when it starts: the newest event id and the asset records.

    The tick then evaluates for seconds while the run goes on writing; the conditions' own
    queries (in progress, latest materializations) see the newer state."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.max_event_id = instance.event_log_storage.get_maximum_record_id()
        self.records = {r.asset_entry.asset_key: r for r in instance.get_asset_records()}

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        storage = self.instance.event_log_storage
        monkeypatch.setattr(storage, "get_maximum_record_id", lambda: self.max_event_id)

        def records(asset_keys: Sequence[dg.AssetKey] | None = None) -> list[object]:
            keys = self.records if asset_keys is None else asset_keys
            return [self.records[k] for k in keys if k in self.records]

        monkeypatch.setattr(self.instance, "get_asset_records", records)


def test_a_step_that_finishes_while_a_tick_evaluates_is_not_requested(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race seen with the daemon: a tick starts, then the ranged run writes the summaries
    and moves on. The tick's snapshot says "missing"; Dagster's in-progress query, made later,
    says "not in progress" (planned and materialized by the run): without a guard the tick
    requests both summaries for every course."""
    summaries, raw = Gate(), Gate()
    defs = _defs({"h5p_scores_summary": summaries, "raw_data": raw})
    instance.add_dynamic_partitions(COURSE_PARTITIONS_NAME, COURSES)
    run = RangedRun(defs, instance).start()
    summaries.wait_reached()
    start = evaluate(defs, instance, _now())
    assert requested(start, ALL_ASSETS) == {}

    snapshot = TickSnapshot(instance)  # the next tick starts ...
    summaries.released.set()
    raw.wait_reached()  # ... the run writes both summaries and goes on to raw_data ...
    with monkeypatch.context() as patch:
        snapshot.apply(patch)
        racing = evaluate(defs, instance, _now(), start.cursor)  # ... while the tick evaluates
    assert requested(racing, ALL_ASSETS) == {}

    raw.released.set()
    run.join()
    settled = evaluate(defs, instance, _now() + SETTLE * 3, racing.cursor)
    assert requested(settled, ALL_ASSETS) == {}



def test_the_settle_time_is_a_setting() -> None:
    assert settings_from_env({})[1].settle == timedelta(seconds=60)
    _, automation, _ = settings_from_env({"MOOCASSETS_AUTOMATION_SETTLE_SECONDS": "5"})
    assert automation.settle == timedelta(seconds=5)
