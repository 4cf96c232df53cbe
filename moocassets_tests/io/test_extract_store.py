"""The extract store: one object per (asset, course), ranged outputs split, removals reflected.

Every test runs against both places the store keeps objects: files under ``base_dir`` and the
``pipeline_objects`` table of a database (SQLite here; MariaDB in ``test_objects_in_mysql``).

(No ``from __future__ import annotations``: Dagster checks the ``context`` annotation.)
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from moocassets.io import ExtractStoreIOManager
from moocassets.io.objects import OBJECTS_TABLE
from moocassets.partitions import course_partitions

NASTY = "course-v1:O'Reilly+CS:101/2025_T1"
PLAIN = "course-v1:Uni+A+2025"
STORE: list[Path] = []


def _frame(course: str, users: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"course_id": [course] * len(users), "user_id": users})


@dg.asset(partitions_def=course_partitions, io_manager_key="extracts")
def some_extract(context: dg.AssetExecutionContext) -> pd.DataFrame:
    frames = {PLAIN: _frame(PLAIN, [1, 2]), NASTY: _frame(NASTY, [3])}
    if context.run.tags.get("empty") == "yes":
        return _frame(PLAIN, [])
    return pd.concat([frames[k] for k in context.partition_keys], ignore_index=True)


@dg.asset(partitions_def=course_partitions, io_manager_key="extracts",
          ins={"upstream": dg.AssetIn("some_extract")})
def reader(upstream: pd.DataFrame) -> pd.DataFrame:
    return upstream


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(course_partitions.name, [PLAIN, NASTY])
        yield inst


@pytest.fixture(params=["files", "table"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ExtractStoreIOManager:
    if request.param == "files":
        return ExtractStoreIOManager(base_dir=str(tmp_path))
    return ExtractStoreIOManager(database_url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}")


def _stored_courses(store: ExtractStoreIOManager, tmp_path: Path) -> list[str]:
    """How the store laid out some_extract: file names, or partition keys of the table."""
    if store.base_dir:
        return sorted(p.name for p in (tmp_path / "some_extract").iterdir())
    engine = sa.create_engine(store.database_url or "")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT DISTINCT partition_key FROM {OBJECTS_TABLE} "
                                    "WHERE store = 'extracts' AND asset = 'some_extract'"))
        keys = sorted(r[0] for r in rows)
    engine.dispose()
    return keys


def _run(instance: dg.DagsterInstance, store: ExtractStoreIOManager,
         selection: list[dg.AssetsDefinition], **kw: object) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [some_extract, reader], selection=selection, instance=instance,
        resources={"extracts": store}, **kw)  # type: ignore[arg-type]


def test_a_ranged_output_is_split_per_course_and_read_back_per_course(
    instance: dg.DagsterInstance, store: ExtractStoreIOManager, tmp_path: Path
) -> None:
    res = _run(instance, store, [some_extract], tags={
        "dagster/asset_partition_range_start": PLAIN,
        "dagster/asset_partition_range_end": NASTY})
    assert res.success
    stored = _stored_courses(store, tmp_path)
    if store.base_dir:
        assert len(stored) == 2 and all("/" not in f for f in stored)  # ids quoted into names
    else:
        assert stored == sorted([PLAIN, NASTY])
    # a later per-course run reads exactly its course's rows
    res = _run(instance, store, [reader], partition_key=NASTY)
    assert res.success
    assert res.output_for_node("reader")["user_id"].tolist() == [3]


def test_a_course_without_rows_replaces_what_was_stored(
    instance: dg.DagsterInstance, store: ExtractStoreIOManager
) -> None:
    assert _run(instance, store, [some_extract], partition_key=PLAIN).success
    assert _run(instance, store, [some_extract], partition_key=PLAIN,
                tags={"empty": "yes"}).success
    res = _run(instance, store, [reader], partition_key=PLAIN)
    got = res.output_for_node("reader")
    assert len(got) == 0 and list(got.columns) == ["course_id", "user_id"]


def test_rows_of_another_course_fail_and_a_missing_course_is_named(
    instance: dg.DagsterInstance, store: ExtractStoreIOManager
) -> None:
    res = _run(instance, store, [reader], partition_key=PLAIN, raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure)
    assert "some_extract" in str(failure.step_failure_data.error) and PLAIN in str(
        failure.step_failure_data.error)

    @dg.asset(name="some_extract", partitions_def=course_partitions, io_manager_key="extracts")
    def wrong_course() -> pd.DataFrame:
        return _frame(NASTY, [9])

    res = dg.materialize([wrong_course], partition_key=PLAIN, instance=instance,
                         resources={"extracts": store}, raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure)
    assert NASTY in str(failure.step_failure_data.error)
