"""One declared schema per warehouse table: the single source of truth.

Each :class:`TableSpec` drives, from the same column list:

* the DDL the IO manager creates (``sqlalchemy_table``),
* the dagster-pandas type that checks every frame an asset returns (``dagster_type``),
* the coercion of incoming frames to the declared dtypes (``coerce_frame``),
* the ``dagster/column_schema`` metadata shown in the UI (``table_schema``).

Table and column names of the ERD (``../shared/seed``) are fixed. Columns marked ``extra=True`` are
additions beyond the ERD that the features in ``raw_data`` need (e.g. H5P opened/finished times).
Time columns that the sources send as decimal seconds (``current_time``, ``duration``) are
``DECIMAL(12,2)`` rather than the ERD's ``int``, so ``498.48`` is not silently truncated.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import dagster as dg
import pandas as pd
import sqlalchemy as sa

ColumnKind = Literal["int", "bigint", "decimal", "varchar", "text", "bool", "datetime", "json"]

PARTITION_COLUMN = "course_id"


class SchemaError(ValueError):
    """A frame does not match its table's declared schema (the message names table and column)."""


_INT_RANGE = (-2.0**31, 2.0**31 - 1)
_BIGINT_RANGE = (-(2.0**63), 2.0**63 - 1)


@dataclass(frozen=True)
class Column:
    """One declared column."""

    name: str
    kind: ColumnKind
    nullable: bool = True
    length: int | None = None  # varchar
    precision: int | None = None  # decimal
    scale: int | None = None  # decimal
    min_value: float | None = None
    max_value: float | None = None
    categories: frozenset[str] | None = None
    description: str = ""
    extra: bool = False  # not in the ERD

    @property
    def pandas_dtype(self) -> str:
        return {
            "int": "Int64",
            "bigint": "Int64",
            "decimal": "float64",
            "varchar": "object",
            "text": "object",
            "bool": "boolean",
            "datetime": "datetime64[ns, UTC]",
            "json": "object",
        }[self.kind]

    @property
    def sql_type_name(self) -> str:
        if self.kind == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        if self.kind == "varchar":
            return f"VARCHAR({self.length})"
        return {
            "int": "INT",
            "bigint": "BIGINT",
            "text": "TEXT",
            "bool": "BOOLEAN",
            "datetime": "DATETIME",
            "json": "JSON",
        }[self.kind]

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The values a numeric column accepts: its declared range within what its SQL type can
        store (INT, BIGINT, DECIMAL(p,s)); (None, None) for other kinds.

        The one source of the range rules: the frame validation (:meth:`TableSpec.validate_frame`),
        the ``value_ranges`` asset check and the dagster-pandas type all derive from it, and the
        payload parsers reject a record whose value falls outside it."""
        if self.kind == "int":
            lo, hi = _INT_RANGE
        elif self.kind == "bigint":
            lo, hi = _BIGINT_RANGE
        elif self.kind == "decimal":
            digits = (self.precision or 10) - (self.scale or 0)
            hi = float(10**digits) - 10.0 ** -(self.scale or 0)
            lo = -hi
        else:
            return None, None
        if self.min_value is not None:
            lo = max(lo, self.min_value)
        if self.max_value is not None:
            hi = min(hi, self.max_value)
        return lo, hi

    @property
    def bounds_text(self) -> str:
        """:attr:`bounds` for messages, e.g. ``[0, 100]`` or ``[1, 2147483647]``."""
        return "[" + ", ".join(
            "-inf" if v is None and i == 0 else "inf" if v is None
            else (str(int(v)) if float(v).is_integer() else f"{v:.{self.scale or 6}f}")
            for i, v in enumerate(self.bounds)
        ) + "]"

    def out_of_range(self, values: pd.Series) -> pd.Series:
        """True where a (numeric) value lies outside :attr:`bounds`; NULL and non-numeric values
        are not out of range."""
        lo, hi = self.bounds
        if lo is None and hi is None:
            return pd.Series(False, index=values.index)
        num = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = pd.Series(False, index=values.index)
        if lo is not None:
            bad |= num < lo
        if hi is not None:
            bad |= num > hi
        return bad.fillna(False).astype(bool)

    def sqlalchemy_type(self) -> sa.types.TypeEngine[Any]:
        if self.kind == "int":
            return sa.Integer()
        if self.kind == "bigint":
            return sa.BigInteger()
        if self.kind == "decimal":
            return sa.Numeric(self.precision, self.scale, asdecimal=True)
        if self.kind == "varchar":
            return sa.String(self.length)
        if self.kind == "text":
            return sa.Text()
        if self.kind == "bool":
            return sa.Boolean(create_constraint=False)
        if self.kind == "datetime":
            return sa.DateTime(timezone=False)
        return sa.JSON()


def _c(name: str, kind: ColumnKind, **kw: Any) -> Column:
    return Column(name=name, kind=kind, **kw)


def _pct(name: str, description: str = "", **kw: Any) -> Column:
    return Column(
        name, "decimal", precision=5, scale=2, min_value=0.0, max_value=100.0,
        description=description, **kw,
    )


def _rate(name: str, description: str) -> Column:
    return Column(
        name, "decimal", precision=6, scale=4, min_value=0.0, max_value=1.0,
        description=description, extra=True,
    )


def _count(name: str, description: str = "", **kw: Any) -> Column:
    return Column(name, "int", min_value=0, description=description, **kw)


USER_ID = _c("user_id", "int", nullable=False, min_value=1, description="Learner id on the MOOC")
COURSE_ID = _c(
    "course_id", "varchar", nullable=False, length=255,
    description="Open edX course key, e.g. course-v1:ORG+COURSE+RUN",
)
FETCHED_AT = _c("fetched_at", "datetime", description="When moocassets fetched the row (UTC)")
CONTENT_ID = _c("content_id", "int", nullable=False, min_value=0, description="H5P content id")


@dataclass(frozen=True)
class TableSpec:
    """A warehouse table: columns, keys and indexes (``id BIGINT AUTO_INCREMENT`` is implicit)."""

    name: str
    description: str
    columns: tuple[Column, ...]
    # course_id first: a partition's rows are contiguous in the key (partition replaces insert
    # and delete sequentially, concurrent writers of different courses rarely meet), and the key
    # doubles as the course_id index. Uniqueness is the ERD's (user_id, course_id) either way.
    unique_key: tuple[str, ...] = ("course_id", "user_id")
    indexes: tuple[tuple[str, ...], ...] = ()
    partition_column: str = PARTITION_COLUMN
    extra_unique: tuple[tuple[str, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column in {self.name}")
        for key in (self.unique_key, *self.indexes, *self.extra_unique):
            missing = set(key) - set(names)
            if missing:
                raise ValueError(f"{self.name}: key columns {sorted(missing)} not declared")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    # ---- SQL -------------------------------------------------------------------------------
    def sqlalchemy_table(self, metadata: sa.MetaData | None = None) -> sa.Table:
        md = metadata if metadata is not None else sa.MetaData()
        cols: list[sa.SchemaItem] = [
            sa.Column(
                "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                primary_key=True, autoincrement=True,
            )
        ]
        for c in self.columns:
            cols.append(sa.Column(c.name, c.sqlalchemy_type(), nullable=c.nullable, comment=None))
        cols.append(sa.UniqueConstraint(*self.unique_key, name=f"uq_{self.name}_key"))
        for i, key in enumerate(self.extra_unique):
            cols.append(sa.UniqueConstraint(*key, name=f"uq_{self.name}_{i}_{'_'.join(key)}"[:64]))
        for key in self.indexes:
            cols.append(sa.Index(f"ix_{self.name}_{'_'.join(key)}"[:64], *key))
        return sa.Table(
            self.name, md, *cols,
            mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
            comment=self.description[:1000],
        )

    # ---- Dagster ---------------------------------------------------------------------------
    @cached_property
    def table_schema(self) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=c.name,
                    type=c.sql_type_name,
                    description=(c.description + (" (beyond the ERD)" if c.extra else "")).strip(),
                    constraints=dg.TableColumnConstraints(
                        nullable=c.nullable,
                        unique=False,
                        other=[
                            *([f">= {c.min_value:g}"] if c.min_value is not None else []),
                            *([f"<= {c.max_value:g}"] if c.max_value is not None else []),
                        ],
                    ),
                )
                for c in self.columns
            ],
            constraints=dg.TableConstraints(other=[f"UNIQUE ({', '.join(self.unique_key)})"]),
        )

    @cached_property
    def dagster_type(self) -> dg.DagsterType:
        return _build_dagster_type(self)

    # ---- frames ----------------------------------------------------------------------------
    def empty_frame(self) -> pd.DataFrame:
        return pd.DataFrame({c.name: pd.Series(dtype=c.pandas_dtype) for c in self.columns})

    def coerce_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return ``frame`` with exactly the declared columns, in order, with the declared dtypes.

        Raises :class:`SchemaError` naming the table and column when a column is missing or a value
        cannot be converted. Extra columns are dropped. Datetimes become tz-aware UTC (naive = UTC),
        in whole seconds as the DATETIME columns store them.
        """
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise SchemaError(f"table {self.name}: missing required column(s) {missing}")
        out: dict[str, pd.Series] = {}
        for c in self.columns:
            try:
                out[c.name] = _coerce_series(frame[c.name], c)
            except SchemaError:
                raise
            except Exception as exc:
                raise SchemaError(
                    f"table {self.name}, column {c.name} ({c.sql_type_name}): {exc}"
                ) from exc
        result = pd.DataFrame(out, index=frame.index).reset_index(drop=True)
        return result

    def validate_frame(self, frame: pd.DataFrame) -> None:
        """Constraint check beyond dtypes: non-null, ranges, categories, unique key."""
        for c in self.columns:
            s = frame[c.name]
            if not c.nullable and s.isna().any():
                rows = list(s.index[s.isna()][:5])
                raise SchemaError(f"table {self.name}, column {c.name}: NULL in rows {rows}")
            bad = c.out_of_range(s)
            if bad.any():
                sample = s[bad].head(5).tolist()
                raise SchemaError(
                    f"table {self.name}, column {c.name}: values out of range "
                    f"{c.bounds_text}: {sample}"
                )
            if c.categories is not None:
                vals = s.dropna()
                bad_vals = sorted(set(vals) - c.categories)
                if bad_vals:
                    raise SchemaError(
                        f"table {self.name}, column {c.name}: unexpected values {bad_vals[:5]}"
                    )
        dup = frame.duplicated(list(self.unique_key), keep=False)
        if dup.any():
            sample = (
                frame.loc[dup, list(self.unique_key)].drop_duplicates().head(5)
                .to_dict(orient="records")
            )
            raise SchemaError(
                f"table {self.name}: duplicate key ({', '.join(self.unique_key)}): {sample}"
            )


