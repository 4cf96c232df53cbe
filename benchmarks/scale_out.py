"""Scale-out benchmark: one run per course, in-process executor vs Celery with 1 and 2 workers.

    .venv/bin/python -m benchmarks.scale_out [--quick] [--database-url mysql+pymysql://root@127.0.0.1/]
    make bench-scale

One run, on this machine:

1. The simulator in its own process (``benchmarks/simulator_process.py``), ``--courses`` x
   ``--learners`` (10 x 1,000; ``--quick``: 3 x 200) with ``--latency-ms`` (20) on every call.
2. For each mode, a fresh warehouse database and a fresh Dagster storage database (MariaDB, as in
   production), then ONE RUN PER COURSE, one after the other, of ``course_refresh`` through
   ``moocassets.backfill.execute_courses`` (the benchmark child of ``benchmarks/pipeline.py``):

   * ``in_process`` -- the baseline: every step in the run's process (the default executor);
   * ``celery_1`` / ``celery_2`` -- ``MOOCASSETS_EXECUTOR=celery``: the run's process submits each
     step to RabbitMQ (127.0.0.1:5672, a vhost of its own when ``rabbitmqctl`` is usable) and 1 or
     2 workers (``dagster-celery worker start``, concurrency 1 each, both queues, each with its own
     DAGSTER_HOME) run them. Instance config: ``deploy/celery/dagster.yaml``.

   Per mode: wall time, requests (the simulator's ``/__sim__/stats``), and from Dagster's event
   log per step: **submit → pickup** (the run's "Submitting celery task" event to the worker's
   "Executing steps" event: broker transit plus waiting for a free worker), **pickup → start**
   (the worker rebuilding the instance, the plan and the resources), and the step's own time
   (STEP_START → STEP_SUCCESS).
3. A model of the wall time of 1,000 courses at N workers from those per-step costs (see
   :func:`model`), printed and written with the measurements to ``benchmarks/results/
   scale_out.json`` and ``scale_out.md`` (``--quick``: ``scale_out_quick.*``, git-ignored).

On 2 cores the simulator, MariaDB, RabbitMQ, the run's process and the workers share the CPUs, so
the measured speed-up of a second worker is bounded; the load average is recorded per mode.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.pipeline import (
    EMAIL,
    ENV_DB,
    RESULTS_DIR,
    ROOT,
    Databases,
    _git,
    _load,
    _machine,
    base_env,
    format_table,
    ratio,
    run_worker,
    sim_stats,
)
from benchmarks.simulator_process import simulator_process
from moocassets.processes import stop_process_group

QUEUES = "dagster,h5p_api"
MODES = ("in_process", "celery_1", "celery_2")
MODEL_COURSES = 1000
MODEL_WORKERS = (1, 2, 4, 8, 16, 32, 64)
MAX_CONCURRENT_RUNS = 8  # deploy/celery/dagster.yaml concurrency.runs.max_concurrent_runs


def _log(msg: str) -> None:
    print(f"[scale_out {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# =============================================================================================
# Broker vhost and workers
# =============================================================================================


@contextlib.contextmanager
def broker_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own (queues nobody else sees) when rabbitmqctl works, else "/"."""
    name = f"moocassets_bench_{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> bool:
        try:
            return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True,
                                  timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if not (ctl("add_vhost", name) and ctl("set_permissions", "-p", name, "guest", ".*", ".*",
                                           ".*")):
        _log("rabbitmqctl unusable: using the default vhost '/'")
        yield ""
        return
    try:
        yield name
    finally:
        ctl("delete_vhost", name)


@contextlib.contextmanager
def celery_workers(count: int, env: dict[str, str], parent: Path) -> Iterator[list[str]]:
    """``count`` dagster-celery workers (concurrency 1, both queues); their names."""
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    names = [f"bench{i}" for i in range(count)]
    try:
        for name in names:
            home = parent / f"worker_{name}"
            (home / "tmp").mkdir(parents=True)
            shutil.copy(ROOT / "deploy" / "celery" / "dagster.yaml", home / "dagster.yaml")
            log = home / "worker.log"
            logs.append(log)
            worker_env = {**env, "DAGSTER_HOME": str(home), "TMPDIR": str(home / "tmp"),
                          "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"}
            with log.open("wb") as out:
                procs.append(subprocess.Popen(
                    [str(bin_dir / "dagster-celery"), "worker", "start", "-A",
                     "dagster_celery.app", "-y", str(ROOT / "deploy" / "celery" / "worker.yaml"),
                     "-q", QUEUES, "-n", name, "--loglevel", "INFO", "--", "--concurrency",
                     "1"],
                    cwd=home, env=worker_env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True))
        deadline = time.monotonic() + 180
        for proc, log in zip(procs, logs, strict=True):
            while " ready." not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield names
    finally:
        for proc in procs:
            stop_process_group(proc, timeout=30)


