"""The warehouse IO manager: per-partition atomic replace of declared tables in MySQL/MariaDB.

Every asset is stored in the table named by the last part of its asset key, with the columns, keys
and dtypes declared in :mod:`moocassets.schema` (``table_spec(name)``).

Write (``handle_output``)
    1. ``spec.coerce_frame`` + ``spec.validate_frame`` and a check that every row's ``course_id``
       belongs to the partitions being written -- all before anything is deleted.
    2. DDL outside the write transaction: ``CREATE TABLE`` if missing, else compare the table with
       the declaration (cached per process): new declared columns are added with
       ``ALTER TABLE ... ADD COLUMN`` (as NULL-able, logged), missing declared secondary indexes are
       created; an incompatible difference (changed or narrowed type, a declared nullable column
       that is NOT NULL in the database, a declared unique key missing, an undeclared NOT NULL
       column without default) raises :class:`IncompatibleSchemaError` naming table and column and
       changes nothing.
    3. Partitioned assets: one InnoDB transaction (REPEATABLE READ) per write:
       ``DELETE ... WHERE course_id IN :keys`` then the bulk insert, then COMMIT. Readers never
       see a half-written or empty partition. The whole transaction is retried on deadlock
       (1213) and lock-wait timeout (1205), ``deadlock_retries`` times, with a log line per retry.
       Unpartitioned assets: load into a staging table (``CREATE TABLE ... LIKE``), then
       ``RENAME TABLE t TO old, staging TO t`` (atomic), then drop the old table. SQLite: DELETE +
       INSERT in one transaction.
    4. Bulk insert on MySQL: ``LOAD DATA LOCAL INFILE`` of a tab-separated temp file whose columns
       are formatted vectorized (numpy/pandas, not per value in Python, except JSON and strings
       that need escaping). Files are generated in a background thread, chunk by chunk, while the
       previous chunk loads, and are always deleted. After each LOAD the affected row count and
       ``SHOW WARNINGS`` are checked: any skipped, truncated or rounded value fails the write (with
       LOCAL, MySQL turns duplicate-key and truncation errors into warnings). When the server or
       client refuses LOCAL INFILE (errors 1148, 3948, 4166, 2068) the IO manager logs it once and
       falls back, for the engine's lifetime, to ``executemany`` INSERT (PyMySQL rewrites it to
       multi-row INSERTs of ~1 MB). SQLite always uses executemany.

Load (``load_input``)
    Within one run, a partition this run has just written is served from memory: the IO manager
    keeps the frame it wrote (exactly the coerced rows it committed; :class:`RunFrameCache`, the
    last two runs of the process) and hands a copy to the downstream steps of the same run
    instead of reading the rows back. A run that only reads (say ``raw_data`` alone) reads MySQL.
    Otherwise: one or a few partitions: ``SELECT ... WHERE course_id IN :keys`` (bound,
    expanding). All partitions (an unpartitioned downstream asset, or every registered
    partition): a plain ``SELECT`` without an IN list. The frame is coerced by the spec (NULL
    stays NULL, decimals rounded to their scale, datetimes tz-aware UTC, booleans ``boolean``,
    JSON parsed). A missing table raises :class:`TableNotMaterializedError` naming the table and
    partitions.

MySQL 8.x versus MariaDB 10.11 (only SQL accepted by both is used: no ``INSERT ... AS new`` row
alias, no ``RETURNING``, no ``CREATE ... IF NOT EXISTS`` on indexes):

* ``local_infile`` is OFF by default on MySQL 8 servers (ON on MariaDB): the server answers error
  3948 (MySQL) / 4166 (MariaDB) / 1148 and the IO manager falls back to INSERT (logged). Set
  ``local_infile=ON`` on the server, or ``use_load_data=False``, to choose explicitly.
* ``JSON`` is a real binary type on MySQL 8 (reflected as ``JSON``; values are normalised, key
  order may change). On MariaDB it is an alias of ``LONGTEXT`` with a ``json_valid`` CHECK
  (reflected as ``LONGTEXT``); both are accepted for a declared json column.
* MySQL 8 deprecates integer display widths (``INT(11)`` → ``INT``) and ``BOOLEAN`` is
  ``TINYINT(1)`` on both; the comparison ignores display widths.
* MySQL 8.0.30+ may use ``utf8mb3`` as the name of ``utf8``; the tables are created ``utf8mb4``
  explicitly and the connection charset is ``utf8mb4``.
* ``RENAME TABLE a TO b, c TO a`` is atomic on both. DDL commits implicitly on both, so DDL is never
  issued inside a write transaction.
* MySQL 8 reports the LOAD DATA warnings the same way (``SHOW WARNINGS``); MariaDB adds note 1265
  also for rounded decimals -- any note fails the write on both.

``LOAD DATA LOCAL`` lets the server ask the client for files: only use it against a trusted server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import dagster as dg
import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from moocassets.io.engine import database_name, is_mysql, make_engine, safe_url
from moocassets.run_scoped import RunScoped
from moocassets.schema import Column, SchemaError, TableSpec, table_spec

__all__ = [
    "IncompatibleSchemaError",
    "StrayPartitionRowsError",
    "TableNotMaterializedError",
    "WarehouseError",
    "WarehouseIOManager",
    "WarehouseWriteError",
    "WriteEvent",
    "WriteOptions",
    "WriteResult",
    "count_rows",
    "ensure_table",
    "prepare_frame",
    "read_table",
    "table_exists",
    "write_table",
]

RETRYABLE_ERRORS = {
    1213: "deadlock",
    1205: "lock wait timeout",
    # InnoDB reports a deadlock/timeout while LOAD DATA waits for the table's AUTO-INC lock
    # (innodb_autoinc_lock_mode=1, the MariaDB default) as 1467; the transaction is rolled back
    1467: "AUTO-INC lock conflict",
}
LOCAL_INFILE_REFUSED = {1148, 2068, 3948, 4166}
_TEXT_KINDS = ("varchar", "text", "json")
_NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_NEEDS_ESCAPE = ("\\", "\t", "\n", "\r", "\0")


# =============================================================================================
# Errors, options, results
# =============================================================================================


class WarehouseError(RuntimeError):
    """Base class of the warehouse errors (messages never contain a password)."""


class WarehouseWriteError(WarehouseError):
    """A write failed; its transaction was rolled back and the previous rows are intact."""


class IncompatibleSchemaError(WarehouseError):
    """The existing table differs incompatibly from its declaration (nothing was changed)."""


class TableNotMaterializedError(WarehouseError):
    """The table to load does not exist: the upstream asset was never materialized."""


class StrayPartitionRowsError(SchemaError):
    """Rows whose course_id is not among the partitions being written."""


class LogLike(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


_default_log = logging.getLogger("moocassets.io")


@dataclass(frozen=True)
class WriteEvent:
    """Passed to the optional write hook (a test seam) at fixed points of a write transaction."""

    stage: Literal["after_delete", "before_commit"]
    table: str
    partition_keys: tuple[str, ...] | None
    attempt: int
    connection_id: int | None  # MySQL CONNECTION_ID() of the writing connection


WriteHook = Callable[[WriteEvent], None]


@dataclass(frozen=True)
class WriteOptions:
    use_load_data: bool = True
    serialize_writes: bool = True  # GET_LOCK per table: writers of one table take turns
    write_lock_timeout: int = 900
    insert_batch_rows: int = 10_000
    load_data_chunk_rows: int = 20_000
    lock_wait_timeout: int = 50
    deadlock_retries: int = 3
    retry_backoff_seconds: float = 0.5


@dataclass
class WriteResult:
    table: str
    qualified_name: str
    rows_written: int
    table_row_count: int
    method: str
    duration_s: float
    retries: int = 0
    columns_added: list[str] = field(default_factory=list)
    frame: pd.DataFrame | None = field(default=None, repr=False)
    """The coerced rows that were written (what a read of them gives back)."""


# =============================================================================================
# Frame preparation and formatting
# =============================================================================================


def prepare_frame(
    spec: TableSpec, frame: pd.DataFrame, partition_keys: Sequence[str] | None
) -> pd.DataFrame:
    """Coerce and validate ``frame``; check its course ids against ``partition_keys``.

    Raises :class:`SchemaError` (or :class:`StrayPartitionRowsError`) before any database work.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"table {spec.name}: the warehouse IO manager stores pandas DataFrames, "
            f"got {type(frame).__name__}"
        )
    coerced = spec.coerce_frame(frame)
    spec.validate_frame(coerced)
    if partition_keys is not None:
        col = spec.partition_column
        stray = sorted(set(coerced[col].dropna().unique()) - set(partition_keys))
        if stray:
            shown = ", ".join(repr(s) for s in stray[:10])
            raise StrayPartitionRowsError(
                f"table {spec.name}: rows with {col} not among the partitions being written "
                f"({len(partition_keys)} partition(s)): {shown}"
                + (f" and {len(stray) - 10} more" if len(stray) > 10 else "")
            )
    return coerced


