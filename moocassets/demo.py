"""``make demo``: simulator → partitions → every asset for every course → row counts → Dagster UI.

Usage: ``python -m moocassets.demo [--ui] [--courses 3] [--learners 200] [--seed 7]``.

The simulator runs as a child process on a loopback port with a freshly generated password, which
is handed to the pipeline through the environment (never printed). ``DAGSTER_HOME`` defaults to
``./.dagster_home`` so the UI shows the demo's runs. Without ``MOOCASSETS_DATABASE_URL`` the
warehouse is an embedded SQLite file; set it to a MySQL URL to fill MySQL instead.

Stopping: Ctrl-C, ``kill`` (SIGTERM) or closing the terminal (SIGHUP), sent to ``make`` with this
process or to this process alone, stops every process the demo started (simulator, webserver,
daemon, their code servers and runs) before it exits (``moocassets.processes.stop_on_signals``).
A port that is already taken (a demo still running?) is reported and the demo exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from moocassets import settings
from moocassets.processes import port_in_use, stop_on_signals, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
DEMO_EMAIL = "demo.operator@example.edu"


def _say(message: str) -> None:
    """Print, also when the terminal is gone (SIGHUP): cleanup must not fail on a dead tty."""
    with contextlib.suppress(OSError, ValueError):
        print(message, flush=True)


def busy_ports(ports: dict[str, int]) -> str | None:
    """A message naming the taken ports among ``ports`` ({what: port}), or None."""
    taken = {what: port for what, port in ports.items() if port_in_use(port)}
    if not taken:
        return None
    names = ", ".join(f"{port} ({what})" for what, port in taken.items())
    flags = " ".join(f"--{what}-port N" for what in taken)
    return (f"[demo] port {names} is already in use on 127.0.0.1 -- is another `make demo` "
            "still running? Stop it (Ctrl-C in its terminal, or `kill` its make or python "
            f"process), or choose free ports: make demo DEMO_ARGS='{flags}'. Nothing started.")


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], name: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process_group(proc)
        _say(f"[demo] stopped {name}")


def _prepare_dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text((ROOT / "deploy" / "local" / "dagster.yaml").read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def materialize_everything(course_ids: list[str]) -> None:
    """Register the courses and materialize every asset for each, printing progress."""
    import dagster as dg

    from moocassets.backfill import run_backfill
    from moocassets.definitions import defs
    from moocassets.partitions import COURSE_PARTITIONS_NAME

    instance = dg.DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME))
    new = [c for c in course_ids if c not in known]
    if new:
        instance.add_dynamic_partitions(COURSE_PARTITIONS_NAME, new)
    print(f"[demo] registered {len(new)} new course partition(s); {len(course_ids)} in all",
          flush=True)
    model = dg.AssetKey("dropout_risk_model")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.monotonic()
    print(f"[demo] materializing every course-partitioned asset for {len(course_ids)} course(s) "
          "in one ranged run ...", flush=True)
    # keep the terminal readable: step events go to the instance (and the UI), not here
    for run in run_backfill(instance, course_ids, tags={"moocassets/source": "demo"},
                            run_config=quiet):
        if run.superseded:  # a failed ranged run, followed by one run per course
            print(f"[demo]     the ranged run failed; retrying {len(run.courses)} course(s) "
                  "one by one", flush=True)
            continue
        _check(run.result, ", ".join(run.courses))
        outputs = [e for e in run.result.all_events if e.is_successful_output]
        print(f"[demo]     done: {len(outputs)} outputs in {time.monotonic() - started:.1f} s",
              flush=True)
    print("[demo] training dropout_risk_model on the history of ended courses ...", flush=True)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[model], raise_on_error=False, run_config=quiet,
        tags={"moocassets/source": "demo"},
    )
    _check(result, "dropout_risk_model")


def _check(result: Any, what: str) -> None:
    from moocassets.backfill import interrupted

    if interrupted(result):
        raise KeyboardInterrupt(f"run for {what} was interrupted")
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise SystemExit(f"[demo] run for {what} failed at {failed}; see the UI/logs")


def print_row_counts(course_ids: list[str]) -> dict[str, int]:
    import sqlalchemy as sa

    from moocassets.io import make_engine
    from moocassets.schema import WAREHOUSE_TABLES

    url = os.environ.get(settings.DATABASE_URL) or settings.sqlite_fallback_url()
    engine = make_engine(url)
    counts: dict[str, int] = {}
    print(f"\n[demo] rows per table in {sa.make_url(url).render_as_string(hide_password=True)}")
    print(f"  {'table':<24}{'rows':>8}   per course")
    with engine.connect() as conn:
        for spec in WAREHOUSE_TABLES:
            t = sa.table(spec.name, sa.column("course_id"))
            rows = conn.execute(
                sa.select(t.c.course_id, sa.func.count()).group_by(t.c.course_id)
            ).all()
            per = {r[0]: int(r[1]) for r in rows}
            counts[spec.name] = sum(per.values())
            detail = ", ".join(str(per.get(c, 0)) for c in course_ids)
            print(f"  {spec.name:<24}{counts[spec.name]:>8}   [{detail}]")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", action="store_true", help="serve the Dagster UI afterwards")
    parser.add_argument("--courses", type=int, default=3)
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sim-port", type=int, default=8765)
    parser.add_argument("--ui-port", type=int, default=3000)
    args = parser.parse_args(argv)

    busy = busy_ports({"sim": args.sim_port, **({"ui": args.ui_port} if args.ui else {})})
    if busy:
        print(busy, file=sys.stderr)
        return 2
    with stop_on_signals() as stop:
        try:
            return _run(args)
        except KeyboardInterrupt:
            stop.acknowledge()
            name = signal.Signals(stop.signum or signal.SIGINT).name
            _say(f"[demo] stopped by {name}; every process it started has ended")
            return stop.exit_code


def _run(args: argparse.Namespace) -> int:
    _prepare_dagster_home()
    if os.environ.get(settings.DATABASE_URL):
        from moocassets.io import ensure_database

        ensure_database(os.environ[settings.DATABASE_URL])
    sim_port = args.sim_port
    password = secrets.token_urlsafe(18)
    base = f"http://127.0.0.1:{sim_port}"
    os.environ.update(
        {
            settings.MOOC_API_URL: f"{base}/api/custom/v1",
            settings.H5P_API_URL: f"{base}/wp-json/mooc/v1",
            settings.MOOC_EMAIL: DEMO_EMAIL,
            settings.MOOC_PASSWORD: password,
        }
    )
    env = dict(os.environ)
    sim_cmd = [
        sys.executable, "-m", "moocassets.simulator", "--host", "127.0.0.1",
        "--port", str(sim_port), "--courses", str(args.courses), "--learners",
        str(args.learners), "--seed", str(args.seed), "--now", "wall",
        "--log-level", "warning",  # credentials: MOOCASSETS_MOOC_EMAIL/_PASSWORD in env
    ]
    print(f"[demo] starting the simulator on {base} ({args.courses} courses × "
          f"{args.learners} learners, seed {args.seed})", flush=True)
    with _process(sim_cmd, env, "simulator") as sim:
        _wait_http(f"{base}/__sim__/health", 60, sim)
        courses = httpx.get(f"{base}/api/custom/v1/course-details/all/", timeout=10).json()["data"]
        course_ids = [c["id"] for c in courses]
        materialize_everything(course_ids)
        print_row_counts(course_ids)
        if not args.ui:
            return 0
        ui_port = args.ui_port
        workspace = str(ROOT / "workspace.yaml")
        bin_dir = Path(sys.executable).parent
        with _process(
            [str(bin_dir / "dagster-daemon"), "run", "-w", workspace], env, "dagster-daemon"
        ), _process(
            [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1",
             "-p", str(ui_port)],
            env, "dagster-webserver",
        ) as web:
            _wait_http(f"http://127.0.0.1:{ui_port}/server_info", 120, web)
            print(f"\n[demo] Dagster UI: http://127.0.0.1:{ui_port}  (lineage: Assets → "
                  "View global asset lineage). Ctrl-C (or closing this terminal, or `kill`) "
                  "stops the demo and everything it started.", flush=True)
            web.wait()
            _say(f"[demo] the webserver exited with code {web.returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