# =============================================================================================
# One mode
# =============================================================================================


def _instance_home(parent: Path, label: str, storage_url: str | None) -> Path:
    """``deploy/celery/dagster.yaml`` (storage from DAGSTER_MYSQL_URL) or, with
    ``storage_url``, the same with a literal storage URL (the parent's reader)."""
    import yaml

    home = parent / label
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "deploy" / "celery" / "dagster.yaml").read_text())
    if storage_url is not None:
        config["storage"] = {"mysql": {"mysql_url": storage_url}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def step_costs(instance: Any) -> dict[str, Any]:
    """Per step of every run in ``instance``: submit → pickup, pickup → start, start → success."""
    submit_to_pickup: list[float] = []
    pickup_to_start: list[float] = []
    step_s: list[float] = []
    busy_per_run: list[float] = []  # worker time per run: pickup → success, summed
    by_worker: dict[str, int] = {}
    for run in instance.get_runs():
        submitted: dict[str, float] = {}
        picked: dict[str, float] = {}
        started: dict[str, float] = {}
        busy = 0.0
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None or not ev.step_key:
                continue
            key, t = ev.step_key, entry.timestamp
            kind = ev.event_type_value
            if kind == "ENGINE_EVENT" and entry.message.startswith("Submitting celery task"):
                submitted[key] = t
            elif kind == "ENGINE_EVENT" and "in celery worker" in entry.message:
                picked[key] = t
                md = ev.engine_event_data.metadata if ev.engine_event_data else {}
                node = str(md["Celery worker"].value).split("@")[0] if "Celery worker" in md \
                    else "?"
                by_worker[node] = by_worker.get(node, 0) + 1
                if key in submitted:
                    submit_to_pickup.append(t - submitted[key])
            elif kind == "STEP_START":
                started[key] = t
                if key in picked:
                    pickup_to_start.append(t - picked[key])
            elif kind == "STEP_SUCCESS" and key in started:
                step_s.append(t - started[key])
                busy += t - picked.get(key, started[key])
        busy_per_run.append(busy)

    def stats(xs: list[float]) -> dict[str, float | None]:
        if not xs:
            return {"n": 0, "median_s": None, "mean_s": None, "p90_s": None, "min_s": None}
        q = statistics.quantiles(xs, n=10)[-1] if len(xs) > 1 else xs[0]
        return {"n": len(xs), "median_s": statistics.median(xs), "mean_s": statistics.fmean(xs),
                "p90_s": q, "min_s": min(xs)}

    return {"submit_to_pickup": stats(submit_to_pickup),
            "pickup_to_start": stats(pickup_to_start), "step": stats(step_s),
            "worker_busy_per_run_s": stats(busy_per_run), "steps_by_worker": by_worker}


def run_mode(mode: str, root: str, password: str, dbs: Databases, tmp: Path,
             courses: list[str], vhost: str) -> dict[str, Any]:
    import dagster as dg
    import sqlalchemy as sa

    warehouse = dbs.create(f"{mode}_wh")
    storage = sa.make_url(dbs.create(f"{mode}_dg")).set(drivername="mysql+mysqlconnector") \
        .render_as_string(hide_password=False)
    home = _instance_home(tmp, f"{mode}_home", None)
    env = {**base_env(root, password), ENV_DB: warehouse, "DAGSTER_HOME": str(home),
           "DAGSTER_MYSQL_URL": storage}
    workers = int(mode.split("_")[1]) if mode.startswith("celery") else 0
    if workers:
        env.update(MOOCASSETS_EXECUTOR="celery",
                   MOOCASSETS_CELERY_BROKER_URL=f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}")
    else:
        env.pop("MOOCASSETS_EXECUTOR", None)
    migrate = subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance",
                              "migrate"], cwd=ROOT, env=env, capture_output=True, timeout=300)
    if migrate.returncode != 0:
        raise RuntimeError(migrate.stderr.decode()[-2000:])
    with contextlib.ExitStack() as stack:
        names = stack.enter_context(celery_workers(workers, env, tmp / mode)) if workers else []
        sim_stats(root)  # reset
        load_before = _load()
        t0 = time.perf_counter()
        out = run_worker("project", {"courses": courses, "single_run": False}, env)
        wall = time.perf_counter() - t0
        stats = sim_stats(root)
    observer = _instance_home(tmp, f"{mode}_observer", storage)
    with dg.DagsterInstance.from_config(str(observer)) as instance:
        costs = step_costs(instance)
    runs = out["runs"]
    result = {
        "mode": mode, "workers": workers, "worker_names": names, "courses": len(courses),
        "wall_s": out["wall_s"], "process_wall_s": wall, "requests": int(stats["total"]),
        "runs": len(runs), "run_wall_s": [r["wall_s"] for r in runs],
        "steps_s": sum(r["steps_s"] for r in runs), "http_s": sum(r["http_s"] for r in runs),
        "write_s": sum(r["write_s"] for r in runs),
        "outside_steps_s": sum(r["wall_s"] - r["steps_s"] for r in runs),
        "peak_rss_mib": out["peak_rss_mib"], "load_before": load_before, "load_after": _load(),
        **costs,
    }
    _log(f"{mode}: {len(courses)} course(s), {len(runs)} run(s) in {out['wall_s']:.1f} s, "
         f"{result['requests']} requests"
         + (f"; submit→pickup median {costs['submit_to_pickup']['median_s']:.2f} s, "
            f"pickup→start median {costs['pickup_to_start']['median_s']:.2f} s, steps by worker "
            f"{costs['steps_by_worker']}" if workers else ""))
    return result


