"""Write a frame into its declared table: one partition replace per transaction, retried.

Partitioned assets: ``DELETE ... WHERE course_id IN :keys`` (optionally also bounded by a replace
scope, e.g. ``as_of``) and the bulk insert in one InnoDB transaction, retried whole on deadlock
and lock-wait timeout. Unpartitioned assets: staging table + atomic ``RENAME``. Bulk insert:
``LOAD DATA LOCAL INFILE`` of files generated chunk by chunk in a background thread while the
previous chunk loads (warnings and row counts checked), else ``executemany`` INSERT.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa

from moocassets.io.ddl import ensure_table, reset_verification
from moocassets.io.engine import (
    DEFAULT_LOG,
    LogLike,
    database_name,
    engine_key,
    is_mysql,
    quote_name,
    safe_url,
)
from moocassets.io.errors import (
    WarehouseError,
    WarehouseWriteError,
    mysql_error_code,
    short_message,
)
from moocassets.io.load_format import load_data_bytes, native_columns, prepare_frame
from moocassets.io.locks import table_write_lock
from moocassets.io.read import count_rows
from moocassets.schema import TableSpec

__all__ = ["WriteEvent", "WriteHook", "WriteOptions", "WriteResult", "write_table"]

RETRYABLE_ERRORS = {
    1213: "deadlock",
    1205: "lock wait timeout",
    # InnoDB reports a deadlock/timeout while LOAD DATA waits for the table's AUTO-INC lock
    # (innodb_autoinc_lock_mode=1, the MariaDB default) as 1467; the transaction is rolled back
    1467: "AUTO-INC lock conflict",
}
LOCAL_INFILE_REFUSED = {1148, 2068, 3948, 4166}

_NO_LOCAL_INFILE: set[tuple[str, int]] = set()


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
    cols = ", ".join(quote_name(conn, c) for c in spec.column_names)
    sql = (
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote_name(conn, table)} CHARACTER SET utf8mb4 "
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
        f"INSERT INTO {quote_name(conn, table)} "
        f"({', '.join(quote_name(conn, c) for c in spec.column_names)}) "
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
    if files is not None and (engine_key(conn.engine), os.getpid()) not in _NO_LOCAL_INFILE:
        try:
            return _load_data(conn, table, spec, files), "load_data"
        except sa.exc.DBAPIError as exc:
            if mysql_error_code(exc) in LOCAL_INFILE_REFUSED:
                _NO_LOCAL_INFILE.add((engine_key(conn.engine), os.getpid()))
                log.warning(
                    f"LOAD DATA LOCAL INFILE refused (error {mysql_error_code(exc)}) by "
                    f"{safe_url(conn.engine.url)}; falling back to INSERT for this process "
                    "(enable local_infile on the server for ~3x faster loads)"
                )
                raise _LocalInfileRefused from exc
            raise
    return _insert_many(conn, table, spec, frame, options.insert_batch_rows), "insert"


class _LocalInfileRefused(Exception):
    pass


def _lock_args(options: WriteOptions) -> dict[str, Any]:
    return {"enabled": options.serialize_writes, "timeout_s": options.write_lock_timeout}


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
    where = [f"{quote_name(engine, spec.partition_column)} IN :keys"]
    params: dict[str, Any] = {"keys": list(keys)}
    binds = [sa.bindparam("keys", expanding=True)]
    for i, column in enumerate(scope):
        # scoped replace (e.g. history keyed by as_of): only the rows at the frame's values
        where.append(f"{quote_name(engine, column)} IN :scope{i}")
        params[f"scope{i}"] = _scope_values(spec, frame, column)
        binds.append(sa.bindparam(f"scope{i}", expanding=True))
    delete = sa.text(
        f"DELETE FROM {quote_name(engine, spec.name)} WHERE {' AND '.join(where)}"
    ).bindparams(*binds)
    with (
        engine.connect() as conn,
        table_write_lock(conn, spec.name, **_lock_args(options)),
        conn.begin(),
    ):
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
            conn.exec_driver_sql(f"DELETE FROM {quote_name(conn, spec.name)}")
            _run_hook(hook, conn, "after_delete", spec.name, None, attempt)
            rows, method = _bulk_insert(conn, spec.name, spec, frame, files, options, log)
            _run_hook(hook, conn, "before_commit", spec.name, None, attempt)
        return rows, method
    suffix = uuid.uuid4().hex[:8]
    staging = f"{spec.name[:48]}__stg_{suffix}"
    old = f"{spec.name[:48]}__old_{suffix}"
    with engine.connect() as conn, table_write_lock(conn, spec.name, **_lock_args(options)):
        try:
            conn.exec_driver_sql(
                f"CREATE TABLE {quote_name(conn, staging)} LIKE {quote_name(conn, spec.name)}"
            )
            conn.commit()
            with conn.begin():
                rows, method = _bulk_insert(conn, staging, spec, frame, files, options, log)
                _run_hook(hook, conn, "before_commit", spec.name, None, attempt)
            conn.exec_driver_sql(
                f"RENAME TABLE {quote_name(conn, spec.name)} TO {quote_name(conn, old)}, "
                f"{quote_name(conn, staging)} TO {quote_name(conn, spec.name)}"
            )
            conn.exec_driver_sql(f"DROP TABLE {quote_name(conn, old)}")
            conn.commit()
        finally:
            if not conn.invalidated:
                conn.rollback()
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote_name(conn, staging)}")
                conn.commit()
    return rows, f"{method}+rename"


def write_table(
    engine: sa.Engine,
    spec: TableSpec,
    frame: pd.DataFrame,
    partition_keys: Sequence[str] | None,
    options: WriteOptions = WriteOptions(),
    log: LogLike = DEFAULT_LOG,
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
        and (engine_key(engine), os.getpid()) not in _NO_LOCAL_INFILE
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
                reset_verification(engine, spec.name)
                code = mysql_error_code(exc)
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
                    f"{safe_url(engine.url)}: {type(exc.orig).__name__} {short_message(exc)}; the "
                    "transaction was rolled back, the previous rows are intact"
                ) from exc
            except WarehouseWriteError:
                reset_verification(engine, spec.name)
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
