"""Scoped replace: a history table keyed by as_of keeps other snapshots of the partition."""

from __future__ import annotations

import pandas as pd
import pytest

from moocassets import schema
from moocassets.io import WarehouseError, make_engine, read_table, write_table

pytestmark = pytest.mark.mysql

SNAPSHOTS = schema.TableSpec(
    name="test_scoped_snapshots",
    description="test table",
    columns=(
        schema.USER_ID,
        schema.COURSE_ID,
        schema.Column("as_of", "datetime", nullable=False),
        schema.Column("value", "int"),
    ),
    unique_key=("user_id", "course_id", "as_of"),
)


def _frame(course: str, as_of: str, values: dict[int, int]) -> pd.DataFrame:
    return SNAPSHOTS.coerce_frame(pd.DataFrame({
        "user_id": list(values), "course_id": course, "as_of": pd.Timestamp(as_of, tz="UTC"),
        "value": list(values.values()),
    }))


def test_rewriting_one_snapshot_keeps_the_others_and_is_idempotent(mysql_database_url: str) -> None:
    engine = make_engine(mysql_database_url)
    c = "course-v1:O'Reilly+X+1"
    write_table(engine, SNAPSHOTS, _frame(c, "2025-10-01", {1: 1, 2: 2}), [c],
                replace_scope=("as_of",))
    write_table(engine, SNAPSHOTS, _frame(c, "2025-10-08", {1: 10, 2: 20}), [c],
                replace_scope=("as_of",))
    # the same snapshot again, with a learner removed and a value changed: replaced, not added
    write_table(engine, SNAPSHOTS, _frame(c, "2025-10-08", {1: 11}), [c],
                replace_scope=("as_of",))
    rows = read_table(engine, SNAPSHOTS, [c]).sort_values(["as_of", "user_id"])
    assert rows[["user_id", "value"]].values.tolist() == [[1, 1], [2, 2], [1, 11]]
    assert set(rows["as_of"].dt.strftime("%Y-%m-%d")) == {"2025-10-01", "2025-10-08"}


def test_without_scope_the_whole_partition_is_replaced(mysql_database_url: str) -> None:
    engine = make_engine(mysql_database_url)
    write_table(engine, SNAPSHOTS, _frame("c1", "2025-10-01", {1: 1}), ["c1"])
    write_table(engine, SNAPSHOTS, _frame("c1", "2025-10-08", {1: 2}), ["c1"])
    assert len(read_table(engine, SNAPSHOTS, ["c1"])) == 1


def test_scope_needs_a_declared_column_and_a_partition(mysql_database_url: str) -> None:
    engine = make_engine(mysql_database_url)
    with pytest.raises(KeyError, match="nope"):
        write_table(engine, SNAPSHOTS, _frame("c1", "2025-10-01", {1: 1}), ["c1"],
                    replace_scope=("nope",))
    with pytest.raises(WarehouseError, match="partitioned"):
        write_table(engine, SNAPSHOTS, _frame("c1", "2025-10-01", {1: 1}), None,
                    replace_scope=("as_of",))
