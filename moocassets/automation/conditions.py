"""Declarative automation for the ``course_id``-partitioned asset graph.

Dagster 1.13 evaluates a ``FreshnessPolicy`` per *asset* (the newest materialization of any
partition), so a fresh course would hide a stale one. Staleness is therefore computed here per
*course partition*, by small custom conditions that read only the event log (no resources,
no HTTP: they run inside the automation sensor every 30 s):

``StalePartitions(max_age)``
    the partition's latest materialization of this asset is older than ``max_age``;
``CourseFinal()``
    the course has ended (its end date, from the latest ``mooc_course_extract`` materialization
    metadata of that partition) **and** this asset's partition was last materialized after the
    end, so its data is final;
``RetryBackoff(max_attempts, base_delay)``
    per-partition request bookkeeping in the condition's cursor: after a request that did not
    lead to a materialization, the next request waits ``base_delay * 2**(attempts-1)``; after
    ``max_attempts`` requests the partition is left alone until something materializes it (a
    manual run, the enrollment sensor) or ``reset_after`` has passed;
``SettlingPartitions(settle)``
    the partition was written by a run, or registered, less than ``settle`` ago: a guard that
    keeps the automation from racing a backfill (a tick evaluating while a run writes; a course
    registered seconds before the backfill's run exists).

They are combined with built-ins in :func:`extract_condition` and :func:`warehouse_condition`.
See ``docs/AUTOMATION.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from moocassets import keys

COURSE_ASSET_KEY = dg.AssetKey(keys.COURSE_EXTRACT)
COURSE_ENDS_METADATA_KEY = keys.COURSE_ENDS_METADATA

_CHUNK = 500
AC = dg.AutomationCondition


@dataclass(frozen=True)
class AutomationSettings:
    """Tunables of the automation (all have production defaults)."""

    stale_after: timedelta = timedelta(hours=12)
    """Refresh a running course's extract partitions once they are this old (= warn window)."""
    fail_window: timedelta = timedelta(hours=24)
    """FreshnessPolicy fail window of the warehouse assets."""
    warn_window: timedelta = timedelta(hours=12)
    """FreshnessPolicy warn window of the warehouse assets."""
    max_attempts: int = 4
    """Automation requests per partition without a materialization before giving up."""
    retry_base_delay: timedelta = timedelta(minutes=15)
    """Wait after the first unsuccessful request; doubles after each further one."""
    retry_reset_after: timedelta | None = timedelta(hours=24)
    """Forget a given-up partition after this long (None: only a materialization resets it)."""
    settle: timedelta = timedelta(seconds=60)
    """Leave a partition alone this long after a run wrote it, and after it was registered (a
    backfill's run is created seconds after the registration): :class:`SettlingPartitions`."""


# ---------------------------------------------------------------------------------------------
# Event-log helpers (public DagsterInstance API)
# ---------------------------------------------------------------------------------------------


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Iterable[str]
) -> dict[str, dg.EventLogRecord]:
    """The latest materialization record of each of ``partitions`` of ``key`` (absent: never)."""
    wanted = set(partitions)
    if not wanted:
        return {}
    ids = instance.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION, wanted
    )
    storage_ids = sorted(ids.values())
    out: dict[str, dg.EventLogRecord] = {}
    for i in range(0, len(storage_ids), _CHUNK):
        chunk = storage_ids[i : i + _CHUNK]
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)
        )
        for record in result.records:
            if record.partition_key is not None:
                out[record.partition_key] = record
    return out


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in {"nat", "none", "null", "nan"}:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def course_end_from_metadata(metadata: Mapping[str, Any], course_id: str) -> datetime | None:
    """The end of ``course_id`` from ``mooc_course_extract`` materialization metadata.

    Reads ``course_ends`` (JSON ``{course_id: ISO end | null}``). None when unknown or
    open-ended.
    """
    ends = metadata.get(COURSE_ENDS_METADATA_KEY)
    if ends is not None:
        value = getattr(ends, "value", ends)
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, Mapping):
            return _parse_time(value.get(course_id))
    return None


def _subset_of(
    context: dg.AutomationContext, partitions: Iterable[str]
) -> Any:  # EntitySubset (not exported at top level)
    return context.candidate_subset.compute_intersection_with_partition_keys(set(partitions))


def _candidate_keys(context: dg.AutomationContext) -> set[str]:
    return set(context.candidate_subset.expensively_compute_partition_keys())


# ---------------------------------------------------------------------------------------------
# Custom conditions
# ---------------------------------------------------------------------------------------------


