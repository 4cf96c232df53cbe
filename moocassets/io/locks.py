"""Advisory locks: the writers of one table take turns (MySQL ``GET_LOCK``).

Concurrent InnoDB writers of one table serialize anyway, and LOAD DATA's AUTO-INC lock makes
them deadlock-prone (shared/notes/mysql-bulk-load.md); a named lock held by the writing
connection is released by the server even when the connection dies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from moocassets.io.errors import WarehouseWriteError

__all__ = ["table_write_lock"]


def _lock_name(engine: sa.Engine, table: str) -> str:
    digest = hashlib.sha1(f"{engine.url.database}.{table}".encode()).hexdigest()[:40]
    return f"moocassets:{digest}"


@contextmanager
def table_write_lock(
    conn: sa.Connection, table: str, *, enabled: bool, timeout_s: int
) -> Iterator[None]:
    """Serialize the writers of one table (MySQL ``GET_LOCK``, waiting at most ``timeout_s``;
    released even on kill). A no-op when not ``enabled`` or not on MySQL/MariaDB."""
    if not enabled or conn.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = _lock_name(conn.engine, table)
    got = conn.exec_driver_sql(
        "SELECT GET_LOCK(%s, %s)", (name, int(timeout_s))
    ).scalar()
    conn.commit()  # GET_LOCK is not transactional; end the implicit transaction it opened
    if got != 1:
        raise WarehouseWriteError(
            f"timed out after {timeout_s}s waiting for the write lock of "
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
