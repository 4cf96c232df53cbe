"""`make demo` stops with everything it started: real signals to make's process group (as a
terminal sends them: Ctrl-C, a closed window) and to the python process alone (`kill`).

Every process the demo starts inherits a unique environment variable, so the test finds them
all in ``/proc`` (simulator, webserver, daemon, their code servers, run processes), wherever
they were reparented. After make has exited, none may be left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest

from moocassets.processes import free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
TOKEN_VAR = "MOOCASSETS_DEMO_SIGNAL_TEST"
UI_TIMEOUT_S = 420.0
STOP_TIMEOUT_S = 120.0


def _tagged(token: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries ``token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if state not in ("Z", "X"):
            found[int(proc.name)] = cmdline.strip()
    return found


@dataclass
class Demo:
    make: subprocess.Popen[bytes]
    token: str
    log: Path
    home: Path
    ui_port: int
    sim_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.make.poll() is None, f"make exited waiting for {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()}"
            time.sleep(0.2)

    def python_pid(self) -> int:
        """The demo's python process (make's child)."""
        for pid, cmdline in _tagged(self.token).items():
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == self.make.pid and "moocassets.demo" in cmdline:
                return pid
        raise AssertionError(f"no demo python process under make:\n{self.output()}")

    def run_records(self) -> list[dg.RunRecord]:
        instance = dg.DagsterInstance.from_config(str(self.home))
        try:
            return list(instance.get_run_records())
        finally:
            instance.dispose()

    def stop_and_check(self, send: Callable[[], None], signame: str) -> None:
        assert _tagged(self.token), "nothing to stop"
        send()
        try:
            self.make.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make did not exit after {signame}:\n{self.output()[-3000:]}")
        left = _tagged(self.token)
        assert not left, f"still running after {signame}: {left}\n{self.output()[-3000:]}"
        assert f"[demo] stopped by {signame}" in self.output(), self.output()[-3000:]


@contextmanager
def make_demo(tmp_path: Path, *extra: str) -> Iterator[Demo]:
    """``make demo`` (UI mode) in its own process group, as a terminal starts a job."""
    token = uuid.uuid4().hex
    ui_port, sim_port = free_port(), free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOOCASSETS_")}
    env.update({TOKEN_VAR: token, "DAGSTER_HOME": str(home),
                "MOOCASSETS_SQLITE_PATH": str(tmp_path / "warehouse.sqlite")})
    args = f"--courses 2 --learners 10 --ui-port {ui_port} --sim-port {sim_port} {' '.join(extra)}"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        make = subprocess.Popen(["make", "--no-print-directory", "demo", f"DEMO_ARGS={args}"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    demo = Demo(make, token, log, home, ui_port, sim_port)
    try:
        yield demo
    finally:
        for pid in _tagged(token):  # a failed test leaves nothing behind either
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        make.wait(timeout=30)


def _serving(demo: Demo) -> bool:
    return "Dagster UI:" in demo.output()


def _loading(demo: Demo) -> bool:
    """The ranged run is executing (in the demo's python process)."""
    return "in one ranged run" in demo.output() and any(
        r.dagster_run.status == dg.DagsterRunStatus.STARTED for r in demo.run_records()
    )


RUN_ASSETS = ["mooc_enrollments_extract", "h5p_scores_extract", "video_progress_extract",
              "dashboard_extract", "enrollments", "h5p_scores", "video_progress"]
LAUNCH = """mutation($p: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $p) { __typename ... on PythonError { message } } }"""


def _launch_run_through_the_daemon(demo: Demo) -> None:
    """A backfill of one course from the UI's API: the daemon launches it as a run process
    (spawned by its code server) that is still running when the signal comes."""
    course = httpx.get(f"http://127.0.0.1:{demo.sim_port}/__sim__/courses").json()["courses"][0]
    params = {"assetSelection": [{"path": [name]} for name in RUN_ASSETS],
              "partitionNames": [course["course_id"]]}
    answer = httpx.post(f"http://127.0.0.1:{demo.ui_port}/graphql", timeout=60,
                        json={"query": LAUNCH, "variables": {"p": params}}).json()
    assert answer["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess"

    def running() -> bool:
        spawned = any("spawn_main" in cmd for cmd in _tagged(demo.token).values())
        return spawned and any(
            r.dagster_run.status == dg.DagsterRunStatus.STARTED
            and "dagster/backfill" in r.dagster_run.tags
            for r in demo.run_records()
        )

    demo.wait_for("a run process launched by the daemon", running, 240)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=lambda s: s.name)
def test_a_signal_to_makes_process_group_stops_everything(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with make_demo(tmp_path) as demo:
        demo.wait_for("the UI", lambda: _serving(demo), UI_TIMEOUT_S)
        if sig == signal.SIGTERM:  # the daemon's run processes go too
            _launch_run_through_the_daemon(demo)
        demo.stop_and_check(lambda: os.killpg(demo.make.pid, sig), sig.name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=lambda s: s.name)
def test_a_signal_to_the_python_process_during_the_load_stops_everything(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Mid-run: Dagster handles SIGINT/SIGTERM inside a run itself (it fails the run cleanly);
    the demo still stops, and leaves no run marked as in progress."""
    with make_demo(tmp_path) as demo:
        demo.wait_for("the ranged run to execute", lambda: _loading(demo), UI_TIMEOUT_S)
        python = demo.python_pid()
        demo.stop_and_check(lambda: os.kill(python, sig), sig.name)
        statuses = {r.dagster_run.status for r in demo.run_records()}
        assert statuses <= {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}, statuses


def test_a_second_demo_on_a_busy_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with make_demo(tmp_path, "--ui-port", str(port)) as demo:
            assert demo.make.wait(timeout=120) != 0
            assert f"port {port} (ui) is already in use" in demo.output(), demo.output()
            assert "another `make demo`" in demo.output()
            assert "starting the simulator" not in demo.output()
            assert not _tagged(demo.token)
