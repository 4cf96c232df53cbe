"""Serving the simulator: a uvicorn server in a background thread (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from .app import H5P_PREFIX, MOOC_PREFIX


def mooc_base(root: str) -> str:
    """MOOC API base url for a simulator root url."""
    return root.rstrip("/") + MOOC_PREFIX


def h5p_base(root: str) -> str:
    """H5P API base url for a simulator root url."""
    return root.rstrip("/") + H5P_PREFIX


@contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread; yields the root url ``http://host:port``.

    ``port=0`` picks a free port. On exit the server shuts down (hanging "timeout" responses are
    cut after one second) and the thread is joined.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan="off",
                            timeout_graceful_shutdown=1, access_log=False)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"moocsim-{actual_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"simulator failed to start: {errors[:1]}")
        if time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise TimeoutError("simulator did not start in time")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{actual_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
