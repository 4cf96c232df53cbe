"""Steps on Celery workers on two separate hosts give the warehouse of an in-process run.

Two dagster-celery workers (``deploy/celery/worker.yaml``, listening on the default and the H5P
queue) run in two network namespaces; they reach RabbitMQ, MariaDB and the simulator only
through TCP forwarders on their veth addresses (hosts.py), and each has its own DAGSTER_HOME and
TMPDIR. The runs are orchestrated from the host namespace by ``moocassets.backfill`` with
``MOOCASSETS_EXECUTOR=celery`` and the instance of ``deploy/celery/dagster.yaml`` (Dagster's
storage in MariaDB), exactly as the Celery deployment runs them.

* a per-course run and a ranged run over three courses: each run's steps spread over both hosts
  (the "Celery worker" of each step's engine event), and every warehouse table equals the one an
  in-process run of the same simulator world wrote;
* a worker killed (SIGKILL of its process group: a host dying) while it runs a step: the step runs
  again on the other worker and the run succeeds; a re-run succeeds; every table equals the
  in-process one (no slice half-written);
* the broker unreachable at launch: the run fails with an error naming the broker (password
  masked) and nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from benchmarks.simulator_process import simulator_process
from moocassets import keys
from moocassets.assets import ALL_ASSETS
from moocassets.io.objects import OBJECTS_TABLE
from moocassets.processes import free_port
from moocassets.schema import WAREHOUSE_TABLES
from moocassets_tests.conftest import drop_database, make_database
from moocassets_tests.deploy.hosts import (
    REPO,
    Forwarders,
    Host,
    Worker,
    can_connect_from,
    make_hosts,
    rabbitmq_vhost,
    require_namespaces,
    signals_as_interrupt,
    start_worker,
    wait_ready,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.mysql, pytest.mark.timeout(900)]

EMAIL = "celery.e2e@example.edu"
COURSES = 3
LEARNERS = 25
LATENCY_MS = 20  # (a step on a worker lasts over a second anyway: set-up + step + events)
QUEUES = "dagster,h5p_api"
COURSE_REFRESH_STEPS = {a.key.to_user_string() for a in ALL_ASSETS
                        if a.key.to_user_string() != keys.RISK_MODEL}
STORED_FRAMES = {a.key.to_user_string() for a in ALL_ASSETS
                 if a.get_io_manager_key_for_asset_key(a.key) == keys.EXTRACT_IO}
BROKER_PASSWORD = "guest"

# The run's process: moocassets.backfill's own route (execute_courses per group), plus a fixed
# as_of (learner_features; raw_data and raw_data_history read it from there, on whichever
# worker) so an in-process run of the same world, made earlier, can be compared row for row.
ORCHESTRATE = """
import json, sys
import dagster as dg
from moocassets.backfill import run_backfill, failed_steps, run_failure_message
args = json.loads(sys.argv[1])
instance = dg.DagsterInstance.get()
known = set(instance.get_dynamic_partitions("course_id"))
new = [c for c in args["courses"] if c not in known]
if new:
    instance.add_dynamic_partitions("course_id", new)
as_of = {"config": {"as_of": args["as_of"]}}
runs = run_backfill(instance, args["courses"], single_run=args["single_run"],
                    retry_failed_per_course=False, tags={"moocassets/source": "e2e"},
                    run_config={"ops": {"learner_features": as_of},
                                "loggers": {"console": {"config": {"log_level": "WARNING"}}}})
print(json.dumps([{"run_id": r.result.run_id, "success": r.success, "courses": r.courses,
                   "failed_steps": failed_steps(r.result),
                   "failure": run_failure_message(r.result)} for r in runs]))
