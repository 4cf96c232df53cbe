"""``pipeline_objects`` in MariaDB: where extract frames and models travel between hosts."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa

from moocassets.io import objects
from moocassets.io.engine import dispose_engines
from moocassets.io.objects import OBJECTS_TABLE, ObjectKey, TableObjects

pytestmark = pytest.mark.mysql

A = ObjectKey("extracts", "h5p_scores_extract", "course-v1:Uni+A+2025")
A_UPPER = ObjectKey("extracts", "h5p_scores_extract", "course-v1:UNI+A+2025")
B = ObjectKey("extracts", "h5p_scores_extract", "course-v1:O'Reilly+B/1")
MODEL = ObjectKey("models", "dropout_risk_model")


def _frame(n: int, course: str) -> pd.DataFrame:
    return pd.DataFrame({"course_id": [course] * n, "user_id": range(n),
                         "score": [i / 7 for i in range(n)]})


def test_objects_larger_than_a_chunk_round_trip_and_case_matters(
    mysql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "CHUNK_BYTES", 4096)  # force several chunks per object
    store = TableObjects(mysql_database_url)
    big, other = _frame(20_000, A.partition), _frame(3, A_UPPER.partition)
    store.put_many({A: big, A_UPPER: other, MODEL: {"weights": [1.0, 2.0]}})
    with store.engine.connect() as conn:
        chunks = conn.execute(sa.text(
            f"SELECT COUNT(*) FROM {OBJECTS_TABLE} WHERE partition_key = :p"),
            {"p": A.partition}).scalar_one()
    assert chunks > 1
    # another "host": a store of its own on the same database reads what this one wrote
    dispose_engines()
    got = TableObjects(mysql_database_url).get_many([A, A_UPPER, B, MODEL])
    pd.testing.assert_frame_equal(got[A], big)
    pd.testing.assert_frame_equal(got[A_UPPER], other)
    assert got[MODEL] == {"weights": [1.0, 2.0]} and B not in got


def test_a_failed_write_keeps_every_previous_object(
    mysql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TableObjects(mysql_database_url)
    before = {A: _frame(5, A.partition), B: _frame(6, B.partition)}
    store.put_many(before)
    too_long = ObjectKey("extracts", "h5p_scores_extract", "x" * 300)  # > VARCHAR(255)
    with pytest.raises(sa.exc.DBAPIError):
        store.put_many({A: _frame(1, A.partition), B: _frame(1, B.partition), too_long: 1})
    got = store.get_many([A, B])
    for key, frame in before.items():
        pd.testing.assert_frame_equal(got[key], frame)  # the whole write rolled back


def test_concurrent_writers_of_different_courses_do_not_block_each_other(
    mysql_database_url: str,
) -> None:
    store = TableObjects(mysql_database_url)
    errors: list[BaseException] = []

    def write(key: ObjectKey) -> None:
        try:
            for i in range(10):
                store.put_many({key: _frame(100 + i, key.partition)})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in (A, B, A_UPPER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert {k: len(v) for k, v in store.get_many([A, B, A_UPPER]).items()} == {
        A: 109, B: 109, A_UPPER: 109}
