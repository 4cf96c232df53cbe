"""DDL: create a declared table, verify an existing one against its declaration, evolve it.

Runs outside any write transaction (MySQL DDL commits implicitly). A table verified once is
remembered per process (engine, pid, table, declaration fingerprint); a failed write forgets it,
so the next write verifies again.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import sqlalchemy as sa

from moocassets.io.engine import DEFAULT_LOG, LogLike, database_name, engine_key, quote_name
from moocassets.io.errors import IncompatibleSchemaError
from moocassets.schema import Column, TableSpec

__all__ = ["ensure_table", "reset_verification", "table_exists"]


_VERIFIED: set[tuple[str, int, str, int]] = set()
_VERIFIED_LOCK = threading.Lock()


def _spec_fingerprint(spec: TableSpec) -> int:
    return hash(
        (
            tuple((c.name, c.sql_type_name, c.nullable) for c in spec.columns),
            spec.unique_key,
            spec.extra_unique,
            spec.indexes,
        )
    )


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


def reset_verification(engine: sa.Engine, table: str) -> None:
    with _VERIFIED_LOCK:
        for key in [k for k in _VERIFIED if k[0] == engine_key(engine) and k[2] == table]:
            _VERIFIED.discard(key)


def table_exists(engine: sa.Engine, table: str) -> bool:
    with engine.connect() as conn:
        return sa.inspect(conn).has_table(table)


def ensure_table(engine: sa.Engine, spec: TableSpec, log: LogLike = DEFAULT_LOG) -> list[str]:
    """Create the table if missing, else verify and evolve it. Returns the columns added.

    Runs outside any write transaction (MySQL DDL commits implicitly). Cached per process.
    """
    key = (engine_key(engine), os.getpid(), spec.name, _spec_fingerprint(spec))
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
                    f"ALTER TABLE {quote_name(conn, spec.name)} "
                    f"ADD COLUMN {quote_name(conn, c.name)} {ddl} NULL"
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
