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

import logging
from collections.abc import Sequence

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from moocassets import keys as names
from moocassets.io.engine import make_engine
from moocassets.io.errors import WarehouseError
from moocassets.io.read import read_table
from moocassets.io.run_cache import RUN_FRAMES
from moocassets.io.write import WriteHook, WriteOptions, write_table
from moocassets.schema import TableSpec, table_spec

__all__ = ["WarehouseIOManager"]

_log = logging.getLogger("moocassets.io")


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
                "(declare it in moocassets.schema)"
            ) from None

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            raise WarehouseError(
                f"asset {context.asset_key.to_user_string()} returned None; the warehouse IO "
                "manager stores DataFrames"
            )
        spec = self._spec(context.asset_key)
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else None
        scope = tuple((context.definition_metadata or {}).get(names.REPLACE_SCOPE_METADATA) or ())
        result = write_table(
            self.engine(), spec, obj, keys, self.options, context.log, self._write_hook,
            replace_scope=scope,
        )
        # the materialization's metadata says the same: a module logger, not a run event
        _log.info(
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
                _log.debug(f"{spec.name}: {len(written)} rows written by this run")
                return written
            if _covers_all(context, keys):
                keys = None
        frame = read_table(self.engine(), spec, keys)
        # a module logger, not context.log: one Dagster event per input load is event-log cost
        _log.debug(
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
