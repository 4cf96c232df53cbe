"""The warehouse IO manager against the real MariaDB (fresh database per test)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from moocassets.io import (
    IncompatibleSchemaError,
    TableNotMaterializedError,
    WarehouseIOManager,
    WarehouseWriteError,
    WriteEvent,
    WriteOptions,
    make_engine,
    read_table,
    write_table,
)
from moocassets.partitions import course_partitions
from moocassets.schema import SchemaError, table_spec
from moocassets_tests.io.helpers import (
    COURSES,
    NASTY_COURSE,
    ListLog,
    db_rows,
    enrollments_frame,
    h5p_frame,
    sort_rows,
)

pytestmark = pytest.mark.mysql

H5P = table_spec("h5p_scores")
_INSTANCE: list[dg.DagsterInstance] = []


@pytest.fixture(scope="module", autouse=True)
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """One test instance with the course partitions registered (contexts need it for keys)."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(course_partitions.name, [*COURSES])
        _INSTANCE.append(instance)
        yield instance
        _INSTANCE.clear()


def _write(io: WarehouseIOManager, table: str, frame: pd.DataFrame, key: str | None) -> dict:
    with dg.build_output_context(
        asset_key=dg.AssetKey(["warehouse", table]),
        partition_key=key,
        asset_partitions_def=course_partitions if key is not None else None,
        instance=_INSTANCE[0],
    ) as ctx:
        io.handle_output(ctx, frame)
        return dict(ctx.get_logged_metadata())


def _load(io: WarehouseIOManager, table: str, key: str | None) -> pd.DataFrame:
    with dg.build_input_context(
        asset_key=dg.AssetKey(["warehouse", table]),
        partition_key=key,
        asset_partitions_def=course_partitions if key is not None else None,
        instance=_INSTANCE[0],
    ) as ctx:
        return io.load_input(ctx)


def _content(url: str, course: str) -> list[tuple]:
    return db_rows(
        url,
        "SELECT user_id, content_id, score, folder_name FROM h5p_scores "
        "WHERE course_id = :c ORDER BY user_id, content_id",
        {"c": course},
    )


# ---- round trip ------------------------------------------------------------------------------