def _coerce_series(s: pd.Series, c: Column) -> pd.Series:
    if c.kind in ("int", "bigint"):
        if s.dtype == "Int64":
            return s
        if s.dtype == object:
            s = pd.to_numeric(s, errors="raise")
        if pd.api.types.is_float_dtype(s):
            frac = s.dropna() % 1
            if (frac != 0).any():
                raise SchemaError(
                    f"column {c.name}: non-integer values {s.dropna()[frac != 0].head(3).tolist()}"
                )
        return s.astype("Int64")
    if c.kind == "decimal":
        num = pd.to_numeric(s, errors="raise").astype("float64")
        return num.round(c.scale or 0)
    if c.kind in ("varchar", "text"):
        def _to_str(v: Any) -> Any:
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                return None
            return v if isinstance(v, str) else str(v)

        obj = s if s.dtype == object else s.astype(object)
        if pd.api.types.infer_dtype(obj, skipna=True) in ("string", "empty"):
            out = obj.where(obj.notna(), None)  # already text: only the missing become None
        else:
            out = obj.map(_to_str)
        if c.kind == "varchar" and c.length is not None:
            lens = out.dropna().str.len()
            if (lens > c.length).any():
                raise SchemaError(
                    f"column {c.name}: value longer than VARCHAR({c.length}) "
                    f"(length {int(lens.max())})"
                )
        return out.astype(object)
    if c.kind == "bool":
        if s.dtype == "boolean":
            return s
        if s.dtype == object:
            s = s.map(lambda v: None if v is None or v is pd.NA else bool(v))
        return s.astype("boolean")
    if c.kind == "datetime":
        # whole seconds, as the DATETIME columns store them: the frame is what a read gives back
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            return s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").dt.floor("s")
        parsed = pd.to_datetime(s, utc=True, errors="raise", format="mixed")
        return parsed.astype("datetime64[ns, UTC]").dt.floor("s")
    # json: keep Python objects, but make sure they serialize
    def _check_json(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, str):
            json.loads(v)
            return json.loads(v)
        json.dumps(v)
        return v

    return s.astype(object).map(_check_json).astype(object)