# =============================================================================================
# The model
# =============================================================================================


def model(modes: dict[str, dict[str, Any]], courses: int = MODEL_COURSES,
          workers: Sequence[int] = MODEL_WORKERS) -> dict[str, Any]:
    """Wall time of ``courses`` one-course runs at N workers, from the measured per-step costs.

    * **work** per course ``W`` = the worker time one run needs (pickup → success of every step:
      the step plus the worker's per-step set-up), the least of the Celery modes (the least
      contended measurement: on 2 cores a second worker slows both);
    * **latency** per run ``L`` = the run's wall time with one run at a time (critical path plus
      broker and polling delays), from the Celery mode with the most workers;
    * runs in flight ``R`` = ``max_concurrent_runs`` (8, deploy/celery/dagster.yaml).

    ``wall(N) = courses x max(W / N, L / R)``: N workers get through W seconds of steps per
    course in parallel until the run queue, not the workers, is the bound; ``R >= N x L / W``
    keeps N workers busy. Each worker is assumed to have its own core, and MySQL, RabbitMQ and
    the source servers to keep up (the H5P server sees at most 16 calls per H5P worker process);
    none of that is measured beyond 2 workers here.
    """
    celery = [m for m in modes.values() if m["workers"]]
    work = min(m["worker_busy_per_run_s"]["mean_s"] or 0.0 for m in celery)
    widest = max(celery, key=lambda m: m["workers"])
    latency = statistics.fmean(widest["run_wall_s"])
    rows = []
    for n in workers:
        by_workers, by_runs = work / n, latency / MAX_CONCURRENT_RUNS
        wall = courses * max(by_workers, by_runs)
        rows.append({"workers": n, "wall_s": wall, "wall_h": wall / 3600,
                     "bound": "workers" if by_workers >= by_runs else "runs in flight",
                     "runs_in_flight_to_keep_busy": math.ceil(n * latency / work)})
    return {"courses": courses, "work_per_course_s": work, "latency_per_run_s": latency,
            "max_concurrent_runs": MAX_CONCURRENT_RUNS, "rows": rows}


def per_step_overhead(modes: dict[str, dict[str, Any]]) -> float | None:
    """Extra wall time per step of Celery with ONE worker over the in-process executor (both run
    the steps one at a time): broker round trip, the worker's set-up, the executor's 1 s poll."""
    one = next((m for m in modes.values() if m["workers"] == 1), None)
    base = modes.get("in_process")
    if one is None or base is None or not one["submit_to_pickup"]["n"]:
        return None
    return (one["wall_s"] - base["wall_s"]) / one["submit_to_pickup"]["n"]


# =============================================================================================
# Report
# =============================================================================================


def tables(res: dict[str, Any]) -> tuple[str, str]:
    modes = res["modes"]
    base = modes["in_process"]
    header = ["figure", *modes]

    def celery_only(m: dict[str, Any], value: Any) -> Any:
        return value if m["workers"] else None

    rows: list[list[Any]] = [
        ["wall time (s)", *(m["wall_s"] for m in modes.values())],
        ["vs in-process", *(ratio(m["wall_s"], base["wall_s"]) for m in modes.values())],
        ["requests", *(m["requests"] for m in modes.values())],
        ["sum of step times (s)", *(m["steps_s"] for m in modes.values())],
        ["worker time per run (s)",
         *(celery_only(m, m["worker_busy_per_run_s"]["mean_s"]) for m in modes.values())],
        ["submit → pickup, median (s)",
         *(m["submit_to_pickup"]["median_s"] for m in modes.values())],
        ["submit → pickup, min (s)", *(m["submit_to_pickup"]["min_s"] for m in modes.values())],
        ["pickup → start, median (s)",
         *(m["pickup_to_start"]["median_s"] for m in modes.values())],
    ]
    measured = format_table(rows, header, markdown=True)
    model_rows = [[r["workers"], r["wall_s"], r["wall_h"], r["bound"],
                   r["runs_in_flight_to_keep_busy"]] for r in res["model"]["rows"]]
    modelled = format_table(model_rows, ["workers", "wall (s)", "wall (h)", "bound by",
                                         "runs in flight to keep them busy"], markdown=True)
    return measured, modelled


