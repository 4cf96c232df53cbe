"""Data-quality checks of the ten warehouse tables, evaluated in memory inside each asset's step.

Every warehouse asset declares its checks (``check_specs``) and ends with :func:`checked_output`,
which evaluates them on the coerced frame it is about to write:

* ``unique_key``            no duplicate ``spec.unique_key``                       (blocking)
* ``value_ranges``          every column within ``Column.min_value/max_value``      (blocking)
* ``learners_enrolled``     every learner is in ``enrollments`` for that course    (blocking)
* ``matches_detail``        summary == aggregate of its detail table, recomputed
                            with ``moocassets.transforms.summaries``               (blocking)
* ``one_row_per_enrolled_learner`` (raw_data)                                      (blocking)
* ``dropout_label_varies``  WARN when ``is_dropout`` is constant in a course of 50+
                            learners that has run 4+ weeks                         (not blocking)

A failed blocking check fails the step **before** the frame is handed to the IO manager: the
table keeps its previous rows for that course, the failed evaluations are recorded on the asset,
and the downstream assets of the run do not run. When every blocking check passes, the frame is
written and the evaluations follow its materialization. Checking the frame in memory costs no
extra step, no extra read of the table and no extra run events (docs/AUTOMATION.md, "Checks").
The pure ``evaluate_*`` functions take frames and are unit-tested on their own.
"""

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from moocassets.schema import Column, TableSpec
from moocassets.transforms import summaries

SAMPLE = 5
DROPOUT_MIN_LEARNERS = 50
DROPOUT_MIN_WEEKS = 4

