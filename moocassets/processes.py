"""Child processes of the demo, benchmarks and end-to-end tests: ports and clean shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process_group(
    proc: subprocess.Popen[Any], timeout: float = 15.0, first: int = signal.SIGTERM
) -> None:
    """Signal ``proc``'s process group (started with ``start_new_session=True``) and wait;
    SIGKILL after ``timeout`` seconds. Children (webserver workers, code servers) go too."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, first)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