def _decimal_strings(values: np.ndarray, scale: int) -> np.ndarray:
    out = values.astype(str).astype(object)
    # numpy's shortest repr switches to exponent notation below 1e-4; rare, format those exactly
    tiny = (np.abs(values) < 1e-4) & (values != 0)
    if tiny.any():
        fmt = f"%.{scale}f"
        out[tiny] = [fmt % v for v in values[tiny]]
    return out


def _native_column(s: pd.Series, c: Column, *, iso_t: bool) -> np.ndarray:
    """Object array of DB-ready strings (None = NULL), computed column-wise."""
    mask = s.isna().to_numpy()
    if c.kind in ("int", "bigint"):
        out = s.to_numpy(dtype="int64", na_value=0).astype(str).astype(object)
    elif c.kind == "decimal":
        out = _decimal_strings(s.to_numpy(dtype="float64", na_value=0.0), c.scale or 0)
    elif c.kind == "bool":
        out = np.where(s.to_numpy(dtype=bool, na_value=False), "1", "0").astype(object)
    elif c.kind == "datetime":
        naive = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]")
        out = np.datetime_as_string(naive, unit="s").astype(object)
        if not iso_t:
            out = np.array([v.replace("T", " ") for v in out], dtype=object)
    elif c.kind == "json":
        vals = s.to_numpy(dtype=object)
        out = np.empty(len(vals), dtype=object)
        for i, v in enumerate(vals):
            if not mask[i]:
                try:
                    out[i] = json.dumps(v, ensure_ascii=False, allow_nan=False)
                except ValueError as exc:
                    raise SchemaError(f"column {c.name}: value not valid JSON ({exc})") from exc
    else:
        out = s.to_numpy(dtype=object).copy()
    if mask.any():
        out[mask] = None
    return out


