"""SQLAlchemy engines for the warehouse, shared by the IO manager and ``WarehouseResource``.

``make_engine(url)`` returns one engine per ``(url, options, process id)``: engines (and their
connection pools) must never cross a ``fork``, and Dagster's multiprocess executor forks/spawns a
process per step. MySQL/MariaDB engines use PyMySQL with ``charset=utf8mb4``, ``local_infile`` (so
the IO manager can ``LOAD DATA LOCAL INFILE``), ``pool_pre_ping`` and an explicit
``REPEATABLE READ`` isolation level (READ COMMITTED produced deadlocks between partition writers,
see ``shared/notes/mysql-bulk-load.md`` §4). SQLite (the demo fallback) uses WAL and a busy timeout.

Passwords never appear in messages: use :func:`safe_url` to render a URL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Any, Protocol

import sqlalchemy as sa

SQLITE_BUSY_TIMEOUT_MS = 30_000

DEFAULT_LOG = logging.getLogger("moocassets.io")
"""Where the warehouse modules log when no run logger is passed."""


class LogLike(Protocol):
    """What the warehouse modules log through: a ``logging.Logger`` or Dagster's ``context.log``."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


_ENGINES: dict[tuple[str, bool, int], sa.Engine] = {}
_LOCK = threading.Lock()


def safe_url(url: str | sa.URL) -> str:
    """The URL with its password masked (safe for logs, errors and metadata)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL may contain anything: show nothing
        return "<unparsable database URL>"


def engine_key(engine: sa.Engine) -> str:
    """Identifies one engine object in per-process caches (password hidden)."""
    return engine.url.render_as_string(hide_password=True) + f"#{id(engine)}"


def quote_name(engine: sa.Engine | sa.Connection, name: str) -> str:
    """``name`` quoted as an identifier for the engine's dialect (tables, columns)."""
    return engine.dialect.identifier_preparer.quote_identifier(name)


def is_mysql(engine_or_url: sa.Engine | sa.URL | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, sa.Engine) else sa.make_url(engine_or_url)
    return url.get_backend_name() in ("mysql", "mariadb")


def is_sqlite(engine_or_url: sa.Engine | sa.URL | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, sa.Engine) else sa.make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def database_name(engine: sa.Engine) -> str:
    """The schema name used in ``dagster/table_name`` (``main`` for SQLite)."""
    if is_sqlite(engine):
        return "main"
    return engine.url.database or ""


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _create(url: sa.URL, local_infile: bool) -> sa.Engine:
    backend = url.get_backend_name()
    if backend in ("mysql", "mariadb"):
        query = dict(url.query)
        query.setdefault("charset", "utf8mb4")
        url = url.set(query=query)
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            pool_recycle=3600,
            isolation_level="REPEATABLE READ",
            connect_args={"local_infile": local_infile},
        )
    if backend == "sqlite":
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    raise ValueError(
        f"unsupported warehouse database {safe_url(url)}: use mysql+pymysql://... or sqlite:///..."
    )


def make_engine(url: str | sa.URL, *, local_infile: bool = True) -> sa.Engine:
    """The process-wide engine for ``url`` (created on first use, per process id).

    ``local_infile=False`` is for tests of the INSERT fallback (a client refusing LOCAL INFILE).
    """
    parsed = sa.make_url(url)
    key = (parsed.render_as_string(hide_password=False), local_infile, os.getpid())
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _create(parsed, local_infile)
            _ENGINES[key] = engine
        return engine


def dispose_engines() -> None:
    """Dispose every engine of this process (tests, or after a fork)."""
    with _LOCK:
        pid = os.getpid()
        for key in [k for k in _ENGINES if k[2] == pid]:
            _ENGINES.pop(key).dispose()


def ensure_database(url: str | sa.URL) -> None:
    """Create the MySQL database of ``url`` if it does not exist (utf8mb4); SQLite: nothing.

    For the demo and first-time setups; production databases are created by the deployment
    (docker-compose's init scripts) and the IO manager's user needs no CREATE privilege.
    """
    parsed = sa.make_url(url)
    if not is_mysql(parsed) or not parsed.database:
        return
    server = sa.create_engine(
        sa.URL.create(
            parsed.drivername, username=parsed.username, password=parsed.password,
            host=parsed.host, port=parsed.port, query=parsed.query,
        )
    )
    try:
        with server.begin() as conn:
            quoted = server.dialect.identifier_preparer.quote_identifier(parsed.database)
            conn.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS {quoted} "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        server.dispose()
