"""Shared fixtures: a real MariaDB/MySQL database per test module, and helpers.

Database tests use ``MOOCASSETS_TEST_DATABASE_URL`` (default: the local MariaDB, root without a
password). Without a reachable server they skip with a reason saying how to start one, except under
``CI=true``, where an unreachable server fails the run.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

DEFAULT_TEST_DATABASE_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
START_HINT = (
    "start MariaDB (e.g. `start-stop-daemon --start --oknodo --background --exec "
    "/usr/sbin/mariadbd`, or `docker run -p 3306:3306 -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 "
    "mariadb:10.11`) or point MOOCASSETS_TEST_DATABASE_URL at a MySQL 8 / MariaDB server"
)


def _server_url() -> sa.URL:
    return sa.make_url(os.environ.get("MOOCASSETS_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))


def _require_server() -> sa.URL:
    url = _server_url()
    try:
        eng = sa.create_engine(url, pool_pre_ping=True)
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        where = url.render_as_string(hide_password=True)
        msg = f"no MySQL/MariaDB at {where} ({exc.__class__.__name__}); {START_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return url


@pytest.fixture(scope="session")
def mysql_server_url() -> sa.URL:
    """URL of the server (its own default database); skips or fails when unreachable."""
    return _require_server()


def make_database(server_url: sa.URL, label: str) -> str:
    """Create a fresh, uniquely named database and return its URL as a string."""
    name = "mt_" + re.sub(r"[^a-z0-9_]", "_", label.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    eng = sa.create_engine(server_url)
    with eng.begin() as conn:
        conn.execute(
            sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        )
    eng.dispose()
    return server_url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: sa.URL, database_url: str) -> None:
    name = sa.make_url(database_url).database
    eng = sa.create_engine(server_url)
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    eng.dispose()


@pytest.fixture
def mysql_database_url(mysql_server_url: sa.URL, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh empty database for one test, dropped afterwards."""
    url = make_database(mysql_server_url, request.node.name)
    try:
        yield url
    finally:
        drop_database(mysql_server_url, url)


@pytest.fixture(scope="module")
def module_mysql_database_url(
    mysql_server_url: sa.URL, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh empty database shared by one test module."""
    url = make_database(mysql_server_url, request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield url
    finally:
        drop_database(mysql_server_url, url)