def native_columns(
    spec: TableSpec, frame: pd.DataFrame, *, iso_t: bool = True
) -> list[np.ndarray]:
    return [_native_column(frame[c.name], c, iso_t=iso_t) for c in spec.columns]


def _escape_for_load_data(col: np.ndarray) -> np.ndarray:
    nonnull = [v for v in col if v is not None]
    if not nonnull:
        return col
    joined = "".join(nonnull)
    if not any(ch in joined for ch in _NEEDS_ESCAPE):
        return col
    return np.array(
        [v.translate(_ESCAPES) if v is not None else None for v in col], dtype=object
    )


def load_data_bytes(spec: TableSpec, frame: pd.DataFrame) -> bytes:
    """The rows of a coerced frame as MySQL's default LOAD DATA text format, UTF-8."""
    if frame.empty:
        return b""
    cols = native_columns(spec, frame, iso_t=True)
    for i, c in enumerate(spec.columns):
        col = cols[i]
        if c.kind in _TEXT_KINDS:
            col = _escape_for_load_data(col)
        nulls = pd.isna(col)
        if nulls.any():
            col = col.copy()
            col[nulls] = _NULL
        cols[i] = col
    lines = "\n".join(map("\t".join, zip(*(c.tolist() for c in cols), strict=True)))
    return (lines + "\n").encode("utf-8")


# =============================================================================================
# DDL: create, verify, evolve
# =============================================================================================

_VERIFIED: set[tuple[str, int, str, int]] = set()
_VERIFIED_LOCK = threading.Lock()
_NO_LOCAL_INFILE: set[tuple[str, int]] = set()


def _engine_key(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True) + f"#{id(engine)}"


def _spec_fingerprint(spec: TableSpec) -> int:
    return hash(
        (
            tuple((c.name, c.sql_type_name, c.nullable) for c in spec.columns),
            spec.unique_key,
            spec.extra_unique,
            spec.indexes,
        )
    )


def _q(engine: sa.Engine | sa.Connection, name: str) -> str:
    return engine.dialect.identifier_preparer.quote_identifier(name)


def _db_type_signature(t: Any) -> str:
    name = type(t).__name__.upper()
    if name == "TINYINT" and getattr(t, "display_width", None) == 1:
        return "BOOL"
    if name == "BOOLEAN":
        return "BOOL"
    if name in ("INTEGER", "INT"):
        return "INT"
    if name in ("DECIMAL", "NUMERIC"):
        return f"DECIMAL({t.precision},{t.scale})"
    if name in ("VARCHAR", "NVARCHAR", "STRING"):
        return f"VARCHAR({t.length})"
    return name


def _declared_signatures(c: Column) -> set[str]:
    if c.kind == "bool":
        return {"BOOL"}
    if c.kind == "json":
        return {"JSON", "LONGTEXT"}  # MariaDB: JSON is LONGTEXT + CHECK json_valid
    return {c.sql_type_name}


def _reset_verification(engine: sa.Engine, table: str) -> None:
    with _VERIFIED_LOCK:
        for key in [k for k in _VERIFIED if k[0] == _engine_key(engine) and k[2] == table]:
            _VERIFIED.discard(key)


def table_exists(engine: sa.Engine, table: str) -> bool:
    with engine.connect() as conn:
        return sa.inspect(conn).has_table(table)


