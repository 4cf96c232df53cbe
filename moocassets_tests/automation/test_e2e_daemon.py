"""End to end with ``dagster-daemon``: discovery -> automatic load -> new enrollment -> raw_data.

The simulator serves on a loopback port (in this process), the warehouse is a fresh MariaDB
database, Dagster storage is SQLite under a temporary DAGSTER_HOME, and sensor intervals are
shortened through the MOOCASSETS_*_INTERVAL_SECONDS settings read at definitions load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

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


@pytest.fixture
def simulator() -> Iterator[str]:
    world = World(WorldConfig(courses=1, learners=15, seed=5))
    app = create_app(world, mooc_email="ops@example.edu", mooc_password="pw",
                     session_ids=[SESSION])
    with serve_in_thread(app) as root:
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


@pytest.fixture
def daemon(
    tmp_path: Path, simulator: str, mysql_database_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
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
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MOOCASSETS_DATABASE_URL": mysql_database_url,
        "MOOCASSETS_MOOC_API_URL": mooc_base(simulator),
        "MOOCASSETS_H5P_API_URL": h5p_base(simulator),
        "MOOCASSETS_MOOC_SESSIONID": SESSION,
        "MOOCASSETS_DISCOVERY_INTERVAL_SECONDS": "5",
        "MOOCASSETS_ENROLLMENTS_INTERVAL_SECONDS": "5",
        "MOOCASSETS_AUTOMATION_INTERVAL_SECONDS": "5",
        "PYTHONWARNINGS": "ignore",
    }
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()
        # runs are launched in the daemon's process group? make sure none survive
        for line in subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                                   text=True).stdout.split():
            try:
                os.kill(int(line), signal.SIGKILL)
            except ProcessLookupError:
                pass
        print((tmp_path / "daemon.log").read_text(errors="replace")[-3000:])


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
