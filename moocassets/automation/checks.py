"""Asset checks on the ten warehouse tables, built from the declared schema.

One ``multi_asset_check`` per table (one step per table in a run, not one per check) reads the
course partition(s) of the current run from the warehouse (``WarehouseResource``) and reports:

* ``unique_key``            no duplicate ``spec.unique_key``                       (blocking)
* ``value_ranges``          every column within ``Column.min_value/max_value``      (blocking)
* ``learners_enrolled``     every learner is in ``enrollments`` for that course    (blocking)
* ``matches_detail``        summary == aggregate of its detail table, recomputed
                            with ``moocassets.transforms.summaries``               (blocking)
* ``one_row_per_enrolled_learner`` (raw_data)                                      (blocking)
* ``dropout_label_varies``  WARN when ``is_dropout`` is constant in a course of 50+
                            learners that has run 4+ weeks                         (not blocking)

Blocking: an ERROR result stops the downstream assets of that run, so bad rows do not reach
``raw_data``. The checked table itself is already written by then (Dagster writes the asset
before its checks run); the failed check is visible on the asset and the next refresh retries.
The pure ``evaluate_*`` functions take frames and are unit-testable; the factories only fetch.
(No ``from __future__ import annotations`` here: Dagster validates the ``context`` annotation
of check functions by identity, which a string annotation fails.)
"""

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from moocassets import schema
from moocassets.io import WarehouseResource
from moocassets.schema import TableSpec
from moocassets.transforms import summaries

WAREHOUSE_RESOURCE_KEY = "warehouse"
SAMPLE = 5
DROPOUT_MIN_LEARNERS = 50
DROPOUT_MIN_WEEKS = 4

SUMMARY_OF: dict[str, tuple[str, Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "h5p_scores_summary": ("h5p_scores", summaries.h5p_summary),
    "video_progress_summary": ("video_progress", summaries.video_summary),
}


@dataclass(frozen=True)
class Outcome:
    """A check outcome before it becomes an ``AssetCheckResult``."""

    passed: bool
    description: str
    metadata: dict[str, Any]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def _keys_sample(frame: pd.DataFrame, cols: Sequence[str], n: int = SAMPLE) -> list[str]:
    rows = frame[list(cols)].drop_duplicates().head(n)
    return [
        "(" + ", ".join(f"{c}={row[c]!r}" for c in cols) + ")"
        for row in rows.to_dict(orient="records")
    ]


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


# ---------------------------------------------------------------------------------------------
# Pure evaluations
# ---------------------------------------------------------------------------------------------


def evaluate_unique_key(spec: TableSpec, frame: pd.DataFrame) -> Outcome:
    key = list(spec.unique_key)
    dup = frame.duplicated(key, keep=False)
    n = int(dup.sum())
    if not n:
        return Outcome(True, f"{spec.name}: ({', '.join(key)}) unique in {len(frame)} rows",
                       {"rows": len(frame), "duplicate_rows": 0})
    sample = _keys_sample(frame[dup], key)
    return Outcome(
        False,
        f"table {spec.name}: {n} rows share a key ({', '.join(key)}); e.g. {'; '.join(sample)}",
        {"rows": len(frame), "duplicate_rows": n, "sample_keys": sample},
    )


def evaluate_value_ranges(spec: TableSpec, frame: pd.DataFrame) -> Outcome:
    problems: list[str] = []
    bad_by_column: dict[str, int] = {}
    for col in spec.columns:
        if (col.min_value is None and col.max_value is None) or col.name not in frame:
            continue
        values = pd.to_numeric(frame[col.name], errors="coerce").astype("float64")
        bad = pd.Series(False, index=frame.index)
        if col.min_value is not None:
            bad |= values < col.min_value
        if col.max_value is not None:
            bad |= values > col.max_value
        n = int(bad.fillna(False).sum())
        if n:
            bad_by_column[col.name] = n
            rows = frame[bad.fillna(False)]
            sample = [
                f"{k} -> {_plain(v)}"
                for k, v in zip(
                    _keys_sample(rows, spec.unique_key, len(rows)), rows[col.name], strict=False
                )
            ][:SAMPLE]
            lo = "-inf" if col.min_value is None else f"{col.min_value:g}"
            hi = "inf" if col.max_value is None else f"{col.max_value:g}"
            problems.append(
                f"column {col.name}: {n} value(s) outside [{lo}, {hi}], e.g. {'; '.join(sample)}"
            )
    if not problems:
        return Outcome(True, f"{spec.name}: all bounded columns in range", {"rows": len(frame)})
    return Outcome(
        False,
        f"table {spec.name}: " + " | ".join(problems),
        {"rows": len(frame), "out_of_range": bad_by_column},
    )


def evaluate_learners_enrolled(
    spec: TableSpec, frame: pd.DataFrame, enrolled: pd.DataFrame
) -> Outcome:
    pairs = ["course_id", "user_id"]
    known = set(map(tuple, enrolled[pairs].dropna().astype({"user_id": "int64"}).values.tolist()))
    keys = frame[pairs].dropna().astype({"user_id": "int64"})
    mask = [tuple(r) not in known for r in keys.values.tolist()]
    stray = keys[mask]
    if stray.empty:
        return Outcome(True, f"{spec.name}: every learner is enrolled",
                       {"learners": int(keys["user_id"].nunique())})
    sample = _keys_sample(stray, pairs)
    return Outcome(
        False,
        f"table {spec.name}, column user_id: {stray.drop_duplicates().shape[0]} learner(s) not "
        f"in enrollments of their course; e.g. {'; '.join(sample)}",
        {"not_enrolled": int(stray.drop_duplicates().shape[0]), "sample_keys": sample},
    )


def _differs(a: Any, b: Any, tolerance: float) -> bool:
    a, b = _plain(a), _plain(b)
    if a is None or b is None:
        return (a is None) != (b is None)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) > tolerance
    if isinstance(a, pd.Timestamp) or isinstance(b, pd.Timestamp):
        return abs((pd.Timestamp(a) - pd.Timestamp(b)).total_seconds()) >= 1.0
    return bool(a != b)