def ensure_table(engine: sa.Engine, spec: TableSpec, log: LogLike = _default_log) -> list[str]:
    """Create the table if missing, else verify and evolve it. Returns the columns added.

    Runs outside any write transaction (MySQL DDL commits implicitly). Cached per process.
    """
    key = (_engine_key(engine), os.getpid(), spec.name, _spec_fingerprint(spec))
    if key in _VERIFIED:
        return []
    qualified = f"{database_name(engine)}.{spec.name}"
    added: list[str] = []
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        if not insp.has_table(spec.name):
            spec.sqlalchemy_table().create(conn, checkfirst=True)
            conn.commit()
            log.info(f"created table {qualified}")
        else:
            db_cols = {c["name"]: c for c in insp.get_columns(spec.name)}
            problems: list[str] = []
            to_add: list[Column] = []
            for c in spec.columns:
                db = db_cols.get(c.name)
                if db is None:
                    to_add.append(c)
                    continue
                sig = _db_type_signature(db["type"])
                if sig not in _declared_signatures(c):
                    problems.append(
                        f"column {c.name}: database type {sig}, declared {c.sql_type_name}"
                    )
                elif c.nullable and not db["nullable"]:
                    problems.append(
                        f"column {c.name}: NOT NULL in the database, nullable in the declaration"
                    )
            declared = set(spec.column_names) | {"id"}
            for name, db in db_cols.items():
                if name in declared:
                    continue
                if not db["nullable"] and db.get("default") is None and not db.get(
                    "autoincrement"
                ):
                    problems.append(
                        f"column {name}: undeclared, NOT NULL without default in the database"
                    )
            uniques = {frozenset(u["column_names"]) for u in insp.get_unique_constraints(spec.name)}
            indexes = insp.get_indexes(spec.name)
            uniques |= {frozenset(i["column_names"]) for i in indexes if i.get("unique")}
            for ukey in (spec.unique_key, *spec.extra_unique):
                if frozenset(ukey) not in uniques:
                    problems.append(f"unique key ({', '.join(ukey)}): missing in the database")
            if problems:
                raise IncompatibleSchemaError(
                    f"table {qualified} is incompatible with its declared schema (nothing was "
                    f"changed; migrate it by hand): " + "; ".join(problems)
                )
            for c in to_add:
                ddl = c.sqlalchemy_type().compile(dialect=engine.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {_q(conn, spec.name)} ADD COLUMN {_q(conn, c.name)} {ddl} NULL"
                )
                conn.commit()
                added.append(c.name)
                log.info(f"schema evolution: added column {c.name} {ddl} NULL to {qualified}")
            have = {tuple(i["column_names"]) for i in indexes}
            for idx in spec.sqlalchemy_table().indexes:
                cols = tuple(col.name for col in idx.columns)
                if cols not in have:
                    idx.create(conn)
                    conn.commit()
                    log.info(f"schema evolution: created index {idx.name} on {qualified}")
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)
    return added


# =============================================================================================
# Write
# =============================================================================================


def _mysql_error_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


class _ChunkFiles:
    """LOAD DATA temp files, generated chunk by chunk in a background thread; always deleted."""

    def __init__(self, spec: TableSpec, frame: pd.DataFrame, chunk_rows: int) -> None:
        self._paths: list[str] = []
        self._lock = threading.Lock()
        bounds = list(range(0, max(len(frame), 1), max(chunk_rows, 1)))
        self.chunks: list[tuple[int, int]] = [(b, min(b + chunk_rows, len(frame))) for b in bounds]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-data-csv")
        self.futures: list[Future[tuple[str, int]]] = [
            self._pool.submit(self._write, spec, frame.iloc[a:b]) for a, b in self.chunks
        ]

    def _write(self, spec: TableSpec, part: pd.DataFrame) -> tuple[str, int]:
        fd, path = tempfile.mkstemp(prefix="moocassets-load-", suffix=".tsv")
        with self._lock:
            self._paths.append(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(load_data_bytes(spec, part))
        return path, len(part)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for p in self._paths:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            self._paths.clear()


def _load_data(
    conn: sa.Connection, table: str, spec: TableSpec, files: _ChunkFiles
) -> int:
    cols = ", ".join(_q(conn, c) for c in spec.column_names)
    sql = (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {_q(conn, table)} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
        f"({cols})"
    )
    total = 0
    for fut in files.futures:
        path, expected = fut.result()
        if expected == 0:
            continue
        result = conn.exec_driver_sql(sql, (path,))
        warnings = conn.exec_driver_sql("SHOW WARNINGS LIMIT 5").all()
        if warnings or result.rowcount != expected:
            shown = "; ".join(f"{w[0]} {w[1]}: {w[2]}" for w in warnings)
            raise WarehouseWriteError(
                f"LOAD DATA into {table} loaded {result.rowcount} of {expected} rows"
                + (f" with warnings: {shown}" if shown else "")
                + " (rolled back)"
            )
        total += expected
    return total


def _insert_many(
    conn: sa.Connection, table: str, spec: TableSpec, frame: pd.DataFrame, batch: int
) -> int:
    if frame.empty:
        return 0
    sqlite = conn.dialect.name == "sqlite"
    cols = native_columns(spec, frame, iso_t=not sqlite)
    ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {_q(conn, table)} ({', '.join(_q(conn, c) for c in spec.column_names)}) "
        f"VALUES ({', '.join([ph] * len(cols))})"
    )
    rows = list(zip(*(c.tolist() for c in cols), strict=True))
    for start in range(0, len(rows), batch):
        conn.exec_driver_sql(sql, rows[start : start + batch])
    return len(rows)


