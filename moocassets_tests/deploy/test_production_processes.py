"""The production process layout, for real, without Docker.

`dagster code-server start`, `dagster-webserver -w <grpc workspace>` and `dagster-daemon run` run
as separate processes, exactly like the compose services, with Dagster's storage in MariaDB/MySQL
through dagster-mysql (deploy/local-mariadb/dagster.yaml; DefaultRunLauncher instead of Docker).

Two code locations are served by two code servers:

* ``probe``: a tiny location written by this test (dynamic partitions, a RUNNING sensor, a pooled
  asset writing to the warehouse). It checks the deployment itself and does not depend on the app.
* ``moocassets``: the real definitions plus the simulator (``python -m moocassets.simulator``).
  Its test skips with a reason while the definitions or the simulator are not complete.

Both tests go through the same path: daemon heartbeats healthy -> sensor tick registers
partitions -> a partition run submitted over GraphQL is queued, dequeued by the daemon, launched,
succeeds -> rows in the warehouse for that partition. Waits are bounded; every process is
terminated (process group) and its log printed when something fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa
import yaml

from moocassets_tests.conftest import drop_database, make_database

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "local-mariadb" / "dagster.yaml"
BIN = Path(sys.executable).parent
WAIT_S = 180.0
REQUIRED_DAEMONS = {"SENSOR", "BACKFILL", "SCHEDULER", "QUEUED_RUN_COORDINATOR", "ASSET"}
PROBE_KEYS = ["course-v1:Probe+P1+2024", "course-v1:O'Reilly+P2+2025"]
T = TypeVar("T")

PROBE_DEFS = '''
"""Probe code location for the deployment test (written by test_production_processes.py)."""
import os

import dagster as dg
import sqlalchemy as sa

probe_courses = dg.DynamicPartitionsDefinition(name="probe_course_id")


@dg.asset(partitions_def=probe_courses, pool="warehouse_write")
def probe_enrollments(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    engine = sa.create_engine(os.environ["MOOCASSETS_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS probe_enrollments "
            "(course_id VARCHAR(255) NOT NULL, run_id VARCHAR(64) NOT NULL)"))
        conn.execute(sa.text("DELETE FROM probe_enrollments WHERE course_id = :c"),
                     {"c": context.partition_key})
        conn.execute(sa.text("INSERT INTO probe_enrollments VALUES (:c, :r)"),
                     {"c": context.partition_key, "r": context.run.run_id})
    engine.dispose()
    return dg.MaterializeResult(metadata={"dagster/row_count": 1})


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def probe_discovery_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    keys = os.environ["PROBE_COURSE_KEYS"].split("|")
    known = set(context.instance.get_dynamic_partitions("probe_course_id"))
    new = [k for k in keys if k not in known]
    return dg.SensorResult(dynamic_partitions_requests=[probe_courses.build_add_request(new)])


defs = dg.Definitions(assets=[probe_enrollments], sensors=[probe_discovery_sensor])
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except (httpx.TransportError, sa.exc.OperationalError) as exc:
            last_error = exc
        time.sleep(1.0)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} ({last_error!r})")


INIT_POOLS = {"POOL_MOOC_API": "2", "POOL_H5P_API": "3", "POOL_WAREHOUSE_WRITE": "1"}


def _compose_init_command() -> str:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    command = compose["services"]["dagster-init"]["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")  # compose escape -> shell variable


def _grpc_healthy(st: Stack, name: str, port: int) -> bool:
    st.assert_alive(name)
    check = subprocess.run(
        [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)],
        env=st.env,
        capture_output=True,
        timeout=30,
    )
    return check.returncode == 0


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    web_url: str
    warehouse_url: str
    logs: dict[str, Path] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = self.home / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            self.procs[name] = subprocess.Popen(
                args,
                cwd=self.home,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: run subprocesses die with it
            )

    def assert_alive(self, *names: str) -> None:
        for name in names:
            code = self.procs[name].poll()
            assert code is None, f"{name} exited with code {code}\n{self.tail(name)}"

    def tail(self, name: str, lines: int = 60) -> str:
        text = self.logs[name].read_text(errors="replace") if name in self.logs else ""
        return "\n".join(text.splitlines()[-lines:])

    def dump_logs(self) -> None:
        for name in self.logs:
            print(f"\n===== {name} ({self.logs[name]}) =====\n{self.tail(name, 120)}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.post(
            f"{self.web_url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=30,
        )
        resp.raise_for_status()
        body = resp.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    # --- queries -----------------------------------------------------------------------------

    def location_status(self, name: str) -> str | None:
        data = self.graphql(
            """{ workspaceOrError { ... on Workspace { locationEntries {
                 name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        for entry in data["workspaceOrError"]["locationEntries"]:
            if entry["name"] == name and entry["loadStatus"] == "LOADED":
                return entry["locationOrLoadError"]["__typename"]
        return None

    def unhealthy_daemons(self) -> set[str]:
        data = self.graphql(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
        )
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        present = {s["daemonType"] for s in statuses}
        assert REQUIRED_DAEMONS <= present, present
        return {s["daemonType"] for s in statuses if s["required"] and not s["healthy"]}

    def sensor_ticks(self, location: str, sensor: str) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
                 __typename ... on Sensor { sensorState { status ticks(limit: 5) {
                   status error { message } } } } } }""",
            {
                "s": {
                    "repositoryLocationName": location,
                    "repositoryName": "__repository__",
                    "sensorName": sensor,
                }
            },
        )
        sensor_data = data["sensorOrError"]
        assert sensor_data["__typename"] == "Sensor", sensor_data
        assert sensor_data["sensorState"]["status"] == "RUNNING"
        return sensor_data["sensorState"]["ticks"]

    def partitioned_assets(self, location: str, partitions_name: str) -> list[list[str]]:
        data = self.graphql(
            """{ assetNodes { assetKey { path } repository { location { name } }
                 partitionDefinition { dimensionTypes { dynamicPartitionsDefinitionName } } } }"""
        )
        out = []
        for node in data["assetNodes"]:
            pdef = node["partitionDefinition"]
            if node["repository"]["location"]["name"] != location or pdef is None:
                continue
            names = {d["dynamicPartitionsDefinitionName"] for d in pdef["dimensionTypes"]}
            if names == {partitions_name}:
                out.append(node["assetKey"]["path"])
        return out

    def launch_partition_run(self, location: str, assets: list[list[str]], key: str) -> str:
        data = self.graphql(
            """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on InvalidSubsetError { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            {
                "p": {
                    "selector": {
                        "repositoryLocationName": location,
                        "repositoryName": "__repository__",
                        "jobName": "__ASSET_JOB",
                        "assetSelection": [{"path": p} for p in assets],
                    },
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
                }
            },
        )
        result = data["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }""",
            {"id": run_id},
        )
        return data["runOrError"]["status"]

    def dynamic_partitions(self, name: str) -> list[str]:
        # Read straight from Dagster's MySQL storage, as any other instance client would.
        engine = sa.create_engine(self.env["DAGSTER_MYSQL_URL"])
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT `partition` FROM dynamic_partitions WHERE partitions_def_name = :n"
                    ),
                    {"n": name},
                )
                return sorted(r[0] for r in rows)
        finally:
            engine.dispose()