def evaluate_summary(
    summary_spec: TableSpec, stored: pd.DataFrame, recomputed: pd.DataFrame
) -> Outcome:
    key = list(summary_spec.unique_key)
    left = stored.set_index(key)
    right = recomputed.set_index(key)
    missing = right.index.difference(left.index)
    extra = left.index.difference(right.index)
    problems: list[str] = []
    if len(missing):
        problems.append(f"{len(missing)} learner(s) missing, e.g. {list(missing[:SAMPLE])}")
    if len(extra):
        problems.append(f"{len(extra)} learner(s) without detail rows, e.g. {list(extra[:SAMPLE])}")
    both = left.index.intersection(right.index)
    mismatched: dict[str, int] = {}
    for col in summary_spec.columns:
        if col.name in key:
            continue
        tol = 0.5 * 10 ** -(col.scale or 0) + 1e-9 if col.kind == "decimal" else 1e-9
        bad = [
            k for k in both if _differs(left.at[k, col.name], right.at[k, col.name], tol)
        ]
        if bad:
            mismatched[col.name] = len(bad)
            sample = [
                f"{k}: stored {_plain(left.at[k, col.name])!r} != {_plain(right.at[k, col.name])!r}"
                for k in bad[:SAMPLE]
            ]
            problems.append(f"column {col.name}: {len(bad)} mismatch(es), e.g. {'; '.join(sample)}")
    if not problems:
        return Outcome(True, f"{summary_spec.name} equals the aggregate of its detail table",
                       {"learners": len(both)})
    return Outcome(
        False,
        f"table {summary_spec.name} != aggregate of its detail table: " + " | ".join(problems),
        {"mismatched_columns": mismatched, "missing": len(missing), "extra": len(extra)},
    )


def evaluate_raw_data_rows(raw: pd.DataFrame, enrolled: pd.DataFrame) -> Outcome:
    pairs = ["course_id", "user_id"]
    want = enrolled[pairs].dropna().astype({"user_id": "int64"}).drop_duplicates()
    have = raw[pairs].dropna().astype({"user_id": "int64"})
    dup = have[have.duplicated(keep=False)]
    want_set = set(map(tuple, want.values.tolist()))
    have_set = set(map(tuple, have.values.tolist()))
    missing = sorted(want_set - have_set)
    extra = sorted(have_set - want_set)
    problems: list[str] = []
    if missing:
        problems.append(
            f"{len(missing)} enrolled learner(s) without a row, e.g. "
            + "; ".join(f"(course_id={c!r}, user_id={u})" for c, u in missing[:SAMPLE])
        )
    if extra:
        problems.append(
            f"{len(extra)} row(s) of learners not enrolled, e.g. "
            + "; ".join(f"(course_id={c!r}, user_id={u})" for c, u in extra[:SAMPLE])
        )
    if not dup.empty:
        problems.append(f"{len(dup)} duplicated rows, e.g. {'; '.join(_keys_sample(dup, pairs))}")
    meta = {"rows": len(raw), "enrolled": len(want_set), "missing": len(missing),
            "extra": len(extra), "duplicated": len(dup)}
    if not problems:
        return Outcome(True, "raw_data: exactly one row per enrolled learner", meta)
    return Outcome(False, "table raw_data, column user_id: " + " | ".join(problems), meta)