@contextmanager
def _maybe_files(
    use: bool, spec: TableSpec, frame: pd.DataFrame, chunk_rows: int
) -> Iterator[_ChunkFiles | None]:
    files = _ChunkFiles(spec, frame, chunk_rows) if use else None
    try:
        yield files
    finally:
        if files is not None:
            files.close()


def _bulk_insert(
    conn: sa.Connection,
    table: str,
    spec: TableSpec,
    frame: pd.DataFrame,
    files: _ChunkFiles | None,
    options: WriteOptions,
    log: LogLike,
) -> tuple[int, str]:
    """Insert ``frame``; returns (rows, method). Raises ``_LocalInfileRefused`` to fall back."""
    if files is not None and (_engine_key(conn.engine), os.getpid()) not in _NO_LOCAL_INFILE:
        try:
            return _load_data(conn, table, spec, files), "load_data"
        except sa.exc.DBAPIError as exc:
            if _mysql_error_code(exc) in LOCAL_INFILE_REFUSED:
                _NO_LOCAL_INFILE.add((_engine_key(conn.engine), os.getpid()))
                log.warning(
                    f"LOAD DATA LOCAL INFILE refused (error {_mysql_error_code(exc)}) by "
                    f"{safe_url(conn.engine.url)}; falling back to INSERT for this process "
                    "(enable local_infile on the server for ~3x faster loads)"
                )
                raise _LocalInfileRefused from exc
            raise
    return _insert_many(conn, table, spec, frame, options.insert_batch_rows), "insert"


class _LocalInfileRefused(Exception):
    pass


def _lock_name(engine: sa.Engine, table: str) -> str:
    digest = hashlib.sha1(f"{engine.url.database}.{table}".encode()).hexdigest()[:40]
    return f"moocassets:{digest}"


@contextmanager
def _table_write_lock(conn: sa.Connection, table: str, options: WriteOptions) -> Iterator[None]:
    """Serialize the writers of one table (MySQL ``GET_LOCK``; released even on kill)."""
    if not options.serialize_writes or conn.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = _lock_name(conn.engine, table)
    got = conn.exec_driver_sql(
        "SELECT GET_LOCK(%s, %s)", (name, int(options.write_lock_timeout))
    ).scalar()
    conn.commit()  # GET_LOCK is not transactional; end the implicit transaction it opened
    if got != 1:
        raise WarehouseWriteError(
            f"timed out after {options.write_lock_timeout}s waiting for the write lock of "
            f"table {table} (another run is writing it)"
        )
    try:
        yield
    finally:
        if not conn.invalidated and not conn.closed:
            try:
                conn.rollback()
                conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (name,)).scalar()
                conn.commit()
            except sa.exc.DBAPIError:
                pass  # the connection is gone: the server released the lock with it


def _connection_id(conn: sa.Connection) -> int | None:
    if conn.dialect.name in ("mysql", "mariadb"):
        return int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())
    return None


def _run_hook(
    hook: WriteHook | None,
    conn: sa.Connection,
    stage: Literal["after_delete", "before_commit"],
    table: str,
    keys: Sequence[str] | None,
    attempt: int,
) -> None:
    if hook is not None:
        hook(
            WriteEvent(
                stage=stage,
                table=table,
                partition_keys=tuple(keys) if keys is not None else None,
                attempt=attempt,
                connection_id=_connection_id(conn),
            )
        )


def _scope_values(spec: TableSpec, frame: pd.DataFrame, column: str) -> list[Any]:
    """The distinct values of a replace-scope column in ``frame``, as bind parameters."""
    values = frame[column].dropna().unique()
    if spec.column(column).kind == "datetime":
        return [pd.Timestamp(v).tz_convert("UTC").tz_localize(None).to_pydatetime() for v in values]
    return [v.item() if hasattr(v, "item") else v for v in values]


def _write_partitions_once(
    engine: sa.Engine,
    spec: TableSpec,
    frame: pd.DataFrame,
    keys: Sequence[str],
    files: _ChunkFiles | None,
    options: WriteOptions,
    log: LogLike,
    hook: WriteHook | None,
    attempt: int,
    scope: Sequence[str] = (),
) -> tuple[int, str]:
    where = [f"{_q(engine, spec.partition_column)} IN :keys"]
    params: dict[str, Any] = {"keys": list(keys)}
    binds = [sa.bindparam("keys", expanding=True)]
    for i, column in enumerate(scope):
        # scoped replace (e.g. history keyed by as_of): only the rows at the frame's values
        where.append(f"{_q(engine, column)} IN :scope{i}")
        params[f"scope{i}"] = _scope_values(spec, frame, column)
        binds.append(sa.bindparam(f"scope{i}", expanding=True))
    delete = sa.text(
        f"DELETE FROM {_q(engine, spec.name)} WHERE {' AND '.join(where)}"
    ).bindparams(*binds)
    with engine.connect() as conn, _table_write_lock(conn, spec.name, options), conn.begin():
        if is_mysql(engine):
            conn.exec_driver_sql(
                "SET SESSION innodb_lock_wait_timeout = %s", (int(options.lock_wait_timeout),)
            )
        if all(params[f"scope{i}"] for i in range(len(scope))):
            conn.execute(delete, params)
        _run_hook(hook, conn, "after_delete", spec.name, keys, attempt)
        rows, method = _bulk_insert(conn, spec.name, spec, frame, files, options, log)
        _run_hook(hook, conn, "before_commit", spec.name, keys, attempt)
    return rows, method


