"""The warehouse's errors, and how a driver error is read (code, message without the SQL).

Messages never contain a password or row data: URLs go through ``engine.safe_url`` and a
driver error is shown by :func:`short_message` (its message without statement and parameters).
"""

from __future__ import annotations

import sqlalchemy as sa

from moocassets.schema import SchemaError

__all__ = [
    "IncompatibleSchemaError",
    "StrayPartitionRowsError",
    "TableNotMaterializedError",
    "WarehouseError",
    "WarehouseWriteError",
    "mysql_error_code",
    "short_message",
]


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


def mysql_error_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


def short_message(exc: sa.exc.DBAPIError) -> str:
    """The driver's message without the SQL statement and parameters (which may hold data)."""
    return str(exc.orig)[:300]