def markdown(res: dict[str, Any], measured: str, modelled: str) -> str:
    cfg, mdl = res["config"], res["model"]
    overhead = res.get("per_step_overhead_s")
    return "\n".join([
        "# Scale-out benchmark (`python -m benchmarks.scale_out"
        + (" --quick" if cfg["quick"] else "") + "`)",
        "",
        f"{cfg['courses']} courses x {cfg['learners']} learners, {cfg['latency_ms']:g} ms per "
        f"call, one run per course (one after the other), MariaDB `{res['server']}`, "
        f"{res['machine']['cpus']} CPUs, load average {res['load_start']} at start, "
        f"{res['load_end']} at end; commit `{res['git']['commit'][:10]}`. Celery: RabbitMQ on "
        "loopback, workers of concurrency 1 on this host listening on both queues.",
        "",
        measured,
        "",
        "- submit → pickup: from the run's `Submitting celery task` event to the worker's "
        "`Executing steps` event (broker transit plus waiting for a free worker; the minimum is "
        "the transit alone); pickup → start: the worker rebuilding the instance, the execution "
        "plan and the resources for the step; worker time per run: pickup → success summed over "
        "the run's steps.",
        "- per-step overhead of Celery (one worker vs in-process, both one step at a time): "
        + (f"**{overhead:.2f} s per step**" if overhead is not None else "–")
        + " of wall time (broker round trip, the worker's set-up, and dagster-celery's 1 s "
        "result poll). Requests: each MOOC step on a worker logs in on its own (in-process: "
        "once per run).",
        "",
        f"## Model: {mdl['courses']:,} courses at N workers",
        "",
        f"Work per course W = {mdl['work_per_course_s']:.1f} s of worker time (least contended "
        f"Celery mode), run latency L = {mdl['latency_per_run_s']:.1f} s (mode with the most "
        f"workers), R = {mdl['max_concurrent_runs']} runs in flight: "
        f"`wall(N) = courses x max(W / N, L / R)`; R ≥ N x L / W keeps N workers busy "
        "(`concurrency.runs.max_concurrent_runs`).",
        "",
        modelled,
        "",
        "Assumes a core per worker and MySQL, RabbitMQ and the sources keeping up (not measured "
        "beyond 2 workers on this 2-core machine).",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale_out",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 courses x 200 learners")
    ap.add_argument("--courses", type=int)
    ap.add_argument("--learners", type=int)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--database-url",
                    default=os.environ.get("MOOCASSETS_BENCH_DATABASE_URL",
                                           "mysql+pymysql://root@127.0.0.1:3306/"))
    ap.add_argument("--output-dir", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    n_courses = args.courses or (3 if args.quick else 10)
    learners = args.learners or (200 if args.quick else 1000)
    modes = [m for m in args.modes.split(",") if m]
    if "in_process" not in modes or not any(m.startswith("celery") for m in modes):
        ap.error("--modes needs in_process (the baseline) and at least one celery_N")
    password = uuid.uuid4().hex
    dbs = Databases(args.database_url)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    res: dict[str, Any] = {
        "config": {"courses": n_courses, "learners": learners, "latency_ms": args.latency_ms,
                   "quick": args.quick, "modes": modes},
        "machine": _machine(), "git": _git(), "server": dbs.server_version(),
        "load_start": _load(), "modes": {},
    }
    try:
        with simulator_process(courses=n_courses, learners=learners,
                               latency_ms=args.latency_ms, email=EMAIL, password=password,
                               extra_args=["--now", "wall"]) as root, broker_vhost() as vhost:
            import httpx

            courses = [c["id"] for c in httpx.get(
                f"{root}/api/custom/v1/course-details/all/", timeout=60).json()["data"]]
            for mode in modes:
                res["modes"][mode] = run_mode(mode, root, password, dbs, tmp, courses, vhost)
    finally:
        dbs.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    res["load_end"] = _load()
    res["model"] = model(res["modes"])
    res["per_step_overhead_s"] = per_step_overhead(res["modes"])
    measured, modelled = tables(res)
    print(measured, "\n", modelled, sep="\n")
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "scale_out_quick" if args.quick else "scale_out"
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str))
    (out_dir / f"{stem}.md").write_text(markdown(res, measured, modelled))
    _log(f"wrote {out_dir / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
