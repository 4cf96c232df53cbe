"""`make demo` end to end: the demo driver as a user runs it, in a subprocess.

Batch mode fills all ten tables (MariaDB and the SQLite fallback); UI mode serves a webserver whose
asset graph runs extract → warehouse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from moocassets.processes import free_port, stop_process_group
from moocassets.schema import WAREHOUSE_TABLES

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOOCASSETS_")}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    if database_url:
        env["MOOCASSETS_DATABASE_URL"] = database_url
    else:
        env["MOOCASSETS_SQLITE_PATH"] = str(tmp_path / "warehouse.sqlite")
    return env


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "moocassets.demo", "--learners", "40",
            "--sim-port", str(free_port()), *args]


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = {
            spec.name: int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {spec.name}")).scalar_one())
            for spec in WAREHOUSE_TABLES
        }
    engine.dispose()
    return out


@pytest.mark.mysql
def test_demo_batch_fills_every_table_in_mysql(tmp_path: Path, mysql_database_url: str) -> None:
    done = subprocess.run(_demo(), cwd=REPO, env=_env(tmp_path, mysql_database_url),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    counts = _counts(mysql_database_url)
    assert all(n > 0 for n in counts.values()), counts
    assert counts["raw_data"] == counts["enrollments"] == 3 * 40
    assert "rows per table" in done.stdout and "raw_data" in done.stdout
    assert "password" not in done.stdout.lower()


def test_demo_batch_falls_back_to_sqlite(tmp_path: Path) -> None:
    done = subprocess.run(_demo(), cwd=REPO, env=_env(tmp_path, None),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embedded SQLite" in done.stderr + done.stdout  # said clearly
    counts = _counts(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    assert all(n > 0 for n in counts.values()), counts


ASSET_GRAPH = """{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }"""


def test_demo_ui_serves_the_lineage_extract_to_warehouse(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        _demo("--ui", "--ui-port", str(port)), cwd=REPO, env=_env(tmp_path, None),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Dagster UI:" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "demo exited before serving the UI"
        r = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": ASSET_GRAPH}, timeout=60)
        nodes = {
            "/".join(n["assetKey"]["path"]): n for n in r.json()["data"]["assetNodes"]
        }
        deps = {k: {"/".join(d["path"]) for d in n["dependencyKeys"]} for k, n in nodes.items()}
        assert nodes["mooc_enrollments_extract"]["groupName"] == "extract"
        assert nodes["enrollments"]["groupName"] == "warehouse"
        assert deps["enrollments"] == {"mooc_enrollments_extract"}
        assert {"enrollments", "mooc_grades", "h5p_scores_summary"} <= deps["raw_data"]
    finally:
        stop_process_group(proc, timeout=60, first=signal.SIGINT)
        if proc.stdout is not None:
            proc.stdout.close()
