"""Where the extract and model stores keep their pickled objects: a directory, or a table.

Both stores name an object by ``(store, asset, partition)`` (``partition`` is ``""`` for an
unpartitioned asset) and write several objects in one atomic step:

* :class:`DirectoryObjects` -- one file per object under a directory (atomic temp file +
  ``os.replace``). Only one host sees it: the local default of a single-process deployment.
* :class:`TableObjects` -- the table ``pipeline_objects`` in the warehouse database, which every
  step reaches wherever it runs (Celery workers on other hosts, run containers). An object is
  pickled, compressed (zlib level 1: extract frames shrink several times, for little CPU) and
  split into chunks of at most :data:`CHUNK_BYTES` (well under MySQL's ``max_allowed_packet``);
  a write replaces all the objects it names in ONE transaction, so a reader sees the previous
  objects or the new ones, never a mix, and an interrupted write leaves the previous ones.

Pickles are the project's own artefacts (written by these stores, read back by the same code
version); the table is as trusted as the warehouse it lives in.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from moocassets.io.engine import is_mysql, make_engine, safe_url

OBJECTS_TABLE = "pipeline_objects"
CHUNK_BYTES = 4 * 1024 * 1024
"""MariaDB's default ``max_allowed_packet`` is 16 MiB (MySQL 8: 64 MiB); an escaped 4 MiB chunk
stays far below it."""
DEADLOCK_RETRIES = 3


@dataclass(frozen=True, order=True)
class ObjectKey:
    store: str  # "extracts" or "models"
    asset: str  # the asset key as a path string, e.g. "h5p_scores_extract"
    partition: str = ""  # a course id, or "" for an unpartitioned asset

    def __str__(self) -> str:
        return f"{self.store}/{self.asset}" + (f"[{self.partition}]" if self.partition else "")


class ObjectStore(Protocol):
    def put_many(self, objects: Mapping[ObjectKey, Any]) -> None:
        """Store every object; all of them or none."""

    def get_many(self, keys: Sequence[ObjectKey]) -> dict[ObjectKey, Any]:
        """The stored objects among ``keys`` (absent keys are left out)."""

    def where(self, key: ObjectKey) -> str:
        """Where ``key`` is kept, for messages and metadata (never a password)."""


# =============================================================================================
# A directory (one host)
# =============================================================================================


def write_pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh)  # our own artefacts, written by write_pickle


class DirectoryObjects:
    """``<root>/<asset path>/<quoted partition>.pkl`` (``<root>/<asset path>.pkl`` unpartitioned;
    the store name is the caller's choice of ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: ObjectKey) -> Path:
        if not key.partition:
            return self.root.joinpath(*key.asset.split("/")).with_suffix(".pkl")
        return self.root.joinpath(*key.asset.split("/"), quote(key.partition, safe="") + ".pkl")

    def put_many(self, objects: Mapping[ObjectKey, Any]) -> None:
        for key, obj in objects.items():  # each file atomically (one host, one writer per key)
            write_pickle(self.path(key), obj)

    def get_many(self, keys: Sequence[ObjectKey]) -> dict[ObjectKey, Any]:
        return {k: read_pickle(self.path(k)) for k in keys if self.path(k).exists()}

    def where(self, key: ObjectKey) -> str:
        return str(self.path(key))


# =============================================================================================
# A table of the warehouse database (every host)
# =============================================================================================


def _key_column(name: str, length: int) -> sa.Column[str]:
    # binary collation on MySQL: course ids differing only in case are different objects
    kind = sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )
    return sa.Column(name, kind, primary_key=True)


_METADATA = sa.MetaData()
OBJECTS = sa.Table(
    OBJECTS_TABLE,
    _METADATA,
    _key_column("store", 32),
    _key_column("asset", 255),
    _key_column("partition_key", 255),
    sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"),
              nullable=False),
    sa.Column("written_at", sa.DateTime, nullable=False),
    comment="moocassets extract frames and models (zlib-compressed pickles in chunks): "
    "moocassets/io/objects.py",
    mysql_charset="utf8mb4",
)

_CREATED: set[str] = set()
_CREATED_LOCK = threading.Lock()


def _is_deadlock(exc: sa.exc.DBAPIError) -> bool:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return code in (1205, 1213)  # lock wait timeout, deadlock


class TableObjects:
    """The ``pipeline_objects`` table of the database at ``database_url`` (created if missing)."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self._display = safe_url(database_url)
        with _CREATED_LOCK:
            if self._display not in _CREATED:
                with self.engine.begin() as conn:
                    conn.execute(sa.schema.CreateTable(OBJECTS, if_not_exists=True))
                _CREATED.add(self._display)

    def _writer(self) -> sa.Engine:
        # READ COMMITTED: a DELETE of keys that do not exist yet takes no gap lock, so writers
        # of different partitions do not block each other
        if is_mysql(self.engine):
            return self.engine.execution_options(isolation_level="READ COMMITTED")
        return self.engine

    def put_many(self, objects: Mapping[ObjectKey, Any]) -> None:
        if not objects:
            return
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        rows: list[dict[str, Any]] = []
        for key, obj in objects.items():
            blob = zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 1)
            for i, start in enumerate(range(0, max(len(blob), 1), CHUNK_BYTES)):
                rows.append({"store": key.store, "asset": key.asset,
                             "partition_key": key.partition, "chunk": i,
                             "data": blob[start:start + CHUNK_BYTES], "written_at": now})
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                with self._writer().begin() as conn:
                    for key in objects:
                        conn.execute(OBJECTS.delete().where(*self._match(key)))
                    conn.execute(OBJECTS.insert(), rows)
                return
            except sa.exc.DBAPIError as exc:
                if attempt == DEADLOCK_RETRIES or not _is_deadlock(exc):
                    raise
                time.sleep(0.2 * (attempt + 1))

    def get_many(self, keys: Sequence[ObjectKey]) -> dict[ObjectKey, Any]:
        chunks: dict[ObjectKey, list[bytes]] = {}
        with self.engine.connect() as conn:  # one snapshot for every key
            for key in keys:
                stmt = sa.select(OBJECTS.c.data).where(*self._match(key)).order_by(OBJECTS.c.chunk)
                parts = [bytes(row[0]) for row in conn.execute(stmt)]
                if parts:
                    chunks[key] = parts
        return {k: pickle.loads(zlib.decompress(b"".join(parts))) for k, parts in chunks.items()}

    @staticmethod
    def _match(key: ObjectKey) -> tuple[sa.ColumnElement[bool], ...]:
        return (OBJECTS.c.store == key.store, OBJECTS.c.asset == key.asset,
                OBJECTS.c.partition_key == key.partition)

    def where(self, key: ObjectKey) -> str:
        return f"{self._display} table {OBJECTS_TABLE} ({key})"