def _build_dagster_type(spec: TableSpec) -> dg.DagsterType:
    # dagster-pandas' column API is marked beta in 1.13; it is the declared way to type frames here.
    from dagster_pandas import PandasColumn, create_dagster_pandas_dataframe_type

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=dg.BetaWarning)
        cols: list[Any] = []
        for c in spec.columns:
            nn = not c.nullable
            ign = c.nullable
            lo, hi = c.bounds
            lo = -float("inf") if lo is None else lo
            hi = float("inf") if hi is None else hi
            if c.kind in ("int", "bigint"):
                cols.append(PandasColumn.integer_column(
                    c.name, min_value=lo, max_value=hi, non_nullable=nn, ignore_missing_vals=ign,
                ))
            elif c.kind == "decimal":
                cols.append(PandasColumn.float_column(
                    c.name, min_value=lo, max_value=hi, non_nullable=nn, ignore_missing_vals=ign,
                ))
            elif c.kind == "bool":
                cols.append(PandasColumn.boolean_column(c.name, non_nullable=nn))
            elif c.kind == "datetime":
                cols.append(PandasColumn.datetime_column(
                    c.name, tz="UTC", non_nullable=nn, ignore_missing_vals=ign
                ))
            elif c.categories is not None:
                cols.append(PandasColumn.categorical_column(
                    c.name, categories=set(c.categories), non_nullable=nn,
                    ignore_missing_vals=ign,
                ))
            elif c.kind in ("varchar", "text"):
                cols.append(PandasColumn.string_column(c.name, non_nullable=nn))
            else:
                cols.append(PandasColumn.exists(c.name, non_nullable=nn))
        return create_dagster_pandas_dataframe_type(
            name=f"{''.join(p.title() for p in spec.name.split('_'))}Frame",
            description=spec.description,
            columns=cols,
        )


