"""``WarehouseResource``: read access to the warehouse for sensors, asset checks and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from moocassets.io.ddl import table_exists
from moocassets.io.engine import make_engine, safe_url
from moocassets.io.read import count_rows, read_table
from moocassets.schema import table_spec


class WarehouseResource(dg.ConfigurableResource):
    """Read queries against the warehouse (the same engine as ``WarehouseIOManager``)."""

    database_url: str = Field(
        description="mysql+pymysql://user:pw@host:3306/db or sqlite:///path.db (use dg.EnvVar)"
    )

    def engine(self) -> sa.Engine:
        return make_engine(self.database_url)

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return safe_url(self.database_url)

    def table_exists(self, table: str) -> bool:
        return table_exists(self.engine(), table)

    def read_table(self, table: str, course_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The table's rows (only ``course_ids``' when given), coerced by its declared schema."""
        return read_table(
            self.engine(), table_spec(table), list(course_ids) if course_ids is not None else None
        )

    def count_rows(self, table: str, course_ids: Sequence[str] | None = None) -> int:
        """``COUNT(*)`` of the table, or of the rows of ``course_ids``."""
        spec = table_spec(table)
        return count_rows(
            self.engine(),
            table,
            list(course_ids) if course_ids is not None else None,
            partition_column=spec.partition_column,
        )

    def rows_per_course(self, table: str) -> dict[str, int]:
        """``{course_id: row count}`` of a table."""
        spec = table_spec(table)
        q = self.engine().dialect.identifier_preparer.quote_identifier
        col = q(spec.partition_column)
        stmt = sa.text(f"SELECT {col}, COUNT(*) FROM {q(table)} GROUP BY {col}")
        with self.engine().connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(stmt)}

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """A read query with bound ``:name`` parameters (lists are expanded for ``IN :name``)."""
        stmt = sa.text(sql)
        bound = dict(params or {})
        for name, value in bound.items():
            if isinstance(value, list | tuple | set | frozenset):
                stmt = stmt.bindparams(sa.bindparam(name, expanding=True))
                bound[name] = list(value)
        with self.engine().connect() as conn:
            result = conn.execute(stmt, bound)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
