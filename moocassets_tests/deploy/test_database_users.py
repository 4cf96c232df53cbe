"""The deploy's database users, for real on MariaDB: ``deploy/mysql-init/02-users.sh`` (which runs
``users.sql.template``) creates two users on two fresh test databases, then each user does its
service's work and is refused the other's database.

The script runs as the mysql image runs it: sourced by bash, with ``docker_process_sql`` (the
image's root login) standing in as a pipe into this server. MySQL 8 itself is not run here.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from moocassets.io import make_engine, write_table
from moocassets.io.objects import ObjectKey, TableObjects
from moocassets.schema import table_spec
from moocassets_tests.conftest import drop_database, make_database
from moocassets_tests.io.helpers import h5p_frame

pytestmark = pytest.mark.mysql

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "mysql-init" / "02-users.sh"
DENIED = (1044, 1045, 1142, 1143, 1227)  # access denied: db, login, table, column, privilege

# Executes the SQL the script pipes into docker_process_sql, as root, statement by statement.
RUN_AS_ROOT = """
import os, sys
import pymysql
from pymysql.constants import CLIENT
url = os.environ["ROOT_URL_PARTS"].split("|")
conn = pymysql.connect(host=url[0], port=int(url[1]), user=url[2], password=url[3],
                       client_flag=CLIENT.MULTI_STATEMENTS, autocommit=True)
with conn.cursor() as cur:
    cur.execute(sys.stdin.read())
    while cur.nextset():
        pass
conn.close()
"""


@dataclass
class Users:
    dagster: sa.URL
    warehouse: sa.URL
    env: dict[str, str]


def _run_script(server: sa.URL, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = "|".join([server.host or "127.0.0.1", str(server.port or 3306),
                     server.username or "root", server.password or ""])
    stub = f'docker_process_sql() {{ "{sys.executable}" -c "$RUN_AS_ROOT"; }}'
    return subprocess.run(
        ["bash", "-c", f'{stub}; set -eo pipefail; source "{SCRIPT}"'],
        env={"PATH": os.environ["PATH"], "RUN_AS_ROOT": RUN_AS_ROOT, "ROOT_URL_PARTS": root,
             **env},
        capture_output=True, text=True, timeout=120,
    )


def _drop_users(server: sa.URL, *names: str) -> None:
    engine = sa.create_engine(server)
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{name}'@'%%'")
    engine.dispose()


@pytest.fixture(scope="module")
def users(mysql_server_url: sa.URL) -> Iterator[Users]:
    suffix = secrets.token_hex(4)
    dagster_db = make_database(mysql_server_url, "users_dagster")
    warehouse_db = make_database(mysql_server_url, "users_warehouse")
    env = {
        "DAGSTER_MYSQL_DB": sa.make_url(dagster_db).database or "",
        "DAGSTER_MYSQL_USER": f"mt_dagster_{suffix}",
        "DAGSTER_MYSQL_PASSWORD": secrets.token_hex(12),
        "WAREHOUSE_MYSQL_DB": sa.make_url(warehouse_db).database or "",
        "WAREHOUSE_MYSQL_USER": f"mt_warehouse_{suffix}",
        "WAREHOUSE_MYSQL_PASSWORD": secrets.token_hex(12),
    }
    try:
        for _ in range(2):  # twice: re-running it (to tighten a deployment) is safe
            done = _run_script(mysql_server_url, env)
            assert done.returncode == 0, done.stderr
        yield Users(
            dagster=sa.make_url(dagster_db).set(
                username=env["DAGSTER_MYSQL_USER"], password=env["DAGSTER_MYSQL_PASSWORD"]),
            warehouse=sa.make_url(warehouse_db).set(
                username=env["WAREHOUSE_MYSQL_USER"], password=env["WAREHOUSE_MYSQL_PASSWORD"]),
            env=env,
        )
    finally:
        _drop_users(mysql_server_url, env["DAGSTER_MYSQL_USER"], env["WAREHOUSE_MYSQL_USER"])
        drop_database(mysql_server_url, dagster_db)
        drop_database(mysql_server_url, warehouse_db)


def _grants(url: sa.URL) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql("SHOW GRANTS")]
    finally:
        engine.dispose()


def _refused(url: sa.URL, sql: str) -> int:
    """The MySQL error code of ``sql`` run as ``url``'s user (0 if it succeeded)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    except sa.exc.DBAPIError as exc:
        return int(exc.orig.args[0])  # type: ignore[union-attr]
    finally:
        engine.dispose()
    return 0