# =============================================================================================
# The ten ERD tables
# =============================================================================================

ENROLLMENTS = TableSpec(
    name="enrollments",
    description="One row per learner enrolled in the course (MOOC M1).",
    columns=(
        COURSE_ID,
        USER_ID,
        _c("username", "varchar", length=150),
        _c("email", "varchar", length=254),
        _c("full_name", "varchar", length=255),
        _c("enrollment_id", "int", min_value=0, description="Open edX enrollment id (unique)"),
        _c("mode", "varchar", length=32,
           categories=frozenset({"audit", "verified", "honor", "professional", "no-id-professional",
                                 "credit", "masters", "executive-education"})),
        _c("is_active", "bool"),
        _c("created", "datetime", description="Enrollment time (UTC)"),
        _c("all_attributes", "json", description="student_info and all_attributes as sent"),
        _c("fetched_at", "datetime", extra=True, description="When moocassets fetched the row"),
    ),
    indexes=(("user_id",),),
    extra_unique=(("enrollment_id",),),
)

MOOC_GRADES = TableSpec(
    name="mooc_grades",
    description="One grade row per learner (MOOC M4 export).",
    columns=(
        USER_ID,
        COURSE_ID,
        _c("percent_grade", "decimal", precision=7, scale=4, min_value=0.0, max_value=1.0,
           description="Grade as a fraction 0–1"),
        _pct("grade_percentage", "Grade 0–100"),
        _c("letter_grade", "varchar", length=32, description="Letter or Pass; NULL when none"),
        _c("is_passed", "bool", description="The only ground truth of success"),
        FETCHED_AT,
    ),
    indexes=(("user_id",), ("grade_percentage",), ("fetched_at",),
             ("is_passed",)),
)

MOOC_PROGRESS = TableSpec(
    name="mooc_progress",
    description="One progress row per learner (MOOC M5 export).",
    columns=(
        USER_ID,
        COURSE_ID,
        _count("total_blocks"),
        _count("completed_blocks"),
        _pct("progress_percent", "completed_blocks / total_blocks × 100, else completion_rate"),
        _c("current_chapter", "varchar", length=512),
        _c("current_section", "varchar", length=512),
        _c("current_unit", "varchar", length=512),
        _pct("completion_rate", "Completion 0–100 as the MOOC reports it"),
        _c("last_activity", "datetime", description="Latest MOOC activity (UTC)"),
        _c("fetched_at", "datetime", extra=True),
    ),
    indexes=(("user_id",), ("completion_rate",)),
)

MOOC_DISCUSSIONS = TableSpec(
    name="mooc_discussions",
    description="Forum activity per learner (MOOC M6); learners without activity are absent.",
    columns=(
        USER_ID,
        COURSE_ID,
        _count("threads_count"),
        _count("comments_count"),
        _count("total_interactions"),
        _count("questions_count"),
        _count("total_upvotes"),
        FETCHED_AT,
    ),
    indexes=(("user_id",), ("total_interactions",), ("fetched_at",)),
)