def test_round_trip_all_kinds_unicode_nulls_and_nasty_course_id(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    for course in COURSES:
        meta = _write(io, "enrollments", enrollments_frame(course), course)
        assert meta["load_method"].value == "load_data"
    spec = table_spec("enrollments")
    for course in COURSES:
        got = sort_rows(_load(io, "enrollments", course), "enrollments")
        expected = sort_rows(spec.coerce_frame(enrollments_frame(course)), "enrollments")
        pd.testing.assert_frame_equal(got, expected)
        assert str(got["created"].dtype) == "datetime64[ns, UTC]"
        assert got.loc[0, "created"] == pd.Timestamp("2025-01-01 20:04:05", tz="UTC")
        attrs = {"city": "Hà Nội", "tags": ["x", 1, None], "ok": True}
        assert got.loc[0, "all_attributes"] == attrs
        assert got.loc[1, "username"] == "tab\tnew\nline\r\\back\\N"
        assert got.loc[1, "email"] is None and got.loc[2, "email"] == "\\N"
        assert got.loc[2, "full_name"] == "NULL" and got.loc[2, "username"] == ""
        assert got.loc[1, "is_active"] is pd.NA and got.loc[1, "all_attributes"] is None
    # the nasty key was bound, not interpolated: exactly its own rows
    assert db_rows(mysql_database_url, "SELECT COUNT(*) FROM enrollments WHERE course_id = :c",
                   {"c": NASTY_COURSE}) == [(3,)]


def test_decimals_exact_at_scale_and_booleans(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    frame = h5p_frame(COURSES[0], learners=2, contents=2)
    frame["percentage"] = [0.01, 99.99, 33.335, None]
    frame["time_spent"] = [0.0, 1234567890.12, 0.1 + 0.2, 5.0]
    _write(io, "h5p_scores", frame, COURSES[0])
    raw = db_rows(mysql_database_url, "SELECT CAST(percentage AS CHAR), CAST(time_spent AS CHAR), "
                  "is_finished FROM h5p_scores ORDER BY user_id, content_id")
    assert [r[0] for r in raw] == ["0.01", "99.99", "33.34", None]
    assert [r[1] for r in raw] == ["0.00", "1234567890.12", "0.30", "5.00"]
    got = sort_rows(_load(io, "h5p_scores", COURSES[0]), "h5p_scores")
    assert got["percentage"].isna().tolist() == [False, False, False, True]
    assert got["time_spent"].tolist() == [0.0, 1234567890.12, 0.3, 5.0]
    assert str(got["is_finished"].dtype) == "boolean"


def test_rematerialize_is_idempotent_and_reflects_removals(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    a, b = COURSES
    _write(io, "h5p_scores", h5p_frame(b, learners=2), b)
    _write(io, "h5p_scores", h5p_frame(a), a)
    first = sort_rows(_load(io, "h5p_scores", a), "h5p_scores")
    meta = _write(io, "h5p_scores", h5p_frame(a), a)
    second = sort_rows(_load(io, "h5p_scores", a), "h5p_scores")
    pd.testing.assert_frame_equal(first, second)
    assert meta["dagster/partition_row_count"].value == 15
    assert meta["dagster/row_count"].value == 15 + 6
    smaller = h5p_frame(a).query("not (user_id == 3 and content_id == 1)")
    _write(io, "h5p_scores", smaller, a)
    keys = set(map(tuple, _load(io, "h5p_scores", a)[["user_id", "content_id"]].to_numpy()))
    assert (3, 1) not in keys and len(keys) == 14
    assert len(_content(mysql_database_url, b)) == 6  # the other partition untouched


# ---- bad input -------------------------------------------------------------------------------


def _missing_column(f: pd.DataFrame) -> pd.DataFrame:
    return f.drop(columns=["content_id"])


def _wrong_type(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(score=["ten"] * len(f))


def _duplicate_keys(f: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([f, f.iloc[[4]]], ignore_index=True)


def _out_of_range(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(percentage=[150.0] * len(f))


def _stray_course(f: pd.DataFrame) -> pd.DataFrame:
    stray = h5p_frame("course-v1:Other+X+1", learners=1, contents=2).iloc[[1]]
    return pd.concat([f, stray], ignore_index=True)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_missing_column, r"content_id"),
        (_wrong_type, r"column score"),
        (_duplicate_keys, r"duplicate key \(course_id, user_id, content_id\).*'user_id': 2"),
        (_out_of_range, r"column percentage.*out of range"),
        (_stray_course, r"course-v1:Other\+X\+1"),
    ],
)
def test_bad_frame_rejected_before_anything_is_deleted(
    mysql_database_url: str, mutate, expected: str
) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    course = COURSES[0]
    _write(io, "h5p_scores", h5p_frame(course), course)
    before = _content(mysql_database_url, course)
    with pytest.raises(SchemaError, match=expected):
        _write(io, "h5p_scores", mutate(h5p_frame(course, marker="new")), course)
    assert _content(mysql_database_url, course) == before


def test_load_of_missing_table_names_table_and_partition(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    with pytest.raises(TableNotMaterializedError, match=r"h5p_scores.*not materialized.*FM101"):
        _load(io, "h5p_scores", COURSES[0])


def test_unknown_table_is_a_clear_error(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    with pytest.raises(Exception, match=r"no declared schema for table 'nope'"):
        _write(io, "nope", h5p_frame(COURSES[0]), COURSES[0])


# ---- faults ----------------------------------------------------------------------------------


def _kill(server_url: str, connection_id: int) -> None:
    eng = sa.create_engine(server_url)
    try:
        with eng.connect() as conn:
            conn.execute(sa.text("KILL :cid"), {"cid": connection_id})
    finally:
        eng.dispose()


def test_connection_killed_between_delete_and_insert(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    course = COURSES[0]
    _write(io, "h5p_scores", h5p_frame(course), course)
    before = _content(mysql_database_url, course)
    killed: list[int] = []

    def kill_after_delete(ev: WriteEvent) -> None:
        if ev.stage == "after_delete":
            assert ev.connection_id is not None
            killed.append(ev.connection_id)
            _kill(mysql_database_url, ev.connection_id)

    io.set_write_hook(kill_after_delete)
    with pytest.raises(WarehouseWriteError, match=r"h5p_scores.*rolled back") as info:
        _write(io, "h5p_scores", h5p_frame(course, learners=8, marker="new"), course)
    assert killed, "the hook ran"
    assert "previous rows are intact" in str(info.value)
    assert _content(mysql_database_url, course) == before
    io.set_write_hook(None)
    _write(io, "h5p_scores", h5p_frame(course, learners=8, marker="new"), course)
    after = _content(mysql_database_url, course)
    assert len(after) == 24 and {r[3] for r in after} == {"new"}


def test_load_data_warning_fails_and_rolls_back(mysql_database_url: str) -> None:
    """With LOCAL, a duplicate key is only a warning: the IO manager must fail the write itself."""
    io = WarehouseIOManager(database_url=mysql_database_url)
    a, b = COURSES
    _write(io, "h5p_scores", h5p_frame(a, learners=1, contents=1, marker="x"), a)
    _write(io, "h5p_scores", h5p_frame(b, learners=1, contents=1, marker="y"), b)
    eng = make_engine(mysql_database_url)
    with eng.begin() as conn:  # an extra, undeclared unique index the new rows will violate
        conn.execute(sa.text("CREATE UNIQUE INDEX uq_sneaky ON h5p_scores (folder_name)"))
    intact_a, intact_b = _content(mysql_database_url, a), _content(mysql_database_url, b)
    with pytest.raises(WarehouseWriteError, match=r"LOAD DATA.*loaded 0 of 1 rows.*1062"):
        _write(io, "h5p_scores", h5p_frame(b, learners=1, contents=1, marker="x"), b)
    assert _content(mysql_database_url, a) == intact_a
    assert _content(mysql_database_url, b) == intact_b


def test_falls_back_to_insert_when_local_infile_is_refused(mysql_database_url: str) -> None:
    engine = make_engine(mysql_database_url, local_infile=False)  # client refuses LOCAL INFILE
    log = ListLog()
    course = COURSES[1]
    first = write_table(engine, H5P, h5p_frame(course), [course], log=log)
    second = write_table(engine, H5P, h5p_frame(course, marker="again"), [course], log=log)
    assert (first.method, second.method) == ("insert", "insert")
    assert sum("LOAD DATA LOCAL INFILE refused" in m for _, m in log.messages) == 1
    got = sort_rows(read_table(engine, H5P, [course]), "h5p_scores")
    expected = sort_rows(H5P.coerce_frame(h5p_frame(course, marker="again")), "h5p_scores")
    pd.testing.assert_frame_equal(got, expected)


def test_insert_path_round_trip_matches_load_data(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url, use_load_data=False)
    for course in COURSES:
        assert _write(io, "enrollments", enrollments_frame(course), course)[
            "load_method"].value == "insert"
        got = sort_rows(_load(io, "enrollments", course), "enrollments")
        expected = sort_rows(table_spec("enrollments").coerce_frame(enrollments_frame(course)),
                             "enrollments")
        pd.testing.assert_frame_equal(got, expected)


# ---- concurrency -----------------------------------------------------------------------------


def _run_threads(*targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_concurrent_writers_of_different_partitions(mysql_database_url: str) -> None:
    courses = [f"course-v1:DHQG-HCM+FM10{i}+2025_S2" for i in range(2)]
    log = ListLog()
    opts = WriteOptions(retry_backoff_seconds=0.05)
    engine = make_engine(mysql_database_url)
    write_table(engine, H5P, h5p_frame(courses[0], learners=1), [courses[0]])  # create table

    def writer(course: str) -> None:
        for i in range(4):
            write_table(engine, H5P, h5p_frame(course, learners=200, contents=5,
                                               marker=f"{course}#{i}"), [course], opts, log)

    errors = _run_threads(lambda: writer(courses[0]), lambda: writer(courses[1]))
    assert errors == []
    for course in courses:
        rows = db_rows(mysql_database_url, "SELECT folder_name, COUNT(*) FROM h5p_scores "
                       "WHERE course_id = :c GROUP BY folder_name", {"c": course})
        assert rows == [(f"{course}#3", 1000)]


def _wait_until_other_writer_blocks(url: str, seconds: float = 30) -> bool:
    """True once another connection of this database waits for the table's write lock."""
    db = sa.make_url(url).database
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = db_rows(url, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE db = :d "
                       "AND (state = 'User lock' OR info LIKE 'DELETE%')", {"d": db})
        if rows[0][0] > 0:
            return True
        time.sleep(0.05)
    return False


def test_concurrent_writers_of_the_same_partition_last_commit_wins(mysql_database_url: str) -> None:
    course = COURSES[1]
    engine = make_engine(mysql_database_url)
    write_table(engine, H5P, h5p_frame(course, marker="old"), [course])
    a_in_txn = threading.Event()
    saw_b_waiting: list[bool] = []

    def hold_until_b_waits(ev: WriteEvent) -> None:
        if ev.stage == "before_commit" and ev.attempt == 1:
            a_in_txn.set()
            saw_b_waiting.append(_wait_until_other_writer_blocks(mysql_database_url))

    def writer_a() -> None:
        write_table(engine, H5P, h5p_frame(course, learners=30, marker="A"), [course],
                    hook=hold_until_b_waits)

    def writer_b() -> None:
        assert a_in_txn.wait(60)
        write_table(engine, H5P, h5p_frame(course, learners=20, marker="B"), [course])

    assert _run_threads(writer_a, writer_b) == []
    assert saw_b_waiting == [True]  # B really waited for A's transaction
    rows = db_rows(mysql_database_url, "SELECT folder_name, COUNT(*), COUNT(DISTINCT user_id, "
                   "content_id) FROM h5p_scores WHERE course_id = :c GROUP BY folder_name",
                   {"c": course})
    assert rows == [("B", 60, 60)]


# ---- schema evolution ------------------------------------------------------------------------


def test_new_declared_column_is_added_and_logged(mysql_database_url: str) -> None:
    import dataclasses

    engine = make_engine(mysql_database_url)
    old_spec = dataclasses.replace(
        H5P, columns=tuple(c for c in H5P.columns if c.name != "folder_name")
    )
    course = COURSES[0]
    write_table(engine, old_spec, h5p_frame(course).drop(columns=["folder_name"]), [course])
    log = ListLog()
    result = write_table(engine, H5P, h5p_frame(course, marker="Thư mục 2"), [course], log=log)
    assert result.columns_added == ["folder_name"]
    assert "added column folder_name VARCHAR(512)" in log.text()
    assert {r[3] for r in _content(mysql_database_url, course)} == {"Thư mục 2"}


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        ("ALTER TABLE h5p_scores MODIFY content_title VARCHAR(100)",
         r"h5p_scores.*column content_title: database type VARCHAR\(100\), "
         r"declared VARCHAR\(512\)"),
        ("ALTER TABLE h5p_scores MODIFY score VARCHAR(10)",
         r"h5p_scores.*column score: database type VARCHAR\(10\), declared INT"),
        ("ALTER TABLE h5p_scores MODIFY percentage DECIMAL(5,1)",
         r"column percentage: database type DECIMAL\(5,1\), declared DECIMAL\(5,2\)"),
        ("ALTER TABLE h5p_scores MODIFY folder_name VARCHAR(512) NOT NULL DEFAULT ''",
         r"column folder_name: NOT NULL in the database"),
        ("ALTER TABLE h5p_scores DROP INDEX uq_h5p_scores_key",
         r"unique key \(course_id, user_id, content_id\): missing"),
    ],
)
def test_incompatible_change_fails_and_changes_nothing(
    mysql_database_url: str, ddl: str, expected: str
) -> None:
    from moocassets.io.ddl import reset_verification

    course = COURSES[0]
    engine = make_engine(mysql_database_url)
    write_table(engine, H5P, h5p_frame(course), [course])
    with engine.begin() as conn:
        conn.execute(sa.text(ddl))
    reset_verification(engine, "h5p_scores")  # a new process would re-verify
    show = "SHOW CREATE TABLE h5p_scores"
    before_ddl = db_rows(mysql_database_url, show)
    before_rows = _content(mysql_database_url, course)
    with pytest.raises(IncompatibleSchemaError, match=expected):
        write_table(engine, H5P, h5p_frame(course, marker="new"), [course])
    assert db_rows(mysql_database_url, show) == before_ddl
    assert _content(mysql_database_url, course) == before_rows


# ---- unpartitioned ---------------------------------------------------------------------------


def test_unpartitioned_replace_via_staging_and_rename(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    both = pd.concat([h5p_frame(c) for c in COURSES], ignore_index=True)
    meta = _write(io, "h5p_scores", both, None)
    assert meta["load_method"].value == "load_data+rename"
    meta = _write(io, "h5p_scores", h5p_frame(COURSES[0], learners=2, marker="only"), None)
    assert meta["dagster/row_count"].value == 6
    got = _load(io, "h5p_scores", None)
    assert set(got["folder_name"]) == {"only"} and len(got) == 6
    tables = db_rows(mysql_database_url, "SHOW TABLES")
    assert tables == [("h5p_scores",)]  # no staging or old table left behind


# ---- secrets ---------------------------------------------------------------------------------


def test_password_never_in_errors() -> None:
    io = WarehouseIOManager(database_url="mysql+pymysql://bob:s3cr3t-pw@127.0.0.1:1/nowhere")
    with pytest.raises(Exception) as info:
        _write(io, "h5p_scores", h5p_frame(COURSES[0]), COURSES[0])
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert "s3cr3t-pw" not in "\n".join(chain)


def test_json_column_stored_as_valid_json(mysql_database_url: str) -> None:
    io = WarehouseIOManager(database_url=mysql_database_url)
    _write(io, "enrollments", enrollments_frame(COURSES[0]), COURSES[0])
    raw = db_rows(mysql_database_url, "SELECT all_attributes FROM enrollments WHERE user_id = 1")
    assert json.loads(raw[0][0]) == {"city": "Hà Nội", "tags": ["x", 1, None], "ok": True}