def _moocassets_ready() -> str | None:
    """Why the real location cannot be tested yet (None when it can).

    Missing pieces (simulator entry point, sensors not registered yet) mean "skip"; definitions
    that exist but fail to load are reported as a failure by the test, with the error.
    """
    if importlib.util.find_spec("moocassets.simulator.__main__") is None:
        return "skip: moocassets.simulator has no __main__ (python -m moocassets.simulator)"
    code = (
        "import json, moocassets.definitions as m; "
        "print(json.dumps(sorted(s.name for s in (m.defs.sensors or []))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOOCASSETS_")}
    env["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="moocassets_defs_probe_")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    shutil.rmtree(env["DAGSTER_HOME"], ignore_errors=True)
    if proc.returncode != 0:
        return "fail: moocassets.definitions does not load:\n" + proc.stderr[-3000:]
    sensors = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    if "course_discovery_sensor" not in sensors:
        return f"skip: course_discovery_sensor is not registered in defs yet (sensors: {sensors})"
    return None


@pytest.fixture(scope="module")
def stack(mysql_server_url: sa.URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(TEMPLATE, home / "dagster.yaml")
    (home / "probe_defs.py").write_text(textwrap.dedent(PROBE_DEFS))

    storage_db = make_database(mysql_server_url, "dagster_storage")
    warehouse_db = make_database(mysql_server_url, "warehouse")
    storage_url = sa.make_url(storage_db).set(drivername="mysql+mysqlconnector")

    sim_port, web_port, probe_port, app_port = (_free_port() for _ in range(4))
    sim_base = f"http://127.0.0.1:{sim_port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOOCASSETS_", "DAGSTER_", "PYTEST_"))
    }
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_MYSQL_URL=storage_url.render_as_string(hide_password=False),
        MOOCASSETS_DATABASE_URL=warehouse_db,
        MOOCASSETS_MOOC_API_URL=f"{sim_base}/api/custom/v1",
        MOOCASSETS_H5P_API_URL=f"{sim_base}/wp-json/mooc/v1",
        MOOCASSETS_MOOC_EMAIL="e2e.operator@example.edu",
        MOOCASSETS_MOOC_PASSWORD="e2e-" + os.urandom(8).hex(),
        PROBE_COURSE_KEYS="|".join(PROBE_KEYS),
        PYTHONPATH=os.pathsep.join(
            [str(REPO), env_pp] if (env_pp := os.environ.get("PYTHONPATH")) else [str(REPO)]
        ),
    )
    st = Stack(
        home=home,
        env=env,
        web_url=f"http://127.0.0.1:{web_port}",
        warehouse_url=warehouse_db,
    )
    st.env["MOOCASSETS_READY_REASON"] = _moocassets_ready() or ""
    locations = [f"  - grpc_server: {{host: 127.0.0.1, port: {probe_port}, location_name: probe}}"]
    if not st.env["MOOCASSETS_READY_REASON"]:
        locations.append(
            f"  - grpc_server: {{host: 127.0.0.1, port: {app_port}, location_name: moocassets}}"
        )
    (home / "workspace.yaml").write_text("load_from:\n" + "\n".join(locations) + "\n")
    dagster = str(BIN / "dagster")
    try:
        # The compose `dagster-init` command itself (migrate the schema once, before several
        # processes race to create the same tables in a fresh database; set the pool limits).
        init_cmd = _compose_init_command()
        init_env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **INIT_POOLS}
        init = subprocess.run(
            ["sh", "-c", init_cmd], cwd=home, env=init_env, capture_output=True, timeout=180
        )
        assert init.returncode == 0, init.stdout + init.stderr
        limits = subprocess.run(
            [dagster, "instance", "concurrency", "get", "--all"],
            cwd=home, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        for pool, limit in (("mooc_api", 2), ("h5p_api", 3), ("warehouse_write", 1)):
            assert f'"{pool}": 0 / {limit} slots' in limits.stdout, limits.stdout + limits.stderr
        if not st.env["MOOCASSETS_READY_REASON"]:
            st.start(
                "simulator",
                [sys.executable, "-m", "moocassets.simulator", "--host", "127.0.0.1",
                 "--port", str(sim_port), "--courses", "2", "--learners", "30", "--seed", "7",
                 # credentials come from MOOCASSETS_MOOC_EMAIL/_PASSWORD in the environment
                 ],
            )  # fmt: skip
            st.start(
                "code-server-moocassets",
                [dagster, "code-server", "start", "-h", "127.0.0.1", "-p", str(app_port),
                 "-m", "moocassets.definitions", "--location-name", "moocassets"],
            )  # fmt: skip
        st.start(
            "code-server-probe",
            [dagster, "code-server", "start", "-h", "127.0.0.1", "-p", str(probe_port),
             "-f", str(home / "probe_defs.py"), "--location-name", "probe"],
        )  # fmt: skip
        # Like `depends_on: code-server: condition: service_healthy` in docker-compose.yml.
        ports = {"code-server-probe": probe_port}
        if not st.env["MOOCASSETS_READY_REASON"]:
            ports["code-server-moocassets"] = app_port
        for name, port in ports.items():
            _wait_for(
                f"{name} gRPC health",
                lambda name=name, port=port: _grpc_healthy(st, name, port),
                timeout=90,
            )
        st.start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
             "-w", str(home / "workspace.yaml")],
        )  # fmt: skip
        st.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")])
        _wait_for(
            "webserver /server_info",
            lambda: httpx.get(f"{st.web_url}/server_info", timeout=5).status_code == 200,
            timeout=90,
        )
        yield st
    except BaseException:
        st.dump_logs()
        raise
    finally:
        st.stop()
        drop_database(mysql_server_url, storage_db)
        drop_database(mysql_server_url, warehouse_db)