H5P_SCORES = TableSpec(
    name="h5p_scores",
    description="One row per learner and attempted H5P content (H5P H1).",
    columns=(
        USER_ID,
        COURSE_ID,
        CONTENT_ID,
        _c("content_title", "varchar", length=512),
        _c("score", "int", min_value=0),
        _c("max_score", "int", min_value=0),
        _pct("percentage"),
        _c("opened_at", "datetime", extra=True,
           description="When first opened, if the source sent an epoch time"),
        _c("finished_at", "datetime", extra=True,
           description="When finished, if the source sent an epoch time"),
        _c("is_finished", "bool", extra=True, description="finished > 0 (flag or time)"),
        _c("time_spent", "decimal", precision=12, scale=2, min_value=0.0, extra=True,
           description="Seconds spent"),
        _c("folder_id", "int", extra=True),
        _c("folder_name", "varchar", length=512, extra=True),
        _c("fetched_at", "datetime", extra=True),
    ),
    unique_key=("course_id", "user_id", "content_id"),
    indexes=(("user_id",),),
)

H5P_SCORES_SUMMARY = TableSpec(
    name="h5p_scores_summary",
    description="Per-learner aggregate of h5p_scores (attempted contents only).",
    columns=(
        USER_ID,
        COURSE_ID,
        _count("total_contents", "Attempted contents"),
        _count("completed_contents", "Finished contents"),
        _c("total_score", "int", min_value=0),
        _c("total_max_score", "int", min_value=0),
        _pct("overall_percentage", "total_score / total_max_score × 100"),
        _c("total_time_spent", "decimal", precision=14, scale=2, min_value=0.0, extra=True),
        _c("last_activity_at", "datetime", extra=True,
           description="Latest plausible opened/finished time"),
    ),
    indexes=(("user_id",),),
)

VIDEO_STATUSES = frozenset({"completed", "in_progress", "started", "not_started"})

VIDEO_PROGRESS = TableSpec(
    name="video_progress",
    description="One row per learner and opened video (H5P H2).",
    columns=(
        USER_ID,
        COURSE_ID,
        CONTENT_ID,
        _c("content_title", "varchar", length=512),
        _pct("progress_percent"),
        _c("current_time", "decimal", precision=12, scale=2, min_value=0.0,
           description="Seconds watched up to (DECIMAL: sources send 498.48)"),
        _c("duration", "decimal", precision=12, scale=2, min_value=0.0, description="Seconds"),
        _c("status", "varchar", length=16, categories=VIDEO_STATUSES),
        _c("folder_id", "int", extra=True),
        _c("folder_name", "varchar", length=512, extra=True),
        _c("fetched_at", "datetime", extra=True),
    ),
    unique_key=("course_id", "user_id", "content_id"),
    indexes=(("user_id",),),
)

VIDEO_PROGRESS_SUMMARY = TableSpec(
    name="video_progress_summary",
    description="Per-learner aggregate of video_progress (opened videos only).",
    columns=(
        USER_ID,
        COURSE_ID,
        _count("total_videos", "Videos opened"),
        _count("completed_videos"),
        _count("in_progress_videos", "status in_progress or started"),
        _c("total_duration", "decimal", precision=14, scale=2, min_value=0.0),
        _c("total_watched_time", "decimal", precision=14, scale=2, min_value=0.0),
        _pct("average_progress", extra=True),
    ),
    indexes=(("user_id",),),
)

DASHBOARD_SUMMARY = TableSpec(
    name="dashboard_summary",
    description="Per-learner dashboard (H5P H3 combined progress, H4 dashboard as fallback).",
    columns=(
        USER_ID,
        COURSE_ID,
        _pct("overall_completion"),
        _count("total_items"),
        _count("completed_items"),
        _count("h5p_total_contents"),
        _count("video_total_videos"),
        _count("h5p_completed_contents", extra=True),
        _count("video_completed_videos", extra=True),
        _count("h5p_contents_in_course", extra=True,
               description="H5P items that exist in the course (total_contents_in_course_folders)"),
        _c("h5p_total_time_spent", "decimal", precision=14, scale=2, min_value=0.0, extra=True),
        _c("source", "varchar", length=8, categories=frozenset({"H3", "H4"}), extra=True,
           description="Which endpoint answered"),
        _c("fetched_at", "datetime", extra=True),
    ),
    indexes=(("user_id",),),
)

