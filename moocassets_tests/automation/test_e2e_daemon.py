"""End to end with ``dagster-daemon``: discovery -> automatic load -> new enrollment -> raw_data;
a ranged backfill while the daemon runs is not raced by the automation.

The simulator serves on a loopback port (in this process), the warehouse is a fresh MariaDB
database, Dagster storage is SQLite under a temporary DAGSTER_HOME, and sensor intervals are
shortened through the MOOCASSETS_*_INTERVAL_SECONDS settings read at definitions load.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from moocassets.automation import AUTOMATION_SENSOR_NAME
from moocassets.backfill import RANGE_END_TAG, RANGE_START_TAG
from moocassets.partitions import COURSE_PARTITIONS_NAME
from moocassets.processes import stop_process_group
from moocassets.simulator import (
    World,
    WorldConfig,
    create_app,
    h5p_base,
    mooc_base,
    serve_in_thread,
)

pytestmark = [pytest.mark.e2e, pytest.mark.mysql]

REPO = Path(__file__).resolve().parents[2]
SESSION = "e2e-session"
FIRST_LOAD_TIMEOUT_S = 300.0
ENROLLMENT_TIMEOUT_S = 240.0


@contextlib.contextmanager
def _serve(courses: int, learners: int) -> Iterator[tuple[str, Starlette]]:
    """The simulator on a loopback port: its root url and the app (``app.state.stats``)."""
    world = World(WorldConfig(courses=courses, learners=learners, seed=5))
    app = create_app(world, mooc_email="ops@example.edu", mooc_password="pw",
                     session_ids=[SESSION])
    with serve_in_thread(app) as root:
        yield root, app


@pytest.fixture
def simulator() -> Iterator[str]:
    with _serve(courses=1, learners=15) as (root, _):
        yield root


def _rows(url: str, course: str) -> set[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("raw_data"):
                return set()
            result = conn.execute(
                sa.text("SELECT user_id FROM raw_data WHERE course_id = :c"), {"c": course}
            )
            return {int(r[0]) for r in result}
    finally:
        engine.dispose()


def _wait_for(predicate: object, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster-daemon exited ({proc.returncode}) waiting for {what}"
        if predicate():  # type: ignore[operator]
            return
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _source_env(root: str, home: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MOOCASSETS_DATABASE_URL": database_url,
        "MOOCASSETS_MOOC_API_URL": mooc_base(root),
        "MOOCASSETS_H5P_API_URL": h5p_base(root),
        "MOOCASSETS_MOOC_SESSIONID": SESSION,
        "PYTHONWARNINGS": "ignore",
    }


@contextlib.contextmanager
def running_daemon(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on a fresh SQLite instance at ``env["DAGSTER_HOME"]``; stopped
    with its process group (code server, launched runs) on every exit path."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "sensors:\n  use_threads: true\n  num_workers: 2\n"
        "concurrency:\n  runs:\n    max_concurrent_runs: 2\n"
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: moocassets.definitions\n"
        f"      working_directory: {REPO}\n      location_name: moocassets\n"
    )
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_process_group(proc, timeout=30)
        log.close()
        print((tmp_path / "daemon.log").read_text(errors="replace")[-3000:])


@pytest.fixture
def daemon(
    tmp_path: Path, simulator: str, mysql_database_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **_source_env(simulator, tmp_path / "dagster_home", mysql_database_url),
        "MOOCASSETS_DISCOVERY_INTERVAL_SECONDS": "5",
        "MOOCASSETS_ENROLLMENTS_INTERVAL_SECONDS": "5",
        "MOOCASSETS_AUTOMATION_INTERVAL_SECONDS": "5",
        "MOOCASSETS_AUTOMATION_SETTLE_SECONDS": "5",  # nothing to race here: load at once
    }
    with running_daemon(tmp_path, env) as proc:
        yield proc


def test_new_enrollment_reaches_raw_data(
    simulator: str, mysql_database_url: str, daemon: subprocess.Popen[bytes]
) -> None:
    course = httpx.get(f"{simulator}/__sim__/courses").json()["courses"][0]["course_id"]
    started = time.monotonic()
    # discovery registers the course; automation loads it (nobody launches anything by hand)
    _wait_for(lambda: len(_rows(mysql_database_url, course)) > 0, FIRST_LOAD_TIMEOUT_S,
              daemon, "the automatic first load of raw_data")
    first_load_s = time.monotonic() - started
    before = _rows(mysql_database_url, course)

    new_ids = httpx.post(f"{simulator}/__sim__/enroll",
                         json={"course_id": course, "count": 1}).json()["user_ids"]
    enrolled_at = time.monotonic()
    _wait_for(lambda: set(new_ids) <= _rows(mysql_database_url, course),
              ENROLLMENT_TIMEOUT_S, daemon, f"learner {new_ids} in raw_data")
    elapsed = time.monotonic() - enrolled_at
    print(f"\nfirst load (discovery -> raw_data): {first_load_s:.1f} s; "
          f"enrollment -> raw_data row: {elapsed:.1f} s")
    after = _rows(mysql_database_url, course)
    assert after == before | set(new_ids)


AFTER_BACKFILL_S = 120.0
"""Issue 15: no automation run during a backfill, nor within 2 minutes after it."""
SOURCE_TAG = "moocassets/source"  # python -m moocassets.backfill tags its runs "backfill"
LOAD_ROUTES = ("M2", "M4", "M5", "M6", "H1", "H2", "H3")
"""Calls only a load makes (M1 and M3 are also read by the sensors)."""


def _automation_ticks(instance: dg.DagsterInstance, after: float, before: float) -> list[Any]:
    return [
        tick
        for state in instance.all_instigator_state()
        if state.instigator_name == AUTOMATION_SENSOR_NAME
        for tick in instance.get_ticks(
            state.instigator_origin_id, state.selector_id, after=after, before=before
        )
    ]


def _load_calls(app: Starlette) -> int:
    routes = app.state.stats.to_dict()["routes"]
    return sum(routes.get(r, 0) for r in LOAD_ROUTES)


def test_the_automation_does_not_race_a_ranged_backfill(
    tmp_path: Path, mysql_database_url: str
) -> None:
    """The daemon runs (automation every 2 s, the production settle time); discovery registers
    three courses; the operator runs ``python -m moocassets.backfill --all`` (one ranged run)
    at once. The automation ticks all along and requests nothing: no run, no backfill, and
    the sources see each load call once."""
    with _serve(courses=3, learners=10) as (root, app):
        home = tmp_path / "dagster_home"
        env = {
            **_source_env(root, home, mysql_database_url),
            "MOOCASSETS_DISCOVERY_INTERVAL_SECONDS": "3600",  # registers at its first tick
            "MOOCASSETS_ENROLLMENTS_INTERVAL_SECONDS": "3600",
            "MOOCASSETS_AUTOMATION_INTERVAL_SECONDS": "2",
        }
        courses = [c["course_id"] for c in httpx.get(f"{root}/__sim__/courses").json()["courses"]]
        with running_daemon(tmp_path, env) as daemon:
            instance = dg.DagsterInstance.from_config(str(home))
            try:
                _wait_for(
                    lambda: len(instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME)) == 3,
                    FIRST_LOAD_TIMEOUT_S, daemon, "the discovery sensor to register the courses",
                )
                started = time.time()
                backfill = subprocess.run(
                    [sys.executable, "-m", "moocassets.backfill", "--all"], cwd=REPO, env=env,
                    capture_output=True, text=True, timeout=FIRST_LOAD_TIMEOUT_S,
                )
                assert backfill.returncode == 0, backfill.stdout + backfill.stderr[-3000:]
                ended = time.time()
                calls_after_backfill = _load_calls(app)
                _wait_for(lambda: time.time() > ended + AFTER_BACKFILL_S,
                          AFTER_BACKFILL_S + 60, daemon, "two minutes after the backfill")

                runs = instance.get_run_records()
                assert [r.dagster_run.tags.get(SOURCE_TAG) for r in runs] == ["backfill"], [
                    r.dagster_run.tags for r in runs
                ]
                assert instance.get_backfills() == []
                during = _automation_ticks(instance, started, ended)
                after = _automation_ticks(instance, ended, ended + AFTER_BACKFILL_S)
                assert len(during) >= 3 and len(after) >= 10, (len(during), len(after))
                assert not [t.error for t in during + after if t.is_failure]
                assert all(t.requested_asset_materialization_count == 0 for t in during + after)
            finally:
                instance.dispose()
        # one H1 call per learner and course: nothing was extracted twice
        assert app.state.stats.to_dict()["routes"]["H1"] == 3 * 10
        assert _load_calls(app) == calls_after_backfill
        tags = runs[0].dagster_run.tags  # one ranged run over the three courses
        assert {tags[RANGE_START_TAG], tags[RANGE_END_TAG]} <= set(courses)
        assert tags[RANGE_START_TAG] != tags[RANGE_END_TAG]
