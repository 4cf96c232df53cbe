"""Child processes of the demo, benchmarks and end-to-end tests: ports, clean shutdown, and stop
signals.

Every child is started in its own process group (``start_new_session=True``) so that stopping it
stops what it started too (a webserver's code server, a daemon's code server and run processes):
:func:`stop_process_group`. A program that starts children runs inside :func:`stop_on_signals`,
so that SIGTERM (``kill``), SIGHUP (a closed terminal) and SIGINT (Ctrl-C) all unwind it like
Ctrl-C does and its ``with``/``finally`` blocks stop those children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PROC = Path("/proc")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``.

    Reads ``/proc``; where there is none, any signalable member counts (``[pgid]``)."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_process_group(
    proc: subprocess.Popen[Any], timeout: float = 15.0, first: int = signal.SIGTERM
) -> None:
    """Signal ``proc``'s process group (started with ``start_new_session=True``) and wait until
    every member is gone; SIGKILL whatever is left after ``timeout`` seconds. Children
    (webserver workers, code servers, run processes) go too, even when they outlive the leader.

    Under :func:`stop_on_signals` a stop signal arriving meanwhile waits until this returns, so
    a second Ctrl-C cannot leave a group half stopped."""
    with _shielded():
        _stop_group(proc, timeout, first)


def _stop_group(proc: subprocess.Popen[Any], timeout: float, first: int) -> None:
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, first)
    deadline = time.monotonic() + timeout
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    if not _wait_group_gone(pgid, deadline):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _wait_group_gone(pgid, time.monotonic() + 5)
    proc.wait()


@dataclass
class StopRequest:
    """What :func:`stop_on_signals` saw: the first stop signal, and whether it has unwound the
    main thread yet (after that, further signals are ignored so that cleanup completes)."""

    signum: int | None = None
    raised: bool = False
    shielded: int = 0
    """Depth of :func:`_shielded` sections: stop signals wait while it is above zero."""

    def acknowledge(self) -> None:
        """The main thread is stopping (it caught the ``KeyboardInterrupt``): no more of them."""
        self.raised = True

    @property
    def exit_code(self) -> int:
        """The shell's convention for a death by that signal (128 + number)."""
        return 128 + (self.signum or signal.SIGINT)


_ACTIVE: list[StopRequest] = []


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """A section that stop signals do not interrupt (they are handled after it)."""
    request = _ACTIVE[-1] if _ACTIVE else None
    if request is not None:
        request.shielded += 1
    try:
        yield
    finally:
        if request is not None:
            request.shielded -= 1


@contextlib.contextmanager
def stop_on_signals(retry_interval: float = 0.5) -> Iterator[StopRequest]:
    """Within: SIGTERM, SIGHUP and SIGINT stop the main thread like Ctrl-C -- one
    ``KeyboardInterrupt``, then no more, so every ``with``/``finally`` on the way out runs to the
    end and stops the child processes it started.

    SIGTERM and SIGHUP are passed to whatever handles SIGINT at that moment. That is not always
    this module: while Dagster executes a run in this process it handles SIGINT and SIGTERM
    itself, fails the run cleanly ("interrupted") and returns. So a watcher thread also sees each
    signal (``signal.set_wakeup_fd``: every caught signal, whoever handles it) and interrupts the
    main thread again every ``retry_interval`` seconds until it has unwound. Main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("stop_on_signals() must be entered from the main thread")
    request = StopRequest()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if request.signum is None:
            request.signum = signum
        if signum != signal.SIGINT:
            handler = signal.getsignal(signal.SIGINT)  # Dagster's while it runs a step
            if callable(handler) and handler is not on_signal:
                handler(signal.SIGINT, frame)
                return
        if not request.raised and not request.shielded:
            request.raised = True
            raise KeyboardInterrupt

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    main_id = threading.main_thread().ident
    assert main_id is not None

    def watch() -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if not any(n in STOP_SIGNALS for n in data):
                continue
            if request.signum is None:
                request.signum = next(n for n in data if n in STOP_SIGNALS)
            while not request.raised:
                time.sleep(retry_interval)
                if not request.raised:
                    signal.pthread_kill(main_id, signal.SIGINT)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="stop-signals", daemon=True)
    watcher.start()
    _ACTIVE.append(request)
    try:
        yield request
    finally:
        _ACTIVE.remove(request)
        request.raised = True  # the watcher stops interrupting
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        writer.close()  # the watcher reads the end of the stream and returns
        watcher.join(timeout=5)
        reader.close()