@pytest.fixture
def logs_on_failure(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    failed_before = request.session.testsfailed
    yield stack
    if request.session.testsfailed > failed_before:
        stack.dump_logs()


def _run_to_success(st: Stack, run_id: str) -> None:
    final = _wait_for(
        f"run {run_id} to finish",
        lambda: (s := st.run_status(run_id)) in {"SUCCESS", "FAILURE", "CANCELED"} and s,
    )
    assert final == "SUCCESS", f"run {run_id} ended {final}\n{st.tail('daemon')}"


def test_stack_runs_sensor_tick_and_partition_run(logs_on_failure: Stack) -> None:
    """Deployment check with the probe location: independent of the application code."""
    st = logs_on_failure
    status = _wait_for("probe location", lambda: st.location_status("probe"), timeout=90)
    assert status == "RepositoryLocation", st.tail("code-server-probe")

    # every required daemon reports a fresh heartbeat into the MySQL storage
    _wait_for("healthy daemons", lambda: not st.unhealthy_daemons(), timeout=120)
    st.assert_alive("daemon", "webserver", "code-server-probe")

    # the sensor (RUNNING by default) ticks in the daemon and registers the partitions
    keys = _wait_for(
        "probe partitions",
        lambda: (k := st.dynamic_partitions("probe_course_id")) == sorted(PROBE_KEYS) and k,
    )
    assert keys == sorted(PROBE_KEYS)
    # A tick that only adds partitions (no run requests) is recorded as SKIPPED, not SUCCESS.
    ticks = st.sensor_ticks("probe", "probe_discovery_sensor")
    assert ticks and {t["status"] for t in ticks} <= {"SUCCESS", "SKIPPED"}, ticks

    # a partition run: GraphQL -> queue -> daemon dequeues -> DefaultRunLauncher -> SUCCESS
    assets = st.partitioned_assets("probe", "probe_course_id")
    assert assets == [["probe_enrollments"]]
    key = PROBE_KEYS[1]  # the key with a quote in it
    run_id = st.launch_partition_run("probe", assets, key)
    _run_to_success(st, run_id)

    engine = sa.create_engine(st.warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT course_id, run_id FROM probe_enrollments")).all()
    engine.dispose()
    assert rows == [(key, run_id)]


def test_moocassets_end_to_end_with_simulator(logs_on_failure: Stack) -> None:
    """The real code location against the simulator: discovery sensor -> partition run."""
    st = logs_on_failure
    reason = st.env["MOOCASSETS_READY_REASON"]
    if reason.startswith("skip: "):
        pytest.skip(f"moocassets not complete: {reason.removeprefix('skip: ')}")
    if reason:
        pytest.fail(reason.removeprefix("fail: "))
    st.assert_alive("simulator", "code-server-moocassets")
    status = _wait_for("moocassets location", lambda: st.location_status("moocassets"), 90)
    assert status == "RepositoryLocation", st.tail("code-server-moocassets")
    _wait_for("healthy daemons", lambda: not st.unhealthy_daemons(), timeout=120)

    courses = _wait_for("discovered courses", lambda: st.dynamic_partitions("course_id"))
    assert len(courses) == 2, courses  # the simulator serves --courses 2
    ticks = st.sensor_ticks("moocassets", "course_discovery_sensor")
    assert ticks and {t["status"] for t in ticks} <= {"SUCCESS", "SKIPPED"}, ticks

    assets = st.partitioned_assets("moocassets", "course_id")
    assert ["enrollments"] in assets, assets
    course = courses[0]
    run_id = st.launch_partition_run("moocassets", assets, course)
    _run_to_success(st, run_id)

    engine = sa.create_engine(st.warehouse_url)
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.text("SELECT course_id, COUNT(*) FROM enrollments GROUP BY course_id")
            ).all()
        )
    engine.dispose()
    assert counts.get(course, 0) > 0, counts