class StalePartitions(dg.AutomationCondition[dg.AssetKey]):
    """Partitions whose latest materialization of this asset is older than ``max_age``.

    Never-materialized partitions are *not* stale (``missing()`` covers them).
    """

    def __init__(self, max_age: timedelta) -> None:
        self.max_age = max_age

    @property
    def name(self) -> str:
        return "stale_partitions"

    @property
    def description(self) -> str:
        return f"Partition last materialized more than {self.max_age} ago"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        if context.candidate_subset.is_empty or context.partitions_def is None:
            return dg.AutomationResult(context, context.get_empty_subset())
        records = latest_materializations(
            context.asset_graph_view.instance, context.key, _candidate_keys(context)
        )
        cutoff = context.evaluation_time.timestamp() - self.max_age.total_seconds()
        stale = {p for p, rec in records.items() if rec.timestamp <= cutoff}
        return dg.AutomationResult(context, _subset_of(context, stale))


class CourseFinal(dg.AutomationCondition[dg.AssetKey]):
    """Partitions of an ended course whose data of this asset was loaded after the end."""

    def __init__(self, course_asset: dg.AssetKey = COURSE_ASSET_KEY) -> None:
        self.course_asset = course_asset

    @property
    def name(self) -> str:
        return "course_final"

    @property
    def description(self) -> str:
        return "Course ended and this partition was materialized after its end (final data)"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        if context.candidate_subset.is_empty or context.partitions_def is None:
            return dg.AutomationResult(context, context.get_empty_subset())
        instance = context.asset_graph_view.instance
        keys = _candidate_keys(context)
        course_records = latest_materializations(instance, self.course_asset, keys)
        now = context.evaluation_time
        ends: dict[str, datetime] = {}
        for partition, rec in course_records.items():
            mat = rec.asset_materialization
            end = course_end_from_metadata(mat.metadata if mat else {}, partition)
            if end is not None and end <= now:
                ends[partition] = end
        own = (
            course_records
            if context.key == self.course_asset
            else latest_materializations(instance, context.key, ends)
        )
        final = {
            p for p, end in ends.items() if p in own and own[p].timestamp >= end.timestamp()
        }
        return dg.AutomationResult(context, _subset_of(context, final))


