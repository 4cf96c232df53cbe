"""The simulator in its own process (so it does not share the benchmarked code's GIL), on a free
loopback port, for as long as a ``with`` block; shared by the benchmarks."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from moocassets.processes import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def simulator_process(
    *,
    courses: int,
    learners: int,
    latency_ms: float,
    email: str,
    password: str,
    extra_args: Sequence[str] = (),
    start_timeout_s: float = 120,
) -> Iterator[str]:
    """Yield the root URL of a running ``python -m moocassets.simulator``; stop it afterwards."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "moocassets.simulator", "--port", str(port), "--courses",
           str(courses), "--learners", str(learners), "--latency-ms", str(latency_ms),
           "--mooc-email", email, "--mooc-password", password, "--log-level", "warning",
           *extra_args]
    root = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: nothing blocks on a full pipe
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    stderr.seek(0)
                    err = stderr.read().decode(errors="replace")
                    raise RuntimeError(f"simulator exited with {proc.returncode}: {err[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{root}/__sim__/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"simulator did not start within {start_timeout_s:g} s")
                time.sleep(0.1)
            yield root
        finally:
            stop_process_group(proc, timeout=20)