"""


@dataclass
class Cluster:
    tmp: Path
    sim_root: str
    sim_port: int
    as_of: str
    courses: list[str]
    vhost: str
    server_url: sa.URL
    storage_url: str  # Dagster's storage (mysql+mysqlconnector) as the host reaches it
    warehouse_url: str  # the Celery runs' warehouse
    reference_url: str  # the in-process run's warehouse
    base_env: dict[str, str]
    hosts: list[Host] = field(default_factory=list)
    workers: dict[str, Worker] = field(default_factory=dict)
    orchestrator_home: Path | None = None
    observer: dg.DagsterInstance | None = None

    def via(self, host: Host, url: str) -> str:
        """``url`` as ``host`` reaches it: through the forwarder on its veth address."""
        return sa.make_url(url).set(host=host.host_ip).render_as_string(hide_password=False)

    def broker(self, address: str = "127.0.0.1", port: int = 5672) -> str:
        return f"pyamqp://guest:{BROKER_PASSWORD}@{address}:{port}/{self.vhost}"

    def worker_env(self, host: Host) -> dict[str, str]:
        return {
            **self.base_env,
            "DAGSTER_MYSQL_URL": self.via(host, self.storage_url),
            "MOOCASSETS_DATABASE_URL": self.via(host, self.warehouse_url),
            "MOOCASSETS_CELERY_BROKER_URL": self.broker(host.host_ip),
            "MOOCASSETS_MOOC_API_URL": f"http://{host.host_ip}:{self.sim_port}/api/custom/v1",
            "MOOCASSETS_H5P_API_URL": f"http://{host.host_ip}:{self.sim_port}/wp-json/mooc/v1",
        }

    def orchestrate(self, courses: list[str], *, single_run: bool, env: dict[str, str],
                    home: Path, timeout: float = 420) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", ORCHESTRATE,
             json.dumps({"courses": courses, "single_run": single_run, "as_of": self.as_of})],
            cwd=REPO, env={**env, "DAGSTER_HOME": str(home)}, capture_output=True, text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return list(json.loads(proc.stdout.strip().splitlines()[-1]))

    def celery_env(self, broker: str | None = None) -> dict[str, str]:
        return {**self.base_env, "MOOCASSETS_EXECUTOR": "celery",
                "DAGSTER_MYSQL_URL": self.storage_url,
                "MOOCASSETS_DATABASE_URL": self.warehouse_url,
                "MOOCASSETS_CELERY_BROKER_URL": broker or self.broker(),
                "MOOCASSETS_MOOC_API_URL": f"{self.sim_root}/api/custom/v1",
                "MOOCASSETS_H5P_API_URL": f"{self.sim_root}/wp-json/mooc/v1"}

    def run_on_celery(self, courses: list[str], *, single_run: bool) -> list[dict[str, Any]]:
        assert self.orchestrator_home is not None
        return self.orchestrate(courses, single_run=single_run, env=self.celery_env(),
                                home=self.orchestrator_home)

    def step_workers(self, run_id: str) -> dict[str, list[str]]:
        """step key → the hosts whose worker started it, in order (from the engine events)."""
        assert self.observer is not None
        out: dict[str, list[str]] = {}
        for entry in self.observer.all_logs(run_id):
            ev = entry.dagster_event
            if ev is None or ev.event_type_value != "ENGINE_EVENT" or not ev.step_key:
                continue
            md = ev.engine_event_data.metadata if ev.engine_event_data else {}
            if "Celery worker" in md:
                node = str(md["Celery worker"].value)
                out.setdefault(ev.step_key, []).append(node.split("@")[0])
        return out


def _dagster_yaml(home: Path, storage: dict[str, Any] | None = None) -> None:
    """``deploy/celery/dagster.yaml`` as shipped (or with a literal storage for the observer)."""
    import yaml

    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "deploy" / "celery" / "dagster.yaml").read_text())
    if storage is not None:
        config["storage"] = storage
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def cluster(mysql_server_url: sa.URL, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    require_namespaces()
    tmp = tmp_path_factory.mktemp("celery_hosts")
    password = "e2e-" + os.urandom(6).hex()
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MOOCASSETS_", "DAGSTER_", "PYTEST_"))}
    base_env.update(MOOCASSETS_MOOC_EMAIL=EMAIL, MOOCASSETS_MOOC_PASSWORD=password)
    with signals_as_interrupt(), contextlib.ExitStack() as stack:
        sim_root = stack.enter_context(simulator_process(
            courses=COURSES, learners=LEARNERS, latency_ms=LATENCY_MS, email=EMAIL,
            password=password))
        health = httpx.get(f"{sim_root}/__sim__/health", timeout=10).json()
        courses = [c["id"] for c in httpx.get(
            f"{sim_root}/api/custom/v1/course-details/all/", timeout=30).json()["data"]]
        urls = {}
        for label in ("celery_storage", "celery_warehouse", "inproc_warehouse"):
            urls[label] = make_database(mysql_server_url, label)
            stack.callback(drop_database, mysql_server_url, urls[label])
        vhost = stack.enter_context(rabbitmq_vhost())
        c = Cluster(
            tmp=tmp, sim_root=sim_root, sim_port=int(sim_root.rsplit(":", 1)[1]),
            as_of=health["now"], courses=courses, vhost=vhost, server_url=mysql_server_url,
            storage_url=sa.make_url(urls["celery_storage"]).set(drivername="mysql+mysqlconnector")
            .render_as_string(hide_password=False),
            warehouse_url=urls["celery_warehouse"], reference_url=urls["inproc_warehouse"],
            base_env=base_env,
        )
        # the reference: one in-process ranged run of the same world
        ref_home = tmp / "inproc_home"
        ref_home.mkdir()
        (ref_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        ref = c.orchestrate(courses, single_run=True, home=ref_home, env={
            **base_env, "MOOCASSETS_DATABASE_URL": c.reference_url,
            "MOOCASSETS_MOOC_API_URL": f"{sim_root}/api/custom/v1",
            "MOOCASSETS_H5P_API_URL": f"{sim_root}/wp-json/mooc/v1"})
        assert [r["success"] for r in ref] == [True], ref
        # Dagster's storage: schema created once, by the host, before any worker connects
        c.orchestrator_home = tmp / "orchestrator_home"
        _dagster_yaml(c.orchestrator_home)
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "instance", "migrate"], cwd=REPO,
            env={**c.celery_env(), "DAGSTER_HOME": str(c.orchestrator_home)},
            capture_output=True, text=True, timeout=180)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        observer_home = tmp / "observer_home"
        _dagster_yaml(observer_home, {"mysql": {"mysql_url": c.storage_url}})
        c.observer = stack.enter_context(dg.DagsterInstance.from_config(str(observer_home)))
        # two hosts, each with forwarders on its veth address, each with a worker
        c.hosts = make_hosts(stack, ["a", "b"])
        forwarders = Forwarders()
        stack.callback(forwarders.close)
        for host in c.hosts:
            for port in (5672, mysql_server_url.port or 3306, c.sim_port):
                forwarders.add(host.host_ip, port, "127.0.0.1", port)
        for host in c.hosts:
            c.workers[host.name] = start_worker(stack, host, tmp, c.worker_env(host), QUEUES)
        for worker in c.workers.values():
            wait_ready(worker)
        try:
            yield c
        finally:
            for worker in c.workers.values():
                print(f"\n===== worker {worker.host.name} =====\n{worker.tail(40)}")


def _tables(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {spec.name: pd.read_sql_table(spec.name, conn) for spec in WAREHOUSE_TABLES}
    finally:
        engine.dispose()


def assert_same_warehouse(url: str, reference_url: str) -> None:
    """Every table, row for row (``id`` and ``fetched_at`` say when/where a row was written)."""
    got, want = _tables(url), _tables(reference_url)
    for spec in WAREHOUSE_TABLES:
        key = list(spec.unique_key)
        a, b = (t[spec.name].drop(columns=["id", "fetched_at"], errors="ignore")
                .sort_values(key).reset_index(drop=True) for t in (got, want))
        assert len(b) > 0 or spec.name == "mooc_discussions", spec.name
        pd.testing.assert_frame_equal(a, b, obj=spec.name)


def test_the_worker_hosts_reach_the_services_only_through_their_forwarders(
    cluster: Cluster,
) -> None:
    host = cluster.hosts[0]
    assert not can_connect_from(host, "127.0.0.1", 3306)  # loopback is the namespace's own
    assert not can_connect_from(host, "127.0.0.1", 5672)
    assert can_connect_from(host, host.host_ip, 3306)
    assert can_connect_from(host, host.host_ip, 5672)
    homes = {w.home for w in cluster.workers.values()}
    assert len(homes) == 2 and cluster.orchestrator_home not in homes


def test_steps_spread_over_both_hosts_and_the_warehouse_equals_an_in_process_run(
    cluster: Cluster,
) -> None:
    per_course = cluster.run_on_celery(cluster.courses[:1], single_run=True)
    ranged = cluster.run_on_celery(cluster.courses, single_run=True)
    names = {h.name for h in cluster.hosts}
    for run in (*per_course, *ranged):
        assert run["success"], run
        steps = cluster.step_workers(run["run_id"])
        assert set(steps) == COURSE_REFRESH_STEPS, steps  # every step ran on a worker
        assert {w for ws in steps.values() for w in ws} == names, steps  # on both hosts
        assert set(steps["h5p_scores_extract"]) <= names
    assert_same_warehouse(cluster.warehouse_url, cluster.reference_url)
    # the extracts travelled through the warehouse database, not a directory of one host
    engine = sa.create_engine(cluster.warehouse_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            f"SELECT COUNT(DISTINCT asset, partition_key) FROM {OBJECTS_TABLE} "
            "WHERE store = 'extracts'")).scalar_one()
    engine.dispose()
    assert stored == len(STORED_FRAMES) * len(cluster.courses)
    for home in (cluster.orchestrator_home, *(w.home for w in cluster.workers.values())):
        assert home is not None and not (home / "storage" / "extracts").exists()


def test_a_worker_killed_mid_step_its_step_runs_on_the_other_and_a_rerun_completes(
    cluster: Cluster,
) -> None:
    victim, survivor = (cluster.workers[h.name] for h in cluster.hosts)
    assert cluster.orchestrator_home is not None and cluster.observer is not None
    before = {r.run_id for r in cluster.observer.get_runs()}
    proc = subprocess.Popen(
        [sys.executable, "-c", ORCHESTRATE, json.dumps(
            {"courses": cluster.courses, "single_run": True, "as_of": cluster.as_of})],
        cwd=REPO, env={**cluster.celery_env(), "DAGSTER_HOME": str(cluster.orchestrator_home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        killed_step: list[str] = []

        def victim_in_a_step() -> bool:
            runs = [r for r in cluster.observer.get_runs() if r.run_id not in before]
            if not runs:
                return False
            steps = cluster.step_workers(runs[0].run_id)
            done = {e.step_key for e in cluster.observer.all_logs(runs[0].run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"}
            busy = [k for k, ws in steps.items() if ws[-1] == victim.host.name and k not in done]
            if busy:
                victim.kill()
                killed_step.extend(busy)
                return True
            return False

        wait_until("the victim worker in a step", victim_in_a_step, 240)
        out, err = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-5000:]
    (run,) = json.loads(out.strip().splitlines()[-1])
    steps = cluster.step_workers(run["run_id"])
    print(f"killed {victim.host.name} during {killed_step}: run success={run['success']}, "
          f"those steps ran on {[steps.get(k) for k in killed_step]}")
    if run["success"]:  # the step the victim held ran again, on the survivor
        for key in killed_step:
            assert steps[key][-1] == survivor.host.name, (key, steps[key])
    else:  # or the run says why
        assert run["failure"] or run["failed_steps"], run
    again = cluster.run_on_celery(cluster.courses, single_run=True)
    assert [r["success"] for r in again] == [True], again
    assert {w for ws in cluster.step_workers(again[0]["run_id"]).values() for w in ws} == {
        survivor.host.name}
    assert_same_warehouse(cluster.warehouse_url, cluster.reference_url)


def test_an_unreachable_broker_fails_the_run_naming_the_broker_and_nothing_is_written(
    cluster: Cluster, tmp_path: Path
) -> None:
    warehouse = make_database(cluster.server_url, "nobroker")
    home = tmp_path / "home"
    _dagster_yaml(home)
    port = free_port()
    env = {**cluster.celery_env(cluster.broker("127.0.0.1", port).replace(
        f"guest:{BROKER_PASSWORD}", "guest:s3cret-pw")), "MOOCASSETS_DATABASE_URL": warehouse}
    try:  # (the course is registered in the shared Dagster storage already)
        proc = subprocess.run(
            [sys.executable, "-m", "moocassets.backfill", "--courses", cluster.courses[0]],
            cwd=REPO, env={**env, "DAGSTER_HOME": str(home)}, capture_output=True, text=True,
            timeout=300)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1, output[-3000:]
        assert f"Celery broker amqp://guest:**@127.0.0.1:{port}/{cluster.vhost}" in output
        assert "unreachable" in output and "s3cret-pw" not in output
        engine = sa.create_engine(warehouse)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []  # no table, no extract, no model
        engine.dispose()
        run = cluster.observer.get_runs(limit=1)[0] if cluster.observer else None
        assert run is not None and run.is_failure
        assert not [e for e in cluster.observer.all_logs(run.run_id)  # type: ignore[union-attr]
                    if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"]
    finally:
        drop_database(cluster.server_url, warehouse)
        shutil.rmtree(home, ignore_errors=True)
