"""Read a declared table (some partitions, or all) back as a coerced frame; count rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from moocassets.io.engine import database_name, quote_name
from moocassets.io.errors import TableNotMaterializedError
from moocassets.schema import TableSpec

__all__ = ["count_rows", "read_table"]


def count_rows(
    engine: sa.Engine, table: str, course_ids: Sequence[str] | None = None,
    partition_column: str = "course_id",
) -> int:
    sql = f"SELECT COUNT(*) FROM {quote_name(engine, table)}"
    params: dict[str, Any] = {}
    stmt = sa.text(sql)
    if course_ids is not None:
        stmt = sa.text(sql + f" WHERE {quote_name(engine, partition_column)} IN :keys").bindparams(
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
        selected = ", ".join(quote_name(conn, c) for c in cols)
        sql = f"SELECT {selected} FROM {quote_name(conn, spec.name)}"
        if partition_keys is None:
            result = conn.execute(sa.text(sql))
        else:
            stmt = sa.text(
                sql + f" WHERE {quote_name(conn, spec.partition_column)} IN :keys"
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
