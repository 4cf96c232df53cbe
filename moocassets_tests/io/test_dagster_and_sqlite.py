"""The IO manager through dg.materialize (dynamic course partitions), SQLite, and the resource."""


from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import AssetExecutionContext

from moocassets.io import WarehouseIOManager, WarehouseResource, make_engine
from moocassets.io.run_cache import RunFrameCache
from moocassets.partitions import course_partitions
from moocassets.schema import table_spec
from moocassets_tests.io.helpers import COURSES, NASTY_COURSE, h5p_frame, sort_rows

THIRD = "course-v1:DHQG-HCM+FM100+2025_S2"
ALL = [*COURSES, THIRD]


@dg.asset(
    key=["warehouse", "h5p_scores"],
    partitions_def=course_partitions,
    io_manager_key="warehouse",
)
def h5p_scores(context: AssetExecutionContext) -> pd.DataFrame:
    return pd.concat([h5p_frame(k, learners=4) for k in context.partition_keys], ignore_index=True)


@dg.asset(key=["warehouse", "h5p_scores_summary"], io_manager_key="warehouse",
          deps=[], ins={"scores": dg.AssetIn(key=["warehouse", "h5p_scores"])})
def h5p_scores_summary(scores: pd.DataFrame) -> pd.DataFrame:
    g = scores.groupby(["user_id", "course_id"], as_index=False)
    return g.agg(
        total_contents=("content_id", "count"),
        completed_contents=("is_finished", lambda s: int(s.fillna(False).sum())),
        total_score=("score", "sum"),
        total_max_score=("max_score", "sum"),
        total_time_spent=("time_spent", "sum"),
        last_activity_at=("opened_at", "max"),
    ).assign(overall_percentage=lambda f: (100 * f.total_score / f.total_max_score).round(2))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(course_partitions.name, ALL)
        yield inst


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []

    def capture(conn, cursor, statement, params, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", capture)
    return seen


def _metadata(instance: dg.DagsterInstance, key: list[str]) -> dict:
    ev = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert ev is not None and ev.asset_materialization is not None
    return dict(ev.asset_materialization.metadata)


@pytest.mark.mysql
def test_materialize_partitions_range_and_full_load(
    mysql_database_url: str, instance: dg.DagsterInstance
) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    res = dg.materialize([h5p_scores], instance=instance, partition_key=NASTY_COURSE,
                         resources={"warehouse": io})
    assert res.success
    meta = _metadata(instance, ["warehouse", "h5p_scores"])
    for key in ("dagster/row_count", "dagster/partition_row_count", "dagster/column_schema",
                "dagster/table_name", "write_duration_s", "load_method"):
        assert key in meta, key
    assert meta["dagster/partition_row_count"].value == 12
    assert meta["dagster/table_name"].value.endswith(".h5p_scores")
    assert meta["dagster/column_schema"].value == table_spec("h5p_scores").table_schema
    assert "@" not in str({k: v.value for k, v in meta.items()})  # no URL/credentials

    # one run covering a range of partitions (single-run backfill)
    res = dg.materialize([h5p_scores], instance=instance, resources={"warehouse": io}, tags={
        "dagster/asset_partition_range_start": COURSES[0],
        "dagster/asset_partition_range_end": NASTY_COURSE})
    assert res.success
    meta = _metadata(instance, ["warehouse", "h5p_scores"])
    assert meta["dagster/partition_row_count"].value == 24
    assert meta["dagster/row_count"].value == 24

    # the unpartitioned downstream loads every partition with a plain SELECT (no IN list)
    statements = _statements(make_engine(mysql_database_url))
    res = dg.materialize([h5p_scores, h5p_scores_summary], instance=instance,
                         resources={"warehouse": io}, selection=[h5p_scores_summary])
    assert res.success
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT `USER_ID`")]
    assert selects and all(" IN " not in s for s in selects)
    summary = res.output_for_node("warehouse__h5p_scores_summary")
    assert sorted(summary["course_id"].unique()) == sorted(COURSES)
    meta = _metadata(instance, ["warehouse", "h5p_scores_summary"])
    assert meta["load_method"].value == "load_data+rename"
    assert meta["dagster/row_count"].value == 8


@dg.asset(key=["warehouse", "h5p_copy"], partitions_def=course_partitions,
          io_manager_key="mem", ins={"scores": dg.AssetIn(key=["warehouse", "h5p_scores"])})
def h5p_copy(scores: pd.DataFrame) -> pd.DataFrame:
    return scores


@pytest.mark.mysql
def test_a_run_reads_what_it_wrote_from_memory_and_it_equals_a_read(
    mysql_database_url: str, instance: dg.DagsterInstance
) -> None:
    @dg.asset(key=["warehouse", "h5p_scores"], partitions_def=course_partitions,
              io_manager_key="warehouse")
    def subsecond(context: AssetExecutionContext) -> pd.DataFrame:
        frame = h5p_frame(context.partition_key, learners=4)
        frame["opened_at"] += pd.Timedelta(milliseconds=730)  # DATETIME keeps whole seconds
        return frame

    io = WarehouseIOManager(database_url=mysql_database_url)
    resources = {"warehouse": io, "mem": dg.InMemoryIOManager()}
    statements = _statements(make_engine(mysql_database_url))
    res = dg.materialize([subsecond, h5p_copy], instance=instance, partition_key=NASTY_COURSE,
                         resources=resources)
    assert res.success
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT `USER_ID`")]
    assert reads == []  # the downstream step got the written rows without reading them back
    in_run = res.output_for_node("warehouse__h5p_copy")
    stored = WarehouseResource(database_url=mysql_database_url).read_table(
        "h5p_scores", [NASTY_COURSE])
    pd.testing.assert_frame_equal(sort_rows(in_run, "h5p_scores"),
                                  sort_rows(stored, "h5p_scores"))
    # a run that only reads (the upstream is not written in it) reads MySQL, same rows
    statements.clear()
    res = dg.materialize([h5p_scores, h5p_copy], instance=instance, partition_key=NASTY_COURSE,
                         resources=resources, selection=[h5p_copy])
    assert res.success
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT `USER_ID`")]
    assert len(reads) == 1
    pd.testing.assert_frame_equal(sort_rows(res.output_for_node("warehouse__h5p_copy"),
                                            "h5p_scores"), sort_rows(stored, "h5p_scores"))


def test_run_frame_cache_keeps_the_last_runs_and_hands_out_copies() -> None:
    cache = RunFrameCache(max_runs=2)
    frame = pd.DataFrame({"course_id": ["c"], "user_id": [1]})
    cache.put("r1", "t", ["c"], frame)
    got = cache.get("r1", "t", ["c"])
    assert got is not None and got is not frame
    got.loc[0, "user_id"] = 99  # a step changing its input does not change the next one's
    assert cache.get("r1", "t", ["c"]).loc[0, "user_id"] == 1  # type: ignore[union-attr]
    assert cache.get("r1", "t", ["d"]) is None and cache.get("r2", "t", ["c"]) is None
    cache.put("r2", "t", ["c"], frame)
    cache.put("r3", "t", ["c"], frame)
    assert cache.get("r1", "t", ["c"]) is None  # only the last two runs are kept
    assert cache.get("r3", "t", ["c"]) is not None


@pytest.mark.mysql
def test_materialize_failure_leaves_partition_intact(
    mysql_database_url: str, instance: dg.DagsterInstance
) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    assert dg.materialize([h5p_scores], instance=instance, partition_key=THIRD,
                          resources={"warehouse": io}).success

    @dg.asset(key=["warehouse", "h5p_scores"], partitions_def=course_partitions,
              io_manager_key="warehouse")
    def bad(context: AssetExecutionContext) -> pd.DataFrame:
        return h5p_frame(COURSES[0])  # rows of another course than the partition

    res = dg.materialize([bad], instance=instance, partition_key=THIRD,
                         resources={"warehouse": io}, raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure)
    assert "course-v1:DHQG-HCM+FM101+2025_S2" in str(failure.step_failure_data.error)
    assert WarehouseResource(database_url=mysql_database_url).count_rows(
        "h5p_scores", [THIRD]) == 12


def test_sqlite_create_replace_load_and_unpartitioned(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    io = WarehouseIOManager(database_url=url)
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(course_partitions.name, ALL)
        for key in COURSES:
            assert dg.materialize([h5p_scores], instance=inst, partition_key=key,
                                  resources={"warehouse": io}).success
        # re-materialize one partition: replaced, not duplicated
        assert dg.materialize([h5p_scores], instance=inst, partition_key=COURSES[0],
                              resources={"warehouse": io}).success
        meta = _metadata(inst, ["warehouse", "h5p_scores"])
        assert meta["load_method"].value == "insert"
        assert meta["dagster/row_count"].value == 24
        assert meta["dagster/table_name"].value == "main.h5p_scores"
        res = dg.materialize([h5p_scores, h5p_scores_summary], instance=inst,
                             resources={"warehouse": io}, selection=[h5p_scores_summary])
        assert res.success
    wh = WarehouseResource(database_url=url)
    got = sort_rows(wh.read_table("h5p_scores", [NASTY_COURSE]), "h5p_scores")
    expected = sort_rows(table_spec("h5p_scores").coerce_frame(h5p_frame(NASTY_COURSE, 4)),
                         "h5p_scores")
    pd.testing.assert_frame_equal(got, expected)
    assert wh.count_rows("h5p_scores_summary") == 8
    assert wh.rows_per_course("h5p_scores") == {COURSES[0]: 12, NASTY_COURSE: 12}
    with make_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.mysql
def test_warehouse_resource_reads(mysql_database_url: str) -> None:
    from moocassets.io import write_table

    engine = make_engine(mysql_database_url)
    spec = table_spec("h5p_scores")
    for c in COURSES:
        write_table(engine, spec, h5p_frame(c, learners=3), [c])
    wh = WarehouseResource(database_url=mysql_database_url)
    assert wh.table_exists("h5p_scores") and not wh.table_exists("raw_data")
    assert wh.count_rows("h5p_scores") == 18
    assert wh.count_rows("h5p_scores", [NASTY_COURSE]) == 9
    assert wh.count_rows("h5p_scores", []) == 0
    frame = wh.read_table("h5p_scores", [NASTY_COURSE])
    assert set(frame["course_id"]) == {NASTY_COURSE}
    assert str(frame["opened_at"].dtype) == "datetime64[ns, UTC]"
    q = wh.query("SELECT course_id, COUNT(*) AS n FROM h5p_scores WHERE course_id IN :ids "
                 "GROUP BY course_id", {"ids": [NASTY_COURSE]})
    assert q.to_dict(orient="records") == [{"course_id": NASTY_COURSE, "n": 9}]
    secret = WarehouseResource(database_url="mysql+pymysql://u:s3cret@h/db")
    assert secret.display_url == "mysql+pymysql://u:***@h/db"