def evaluate_dropout_varies(raw: pd.DataFrame) -> Outcome:
    constant: list[str] = []
    for course_id, part in raw.groupby("course_id", sort=True):
        weeks = pd.to_numeric(part["weeks_since_enrollment"], errors="coerce").max()
        if (
            len(part) >= DROPOUT_MIN_LEARNERS
            and not pd.isna(weeks)
            and weeks >= DROPOUT_MIN_WEEKS
            and part["is_dropout"].dropna().nunique() == 1
        ):
            value = bool(part["is_dropout"].dropna().iloc[0])
            constant.append(f"{course_id} ({len(part)} learners, all is_dropout={value})")
    if not constant:
        return Outcome(True, "raw_data: is_dropout varies where it should", {},
                       dg.AssetCheckSeverity.WARN)
    return Outcome(
        False,
        "table raw_data, column is_dropout: constant across course(s) " + "; ".join(constant),
        {"courses": constant},
        dg.AssetCheckSeverity.WARN,
    )


# ---------------------------------------------------------------------------------------------
# Dagster wiring
# ---------------------------------------------------------------------------------------------


def run_course_keys(context: dg.AssetCheckExecutionContext) -> list[str] | None:
    """The course partition(s) of the run (None: not a partitioned run -> whole table)."""
    op_ctx = context.op_execution_context
    if op_ctx.has_partition_key or op_ctx.has_partition_key_range:
        return list(op_ctx.partition_keys)
    return None


def _result(spec_name: str, asset: str, outcome: Outcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=spec_name,
        passed=outcome.passed,
        severity=outcome.severity,
        description=outcome.description[:2000],
        metadata=outcome.metadata,
    )


def table_checks(spec: TableSpec) -> dg.AssetChecksDefinition:
    """The checks of one warehouse table as one multi-asset check (one step per run)."""
    name = spec.name
    specs = [
        dg.AssetCheckSpec("unique_key", asset=name, blocking=True,
                          description=f"No duplicate ({', '.join(spec.unique_key)})"),
        dg.AssetCheckSpec("value_ranges", asset=name, blocking=True,
                          description="Percentages in 0-100, counts and times >= 0"),
    ]
    if name != "enrollments":
        specs.append(dg.AssetCheckSpec(
            "learners_enrolled", asset=name, blocking=True, additional_deps=["enrollments"],
            description="Every learner is enrolled in the course"))
    if name in SUMMARY_OF:
        detail = SUMMARY_OF[name][0]
        specs.append(dg.AssetCheckSpec(
            "matches_detail", asset=name, blocking=True, additional_deps=[detail],
            description=f"Equals the aggregate of {detail} (transforms.summaries)"))
    if name == "raw_data":
        specs.append(dg.AssetCheckSpec(
            "one_row_per_enrolled_learner", asset=name, blocking=True,
            description="Exactly one row per enrolled learner"))
        specs.append(dg.AssetCheckSpec(
            "dropout_label_varies", asset=name, blocking=False,
            description=f"WARN: is_dropout constant in a course of {DROPOUT_MIN_LEARNERS}+ "
            f"learners running {DROPOUT_MIN_WEEKS}+ weeks"))

    @dg.multi_asset_check(specs=specs, name=f"{name}_checks",
                          required_resource_keys={WAREHOUSE_RESOURCE_KEY})
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        warehouse: WarehouseResource = getattr(context.resources, WAREHOUSE_RESOURCE_KEY)
        courses = run_course_keys(context)
        frame = warehouse.read_table(name, courses)
        yield _result("unique_key", name, evaluate_unique_key(spec, frame))
        yield _result("value_ranges", name, evaluate_value_ranges(spec, frame))
        enrolled = frame if name == "enrollments" else warehouse.read_table("enrollments", courses)
        if name != "enrollments":
            yield _result("learners_enrolled", name,
                          evaluate_learners_enrolled(spec, frame, enrolled))
        if name in SUMMARY_OF:
            detail_name, aggregate = SUMMARY_OF[name]
            recomputed = aggregate(warehouse.read_table(detail_name, courses))
            yield _result("matches_detail", name, evaluate_summary(spec, frame, recomputed))
        if name == "raw_data":
            yield _result("one_row_per_enrolled_learner", name,
                          evaluate_raw_data_rows(frame, enrolled))
            yield _result("dropout_label_varies", name, evaluate_dropout_varies(frame))

    return _checks


def build_warehouse_checks(
    tables: Sequence[TableSpec] = schema.WAREHOUSE_TABLES,
) -> list[dg.AssetChecksDefinition]:
    return [table_checks(spec) for spec in tables]