def _replace_table_once(
    engine: sa.Engine,
    spec: TableSpec,
    frame: pd.DataFrame,
    files: _ChunkFiles | None,
    options: WriteOptions,
    log: LogLike,
    hook: WriteHook | None,
    attempt: int,
) -> tuple[int, str]:
    if not is_mysql(engine):
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"DELETE FROM {_q(conn, spec.name)}")
            _run_hook(hook, conn, "after_delete", spec.name, None, attempt)
            rows, method = _bulk_insert(conn, spec.name, spec, frame, files, options, log)
            _run_hook(hook, conn, "before_commit", spec.name, None, attempt)
        return rows, method
    suffix = uuid.uuid4().hex[:8]
    staging = f"{spec.name[:48]}__stg_{suffix}"
    old = f"{spec.name[:48]}__old_{suffix}"
    with engine.connect() as conn, _table_write_lock(conn, spec.name, options):
        try:
            conn.exec_driver_sql(f"CREATE TABLE {_q(conn, staging)} LIKE {_q(conn, spec.name)}")
            conn.commit()
            with conn.begin():
                rows, method = _bulk_insert(conn, staging, spec, frame, files, options, log)
                _run_hook(hook, conn, "before_commit", spec.name, None, attempt)
            conn.exec_driver_sql(
                f"RENAME TABLE {_q(conn, spec.name)} TO {_q(conn, old)}, "
                f"{_q(conn, staging)} TO {_q(conn, spec.name)}"
            )
            conn.exec_driver_sql(f"DROP TABLE {_q(conn, old)}")
            conn.commit()
        finally:
            if not conn.invalidated:
                conn.rollback()
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(conn, staging)}")
                conn.commit()
    return rows, f"{method}+rename"


def write_table(
    engine: sa.Engine,
    spec: TableSpec,
    frame: pd.DataFrame,
    partition_keys: Sequence[str] | None,
    options: WriteOptions = WriteOptions(),
    log: LogLike = _default_log,
    hook: WriteHook | None = None,
    replace_scope: Sequence[str] = (),
) -> WriteResult:
    """Replace ``partition_keys``' rows (or the whole table when None) with ``frame``.

    With ``replace_scope`` (column names), only the partition rows whose values in those columns
    occur in ``frame`` are replaced, e.g. ``("as_of",)`` for a history table: re-writing a
    snapshot is idempotent and other snapshots of the partition are kept.
    """
    started = time.perf_counter()
    qualified = f"{database_name(engine)}.{spec.name}"
    if partition_keys is not None:
        partition_keys = list(dict.fromkeys(partition_keys))
    for column in replace_scope:
        spec.column(column)  # KeyError names an undeclared scope column
        if partition_keys is None:
            raise WarehouseError(f"{spec.name}: replace_scope needs a partitioned asset")
    coerced = prepare_frame(spec, frame, partition_keys)
    added = ensure_table(engine, spec, log)
    use_load_data = (
        options.use_load_data
        and is_mysql(engine)
        and (_engine_key(engine), os.getpid()) not in _NO_LOCAL_INFILE
    )
    where = (
        f"partition(s) {partition_keys[:5]}" + ("…" if len(partition_keys) > 5 else "")
        if partition_keys is not None
        else "the whole table"
    )
    attempt = 0
    rows, method = 0, "none"
    with _maybe_files(use_load_data, spec, coerced, options.load_data_chunk_rows) as files:
        while True:
            attempt += 1
            try:
                if partition_keys is None:
                    rows, method = _replace_table_once(
                        engine, spec, coerced, files, options, log, hook, attempt
                    )
                elif partition_keys:
                    rows, method = _write_partitions_once(
                        engine, spec, coerced, partition_keys, files, options, log, hook,
                        attempt, replace_scope,
                    )
                break
            except _LocalInfileRefused:
                files = None  # retry at once with INSERT (the failed transaction rolled back)
                attempt -= 1
                continue
            except sa.exc.DBAPIError as exc:
                _reset_verification(engine, spec.name)
                code = _mysql_error_code(exc)
                if code in RETRYABLE_ERRORS and attempt <= options.deadlock_retries:
                    delay = options.retry_backoff_seconds * attempt
                    log.warning(
                        f"{RETRYABLE_ERRORS[code]} ({code}) writing {qualified} {where}; "
                        f"transaction rolled back, retry {attempt}/{options.deadlock_retries} "
                        f"in {delay:.1f}s"
                    )
                    time.sleep(delay)
                    continue
                raise WarehouseWriteError(
                    f"writing {qualified} {where} failed after {attempt} attempt(s) on "
                    f"{safe_url(engine.url)}: {type(exc.orig).__name__} {_short(exc)}; the "
                    "transaction was rolled back, the previous rows are intact"
                ) from exc
            except WarehouseWriteError:
                _reset_verification(engine, spec.name)
                raise
    return WriteResult(
        table=spec.name,
        qualified_name=qualified,
        rows_written=rows,
        table_row_count=count_rows(engine, spec.name),
        method=method,
        duration_s=time.perf_counter() - started,
        retries=attempt - 1,
        columns_added=added,
        frame=coerced,
    )