SUMMARY_OF: dict[str, tuple[str, Callable[[pd.DataFrame], pd.DataFrame]]] = {
    s.table: (s.detail, s.aggregate) for s in summaries.SUMMARIES
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
    """Every numeric value within its column's :attr:`~moocassets.schema.Column.bounds`."""
    problems: list[str] = []
    bad_by_column: dict[str, int] = {}
    for col in spec.columns:
        if col.bounds == (None, None) or col.name not in frame:
            continue
        bad = col.out_of_range(frame[col.name])
        n = int(bad.sum())
        if n:
            bad_by_column[col.name] = n
            rows = frame[bad]
            sample = [
                f"{k} -> {_plain(v)}"
                for k, v in zip(
                    _keys_sample(rows, spec.unique_key, len(rows)), rows[col.name], strict=False
                )
            ][:SAMPLE]
            problems.append(
                f"column {col.name}: {n} value(s) outside {col.bounds_text}, "
                f"e.g. {'; '.join(sample)}"
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
    known = pd.MultiIndex.from_frame(
        enrolled[pairs].dropna().astype({"course_id": object, "user_id": "int64"}))
    keys = frame[pairs].dropna().astype({"course_id": object, "user_id": "int64"})
    stray = keys[~pd.MultiIndex.from_frame(keys).isin(known)]
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


def column_mismatches(a: pd.Series, b: pd.Series, col: Column) -> pd.Series:
    """Per row: does stored ``a`` differ from recomputed ``b`` (same index), vectorized?

    NULL equals only NULL; decimals within half a unit of their scale; datetimes within 1 s."""
    na_a, na_b = a.isna(), b.isna()
    both = ~na_a & ~na_b
    if col.kind in ("int", "bigint", "decimal", "bool"):
        x = pd.to_numeric(a.astype(object).where(both), errors="coerce").astype("float64")
        y = pd.to_numeric(b.astype(object).where(both), errors="coerce").astype("float64")
        tol = 0.5 * 10 ** -(col.scale or 0) + 1e-9 if col.kind == "decimal" else 1e-9
        differs = (x - y).abs() > tol
    elif col.kind == "datetime":
        x = pd.to_datetime(a.where(both), utc=True)
        y = pd.to_datetime(b.where(both), utc=True)
        differs = (x - y).abs() >= pd.Timedelta(seconds=1)
    else:
        differs = a.astype(object).where(both) != b.astype(object).where(both)
    return (na_a != na_b) | (both & differs.fillna(False).astype(bool))


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
    left, right = left.loc[both], right.loc[both]
    mismatched: dict[str, int] = {}
    for col in summary_spec.columns:
        if col.name in key:
            continue
        bad = column_mismatches(left[col.name], right[col.name], col)
        if bad.any():
            keys = list(bad[bad].index)
            mismatched[col.name] = len(keys)
            sample = [
                f"{k}: stored {_plain(left.at[k, col.name])!r} != "
                f"{_plain(right.at[k, col.name])!r}"
                for k in keys[:SAMPLE]
            ]
            problems.append(
                f"column {col.name}: {len(keys)} mismatch(es), e.g. {'; '.join(sample)}"
            )
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
# Dagster wiring: the specs an asset declares and the evaluation at the end of its step
# ---------------------------------------------------------------------------------------------


def check_specs(spec: TableSpec) -> list[dg.AssetCheckSpec]:
    """The checks of one warehouse table, declared on its asset (``@asset(check_specs=...)``)."""
    name = spec.name
    specs = [
        dg.AssetCheckSpec("unique_key", asset=name, blocking=True,
                          description=f"No duplicate ({', '.join(spec.unique_key)})"),
        dg.AssetCheckSpec("value_ranges", asset=name, blocking=True,
                          description="Percentages in 0-100, counts and times >= 0"),
    ]
    if name != "enrollments":
        specs.append(dg.AssetCheckSpec(
            "learners_enrolled", asset=name, blocking=True,
            description="Every learner is enrolled in the course"))
    if name in SUMMARY_OF:
        detail = SUMMARY_OF[name][0]
        specs.append(dg.AssetCheckSpec(
            "matches_detail", asset=name, blocking=True,
            description=f"Equals the aggregate of {detail} (transforms.summaries)"))
    if name == "raw_data":
        specs.append(dg.AssetCheckSpec(
            "one_row_per_enrolled_learner", asset=name, blocking=True,
            description="Exactly one row per enrolled learner"))
        specs.append(dg.AssetCheckSpec(
            "dropout_label_varies", asset=name, blocking=False,
            description=f"WARN: is_dropout constant in a course of {DROPOUT_MIN_LEARNERS}+ "
            f"learners running {DROPOUT_MIN_WEEKS}+ weeks"))
    return specs


def evaluate_table(
    spec: TableSpec,
    frame: pd.DataFrame,
    *,
    enrolled: pd.DataFrame,
    aggregate: pd.DataFrame | None = None,
) -> dict[str, Outcome]:
    """Every check of ``spec`` (the names of :func:`check_specs`) on the frame to be written.

    ``enrolled``: the ``enrollments`` rows of the same course(s); ``aggregate``: for a summary,
    ``SUMMARY_OF[name][1]`` of the detail rows the step read (``matches_detail`` then guards the
    written frame against it, e.g. a rounding or type conversion that changed a value).
    """
    name = spec.name
    out = {
        "unique_key": evaluate_unique_key(spec, frame),
        "value_ranges": evaluate_value_ranges(spec, frame),
    }
    if name != "enrollments":
        out["learners_enrolled"] = evaluate_learners_enrolled(spec, frame, enrolled)
    if name in SUMMARY_OF:
        if aggregate is None:
            raise ValueError(f"{name}: the matches_detail check needs the detail's aggregate")
        out["matches_detail"] = evaluate_summary(spec, frame, aggregate)
    if name == "raw_data":
        out["one_row_per_enrolled_learner"] = evaluate_raw_data_rows(frame, enrolled)
        out["dropout_label_varies"] = evaluate_dropout_varies(frame)
    return out


def _result(check_name: str, asset: str, outcome: Outcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check_name,
        passed=outcome.passed,
        severity=outcome.severity,
        description=outcome.description[:2000],
        metadata=outcome.metadata,
    )


def blocking_failures(outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    return {
        n: o for n, o in outcomes.items()
        if not o.passed and o.severity == dg.AssetCheckSeverity.ERROR
    }


def checked_output(
    spec: TableSpec,
    frame: pd.DataFrame,
    *,
    enrolled: pd.DataFrame,
    aggregate: pd.DataFrame | None = None,
    metadata: dict[str, Any] | None = None,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """The end of a warehouse asset's step: check ``frame``, then write it or fail.

    Every check passes or only warns: yields the ``Output`` (the IO manager writes it), then the
    evaluations. A blocking check fails: yields the evaluations and raises ``dg.Failure`` naming
    the table and what failed; no ``Output``, so the stored rows stay as they were.
    """
    outcomes = evaluate_table(spec, frame, enrolled=enrolled, aggregate=aggregate)
    failed = blocking_failures(outcomes)
    if failed:
        for check_name, outcome in outcomes.items():
            yield _result(check_name, spec.name, outcome)
        raise dg.Failure(
            description=(
                f"table {spec.name}: {len(failed)} blocking check(s) failed, nothing written "
                f"(the table keeps its previous rows): "
                + " || ".join(f"{n}: {o.description}" for n, o in failed.items())
            )[:4000],
            metadata={"failed_checks": dg.MetadataValue.json(sorted(failed))},
        )
    yield dg.Output(frame, metadata=metadata or {})
    for check_name, outcome in outcomes.items():
        yield _result(check_name, spec.name, outcome)