class RetryBackoff(dg.AutomationCondition[dg.AssetKey]):
    """False for partitions waiting out a retry backoff or given up; true otherwise.

    Cursor: JSON ``{partition: [requests_without_materialization, last_request_timestamp,
    event_log_id_at_request]}``; a materialization with a later event id resets the partition
    (only partitions with an outstanding request, so it stays small).
    """

    def __init__(
        self,
        max_attempts: int,
        base_delay: timedelta,
        reset_after: timedelta | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.reset_after = reset_after

    @property
    def name(self) -> str:
        return "retry_backoff"

    @property
    def description(self) -> str:
        return (
            f"At most {self.max_attempts} requests per partition without a materialization, "
            f"waiting {self.base_delay} x 2^n between them"
        )

    @property
    def requires_cursor(self) -> bool:
        return True

    def next_allowed(self, attempts: int, last_request: float) -> float:
        """When the next request may be made (inf when given up)."""
        if attempts >= self.max_attempts:
            return math.inf
        return last_request + self.base_delay.total_seconds() * 2 ** max(attempts - 1, 0)

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        state: dict[str, list[float]] = json.loads(context.cursor) if context.cursor else {}
        now = context.evaluation_time.timestamp()
        previous = context.get_previous_requested_subset(context.key)
        if previous is not None and not previous.is_empty:
            requested_at = (context.previous_evaluation_time or context.evaluation_time).timestamp()
            event_id = context.previous_max_storage_id or 0
            keys = (
                previous.expensively_compute_partition_keys()
                if context.partitions_def is not None
                else {""}
            )
            for partition in keys:
                attempts = int(state.get(partition, [0, 0.0, 0])[0])
                state[partition] = [attempts + 1, requested_at, event_id]
        if state and context.partitions_def is not None:
            records = latest_materializations(
                context.asset_graph_view.instance, context.key, state
            )
            for partition, (_, last, event_id) in list(state.items()):
                rec = records.get(partition)
                expired = self.reset_after is not None and now - last >= (
                    self.reset_after.total_seconds()
                )
                # materialized after the request (compared by event id, not by clock)
                if (rec is not None and rec.storage_id > event_id) or expired:
                    del state[partition]
        blocked = {
            p
            for p, (attempts, last, _) in state.items()
            if now < self.next_allowed(int(attempts), last)
        }
        if context.partitions_def is None:
            true_subset = (
                context.get_empty_subset() if blocked else context.candidate_subset
            )
        else:
            true_subset = context.candidate_subset.compute_difference(
                context.candidate_subset.compute_intersection_with_partition_keys(blocked)
            )
        return dg.AutomationResult(context, true_subset, cursor=json.dumps(state, sort_keys=True))


class SettlingPartitions(dg.AutomationCondition[dg.AssetKey]):
    """Partitions a run has just written, or that were registered moments ago.

    True for a partition of this asset whose latest materialization is less than ``settle`` old,
    or that was never materialized and was first seen by this condition less than ``settle``
    ago. Used as a guard (``~SettlingPartitions``) next to ``in_progress()``, it closes the
    windows in which the automation raced a backfill:

    * a tick reads its snapshot (newest event id, asset records) when it starts and evaluates
      for seconds; a step of a run that finishes meanwhile is "missing" in the snapshot but
      "not in progress" in Dagster's later query (planned, then materialized): requested again.
      The latest materialization is read here when this guard is evaluated, after both;
    * a course registered for a backfill (``make demo``, ``python -m moocassets.backfill``) is
      missing and in no run until the backfill's run is created, seconds later.

    Reads the event log only (batched); the cursor (JSON ``{partition: first_seen}``) holds
    the never-materialized candidate partitions only. Unpartitioned assets are never settling.
    """

    def __init__(self, settle: timedelta) -> None:
        self.settle = settle

    @property
    def name(self) -> str:
        return "settling"

    @property
    def description(self) -> str:
        return f"Partition written by a run, or registered, less than {self.settle} ago"

    @property
    def requires_cursor(self) -> bool:
        return True

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        first_seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        if context.candidate_subset.is_empty or context.partitions_def is None:
            return dg.AutomationResult(
                context, context.get_empty_subset(), cursor=json.dumps(first_seen, sort_keys=True)
            )
        now = context.evaluation_time.timestamp()
        cutoff = now - self.settle.total_seconds()
        keys = _candidate_keys(context)
        records = latest_materializations(context.asset_graph_view.instance, context.key, keys)
        written = {p for p, rec in records.items() if rec.timestamp > cutoff}
        never = {p: first_seen.get(p, now) for p in keys - records.keys()}
        registered = {p for p, seen in never.items() if seen > cutoff}
        return dg.AutomationResult(
            context,
            _subset_of(context, written | registered),
            cursor=json.dumps(never, sort_keys=True),
        )


# ---------------------------------------------------------------------------------------------
# Composed conditions
# ---------------------------------------------------------------------------------------------


def _guards(settings: AutomationSettings) -> dg.AutomationCondition:
    """``eager()``'s guards -- no dependency missing (and not requested now), none in progress,
    this partition not in progress (run or backfill) -- after the settle guard: not written by a
    run, nor registered, less than ``settings.settle`` ago (first, so that it sees every
    triggered partition and dates a new course from its first tick)."""
    return (
        ~SettlingPartitions(settings.settle)
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("settled, no dep missing, nothing in progress")


def _eager_trigger() -> dg.AutomationCondition:
    """``eager()``'s trigger: newly missing, or a dependency updated (or requested this tick),
    since this partition was last requested or updated."""
    return (AC.newly_missing() | AC.any_deps_updated()).since_last_handled().with_label(
        "dep updated since last handled"
    )


def _retry(settings: AutomationSettings) -> RetryBackoff:
    return RetryBackoff(
        settings.max_attempts, settings.retry_base_delay, settings.retry_reset_after
    )


def extract_condition(settings: AutomationSettings) -> dg.AutomationCondition:
    """Extract assets: load missing partitions, refresh stale running courses, cascade eagerly.

    ``(eager trigger | (missing | stale & ~final) & retry_backoff) & eager guards``

    * a course partition never loaded (e.g. just registered by the discovery sensor), or last
      loaded more than ``stale_after`` ago while its course is not final, is requested; every
      such request goes through :class:`RetryBackoff`, so a failing source is retried a few
      times with exponential backoff, never every tick;
    * the eager trigger makes the H5P extracts follow a refreshed ``mooc_enrollments_extract``;
    * the guards are those of ``eager()``: nothing happens while a dependency is missing or
      anything involved is in progress.
    """
    needs_load = (
        AC.missing()
        | (StalePartitions(settings.stale_after) & ~CourseFinal()).with_label(
            "stale, course not final"
        )
    ).with_label("missing or stale")
    refresh = (needs_load & _retry(settings)).with_label("load or refresh (with backoff)")
    return ((_eager_trigger() | refresh) & _guards(settings)).with_label("moocassets extract")


def warehouse_condition(settings: AutomationSettings) -> dg.AutomationCondition:
    """Warehouse tables: eager cascade, plus a bounded retry of partitions left missing.

    ``(eager trigger | missing & retry_backoff) & eager guards`` -- ``eager()`` with retries.
    Diamonds (``raw_data`` has eight parents) fire once per tick: every parent requested in the
    same tick counts as updated, and a parent still running holds the child back
    (``any_deps_in_progress``), so the child runs once after the last parent.
    """
    retry_missing = (AC.missing() & _retry(settings)).with_label("missing (with backoff)")
    return ((_eager_trigger() | retry_missing) & _guards(settings)).with_label(
        "moocassets warehouse"
    )


def risk_model_condition(cron: str = "0 4 * * 1") -> dg.AutomationCondition:
    """``dropout_risk_model``: retrain once per cron tick (weekly by default), never while a
    retrain or a history write is in progress. Until the first training, ``raw_data`` scores with
    the documented fallback rule, so nothing waits for the model (see docs/RISK.md)."""
    return (
        AC.cron_tick_passed(cron, cron_timezone="UTC")
        & ~AC.in_progress()
        & ~AC.any_deps_in_progress()
    ).with_label("weekly retrain")