def _short(exc: sa.exc.DBAPIError) -> str:
    """The driver's message without the SQL statement and parameters (which may hold data)."""
    return str(exc.orig)[:300]


# =============================================================================================
# Read
# =============================================================================================


def count_rows(
    engine: sa.Engine, table: str, course_ids: Sequence[str] | None = None,
    partition_column: str = "course_id",
) -> int:
    sql = f"SELECT COUNT(*) FROM {_q(engine, table)}"
    params: dict[str, Any] = {}
    stmt = sa.text(sql)
    if course_ids is not None:
        stmt = sa.text(sql + f" WHERE {_q(engine, partition_column)} IN :keys").bindparams(
            sa.bindparam("keys", expanding=True)
        )
        params = {"keys": list(course_ids)}
        if not course_ids:
            return 0
    with engine.connect() as conn:
        return int(conn.execute(stmt, params).scalar_one())


def read_table(
    engine: sa.Engine, spec: TableSpec, partition_keys: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows of ``partition_keys`` (all rows when None) coerced by the spec."""
    if partition_keys is not None and not partition_keys:
        return spec.empty_frame()
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        if not insp.has_table(spec.name):
            which = (
                f"partition(s) {list(partition_keys)[:10]}"
                if partition_keys is not None
                else "all partitions"
            )
            raise TableNotMaterializedError(
                f"table {database_name(engine)}.{spec.name} does not exist: upstream asset "
                f"{spec.name!r} not materialized ({which})"
            )
        present = {c["name"] for c in insp.get_columns(spec.name)}
        cols = [c for c in spec.column_names if c in present]
        sql = f"SELECT {', '.join(_q(conn, c) for c in cols)} FROM {_q(conn, spec.name)}"
        if partition_keys is None:
            result = conn.execute(sa.text(sql))
        else:
            stmt = sa.text(
                sql + f" WHERE {_q(conn, spec.partition_column)} IN :keys"
            ).bindparams(sa.bindparam("keys", expanding=True))
            result = conn.execute(stmt, {"keys": list(partition_keys)})
        rows = result.fetchall()
    frame = pd.DataFrame.from_records(rows, columns=cols)
    for c in spec.columns:
        if c.name not in frame.columns:
            frame[c.name] = None
        elif c.kind == "decimal":
            frame[c.name] = pd.Series(
                [float(v) if v is not None else math.nan for v in frame[c.name]],
                index=frame.index, dtype="float64",
            )
        elif c.kind == "bool" and frame[c.name].dtype == object:
            frame[c.name] = frame[c.name].map(lambda v: None if v is None else bool(int(v)))
    return spec.coerce_frame(frame)


# =============================================================================================
# The IO manager
# =============================================================================================


class RunFrameCache:
    """The frames a process wrote, per run, so the same run's downstream steps need not read them
    back. Only whole partitions are kept (never a scoped replace), only for the last ``max_runs``
    runs, and every hit is a copy (a step cannot change what the next one reads)."""

    def __init__(self, max_runs: int = 2) -> None:
        self._frames: RunScoped[pd.DataFrame] = RunScoped(max_runs)

    def put(self, run_id: str, table: str, keys: Sequence[str], frame: pd.DataFrame) -> None:
        self._frames.put(run_id, (table, tuple(sorted(keys))), frame)

    def get(self, run_id: str, table: str, keys: Sequence[str]) -> pd.DataFrame | None:
        frame = self._frames.get(run_id, (table, tuple(sorted(keys))))
        return None if frame is None else frame.copy()


RUN_FRAMES = RunFrameCache()
"""Shared by every WarehouseIOManager of the process (Dagster may copy the resource object)."""


def _run_id(context: dg.InputContext) -> str | None:
    try:
        return context.step_context.run_id
    except dg.DagsterInvariantViolationError:  # a context built outside a run (tests)
        return None


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames in the declared warehouse tables (see the module docstring)."""

    database_url: str = Field(
        description="mysql+pymysql://user:pw@host:3306/db or sqlite:///path.db (use dg.EnvVar)"
    )
    use_load_data: bool = Field(
        default=True, description="LOAD DATA LOCAL INFILE on MySQL (falls back to INSERT)"
    )
    serialize_writes: bool = Field(
        default=True,
        description="Writers of one table take turns (GET_LOCK); concurrent InnoDB writers of one "
        "table serialize anyway and LOAD DATA's AUTO-INC lock makes them deadlock-prone",
    )
    write_lock_timeout: int = Field(default=900, description="Seconds to wait for that lock")
    reuse_written: bool = Field(
        default=True,
        description="Serve a partition written earlier in the same run from memory (the exact "
        "rows committed) instead of reading it back",
    )
    insert_batch_rows: int = Field(default=10_000, description="Rows per executemany call")
    load_data_chunk_rows: int = Field(default=20_000, description="Rows per LOAD DATA file")
    lock_wait_timeout: int = Field(default=50, description="innodb_lock_wait_timeout (s)")
    deadlock_retries: int = Field(default=3, description="Retries on 1213/1205")
    retry_backoff_seconds: float = Field(default=0.5, description="Backoff s * attempt")

    _write_hook: WriteHook | None = PrivateAttr(default=None)

    def set_write_hook(self, hook: WriteHook | None) -> None:
        """Test seam: ``hook(WriteEvent)`` runs after DELETE and before COMMIT of each write."""
        self._write_hook = hook

    def engine(self) -> sa.Engine:
        return make_engine(self.database_url)

    @property
    def options(self) -> WriteOptions:
        return WriteOptions(
            use_load_data=self.use_load_data,
            serialize_writes=self.serialize_writes,
            write_lock_timeout=self.write_lock_timeout,
            insert_batch_rows=self.insert_batch_rows,
            load_data_chunk_rows=self.load_data_chunk_rows,
            lock_wait_timeout=self.lock_wait_timeout,
            deadlock_retries=self.deadlock_retries,
            retry_backoff_seconds=self.retry_backoff_seconds,
        )

    @staticmethod
    def _spec(asset_key: dg.AssetKey) -> TableSpec:
        table = asset_key.path[-1]
        try:
            return table_spec(table)
        except KeyError:
            raise WarehouseError(
                f"asset {asset_key.to_user_string()}: no declared schema for table {table!r} "
                "(declare it in moocassets.schema or moocassets.schema.register)"
            ) from None

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            raise WarehouseError(
                f"asset {context.asset_key.to_user_string()} returned None; the warehouse IO "
                "manager stores DataFrames"
            )
        spec = self._spec(context.asset_key)
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else None
        scope = tuple((context.definition_metadata or {}).get("replace_scope") or ())
        result = write_table(
            self.engine(), spec, obj, keys, self.options, context.log, self._write_hook,
            replace_scope=scope,
        )
        # the materialization's metadata says the same: a module logger, not a run event
        _default_log.info(
            f"wrote {result.rows_written} rows to {result.qualified_name} via {result.method} "
            f"in {result.duration_s:.2f}s"
        )
        if keys is not None and not scope and result.frame is not None and self.reuse_written:
            RUN_FRAMES.put(context.run_id, spec.name, keys, result.frame)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(result.table_row_count),
                "dagster/partition_row_count": dg.MetadataValue.int(result.rows_written),
                "dagster/column_schema": dg.MetadataValue.table_schema(spec.table_schema),
                "dagster/table_name": dg.MetadataValue.text(result.qualified_name),
                "write_duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
                "load_method": dg.MetadataValue.text(result.method),
                "write_retries": dg.MetadataValue.int(result.retries),
                **(
                    {"columns_added": dg.MetadataValue.text(", ".join(result.columns_added))}
                    if result.columns_added
                    else {}
                ),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        spec = self._spec(context.asset_key)
        keys: list[str] | None = None
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            # every registered partition (e.g. an unpartitioned downstream): plain SELECT
            run_id = _run_id(context) if self.reuse_written else None
            written = RUN_FRAMES.get(run_id, spec.name, keys) if run_id else None
            if written is not None:
                _default_log.debug(f"{spec.name}: {len(written)} rows written by this run")
                return written
            if _covers_all(context, keys):
                keys = None
        frame = read_table(self.engine(), spec, keys)
        # a module logger, not context.log: one Dagster event per input load is event-log cost
        _default_log.debug(
            f"loaded {len(frame)} rows from {spec.name}"
            + (f" for {len(keys)} partition(s)" if keys is not None else " (all partitions)")
        )
        return frame


def _covers_all(context: dg.InputContext, keys: Sequence[str]) -> bool:
    try:
        pdef = context.asset_partitions_def
        if isinstance(pdef, dg.DynamicPartitionsDefinition):
            known = pdef.get_partition_keys(dynamic_partitions_store=context.instance)
        else:
            known = pdef.get_partition_keys()
    except dg.DagsterInvariantViolationError:
        return False
    return bool(known) and set(keys) >= set(known)