def test_each_user_holds_its_own_database_only(users: Users) -> None:
    for url, allowed in ((users.dagster, users.dagster.database),
                         (users.warehouse, users.warehouse.database)):
        grants = _grants(url)
        on_databases = [g for g in grants if not g.startswith("GRANT USAGE ON *.*")]
        assert len(on_databases) == 1, grants
        assert f"ON `{allowed}`.*" in on_databases[0]
        assert "ALL PRIVILEGES" not in " ".join(grants)
        assert "WITH GRANT OPTION" not in " ".join(grants)
    warehouse_grant = next(g for g in _grants(users.warehouse) if "`.*" in g)
    assert "UPDATE" not in warehouse_grant  # partitions are replaced by DELETE + LOAD DATA


def test_dagster_user_migrates_and_uses_dagster_storage(users: Users, tmp_path: Path) -> None:
    url = users.dagster.set(drivername="mysql+mysqlconnector")
    (tmp_path / "dagster.yaml").write_text(
        "storage:\n  mysql:\n    mysql_url: "
        + url.render_as_string(hide_password=False) + "\ntelemetry:\n  enabled: false\n"
    )
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        instance.upgrade()  # what `dagster instance migrate` (the dagster-init service) does
        instance.add_dynamic_partitions("course_id", ["course-v1:A+B+C"])
        instance.report_runless_asset_event(
            dg.AssetMaterialization("enrollments", partition="course-v1:A+B+C"))
        assert instance.get_dynamic_partitions("course_id") == ["course-v1:A+B+C"]
        assert instance.get_latest_materialization_event(dg.AssetKey("enrollments"))
    finally:
        instance.dispose()


def test_warehouse_user_writes_tables_like_the_io_manager(users: Users) -> None:
    engine = make_engine(users.warehouse)
    spec = table_spec("h5p_scores")
    course = "course-v1:A+B+C"
    write_table(engine, spec, h5p_frame(course), [course])  # CREATE TABLE, LOAD DATA, DELETE
    write_table(engine, spec, h5p_frame(course, learners=2), [course])  # replace a partition
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {spec.name}").scalar_one()
    assert rows == len(h5p_frame(course, learners=2))
    whole = table_spec("h5p_scores")
    write_table(engine, whole, h5p_frame(course), None)  # staging table, RENAME, DROP
    # the extract/model store (pipeline_objects, the Celery variant's shared storage)
    store = TableObjects(users.warehouse)
    key = ObjectKey("extracts", "h5p_scores_extract", course)
    store.put_many({key: h5p_frame(course)})
    store.put_many({key: h5p_frame(course, learners=2)})  # replaced, not updated
    assert len(store.get_many([key])[key]) == len(h5p_frame(course, learners=2))


def test_neither_user_can_touch_the_other_database(users: Users) -> None:
    dagster_db, warehouse_db = users.dagster.database, users.warehouse.database
    engine = sa.create_engine(users.dagster)  # a table of Dagster's, whatever the test order
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (id INT)")
    engine.dispose()
    engine = sa.create_engine(users.warehouse)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (id INT)")
    engine.dispose()

    for url, other in ((users.warehouse, dagster_db), (users.dagster, warehouse_db)):
        for sql in (f"SELECT * FROM `{other}`.probe", f"INSERT INTO `{other}`.probe VALUES (1)",
                    f"DROP TABLE `{other}`.probe", f"CREATE TABLE `{other}`.t2 (id INT)",
                    "CREATE DATABASE mt_users_should_not_exist",
                    "SELECT COUNT(*) FROM mysql.user",
                    f"GRANT SELECT ON `{other}`.* TO CURRENT_USER"):
            assert _refused(url, sql) in DENIED, (url.username, sql)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            visible = {row[0] for row in conn.exec_driver_sql("SHOW DATABASES")}
        engine.dispose()
        assert other not in visible


def test_unsafe_values_are_refused_before_any_sql(mysql_server_url: sa.URL) -> None:
    env = {"DAGSTER_MYSQL_USER": "mt_x", "DAGSTER_MYSQL_PASSWORD": "pw'; DROP USER root; --",
           "WAREHOUSE_MYSQL_USER": "mt_y", "WAREHOUSE_MYSQL_PASSWORD": "ok"}
    done = _run_script(mysql_server_url, env)
    assert done.returncode != 0
    assert re.search("DAGSTER_MYSQL_PASSWORD may only contain", done.stderr), done.stderr
    engine = sa.create_engine(mysql_server_url)
    with engine.connect() as conn:
        made = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM mysql.user WHERE user IN ('mt_x', 'mt_y')").scalar_one()
    engine.dispose()
    assert made == 0