RAW_DATA = TableSpec(
    name="raw_data",
    description=(
        "One row of features, the is_dropout label and the dropout risk per learner and course, "
        "as of `as_of` (see spec/raw-data.md)."
    ),
    columns=(
        USER_ID,
        COURSE_ID,
        _c("enrollment_date", "datetime"),
        _pct("mooc_grade_percentage"),
        _c("mooc_letter_grade", "varchar", length=32),
        _c("mooc_is_passed", "bool"),
        _pct("progress_percent"),
        _c("current_chapter", "varchar", length=512),
        _c("current_section", "varchar", length=512),
        _c("current_unit", "varchar", length=512),
        _pct("mooc_completion_rate"),
        _count("h5p_total_contents"),
        _count("video_total_videos"),
        _count("discussion_threads_count"),
        _count("discussion_comments_count"),
        _count("discussion_total_interactions"),
        _c("is_dropout", "bool", nullable=False),
        _c("dropout_risk_score", "decimal", precision=6, scale=5, min_value=0.0, max_value=1.0),
        # recommended features (spec/raw-data.md)
        _c("as_of", "datetime", nullable=False, extra=True),
        _c("last_activity_at", "datetime", extra=True),
        _c("days_since_last_activity", "int", min_value=0, extra=True),
        _c("weeks_since_enrollment", "int", min_value=0, extra=True),
        _c("course_elapsed_fraction", "decimal", precision=6, scale=4, min_value=0.0,
           max_value=1.0, extra=True),
        _count("h5p_completed_contents", extra=True),
        _rate("h5p_completion_rate", "completed / H5P contents that exist in the course"),
        _pct("h5p_overall_percentage", extra=True),
        _c("h5p_total_time_spent", "decimal", precision=14, scale=2, min_value=0.0, extra=True),
        _count("video_completed_videos", extra=True),
        _rate("video_completion_rate", "completed videos / videos (course total where known)"),
        _rate("video_watch_rate", "watched time / duration of opened videos"),
        _count("discussion_questions_count", extra=True),
        _count("discussion_total_upvotes", extra=True),
        _c("pace_gap", "decimal", precision=7, scale=2, extra=True,
           description="mooc_completion_rate − 100 × course_elapsed_fraction"),
        _c("dropout_risk_reasons", "text", extra=True),
        _c("dropout_risk_model", "varchar", length=64, extra=True),
    ),
    indexes=(("user_id",), ("is_dropout",)),
)

SCORE_COLUMNS: tuple[str, ...] = (
    "dropout_risk_score", "dropout_risk_reasons", "dropout_risk_model"
)
"""The columns of ``raw_data`` that the risk model fills; everything else is features and label."""

RAW_DATA_HISTORY = TableSpec(
    name="raw_data_history",
    description=(
        "Snapshots of raw_data's features and is_dropout label, one per learner, course and "
        "as_of: the training data of the dropout risk model (docs/RISK.md)."
    ),
    columns=tuple(c for c in RAW_DATA.columns if c.name not in SCORE_COLUMNS),
    unique_key=("course_id", "as_of", "user_id"),  # also serves the scoped DELETE
    indexes=(("user_id",), ("as_of",)),
)

LEARNER_FEATURES = RAW_DATA_HISTORY
"""The features and label of one course refresh (the ``learner_features`` frame) have exactly
the columns of a ``raw_data_history`` snapshot."""

WAREHOUSE_TABLES: tuple[TableSpec, ...] = (
    ENROLLMENTS,
    MOOC_GRADES,
    MOOC_PROGRESS,
    MOOC_DISCUSSIONS,
    H5P_SCORES,
    H5P_SCORES_SUMMARY,
    VIDEO_PROGRESS,
    VIDEO_PROGRESS_SUMMARY,
    DASHBOARD_SUMMARY,
    RAW_DATA,
)
"""The ten ERD tables."""

TABLES: Mapping[str, TableSpec] = {t.name: t for t in (*WAREHOUSE_TABLES, RAW_DATA_HISTORY)}
"""Every table the warehouse IO manager writes, by name."""


def table_spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no declared schema for table {name!r}") from None


def frame_from_records(spec: TableSpec, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a coerced frame from row dicts (missing keys become NULL)."""
    rows = list(records)
    if not rows:
        return spec.empty_frame()
    frame = pd.DataFrame.from_records(rows, columns=spec.column_names)
    return spec.coerce_frame(frame)
