"""Process groups and stop signals (``moocassets/processes.py``), in this process: real signals,
real child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from moocassets.processes import (
    STOP_SIGNALS,
    free_port,
    group_members,
    port_in_use,
    stop_on_signals,
    stop_process_group,
)

STUBBORN_CHILD = (
    "import signal, subprocess, sys, time\n"
    # a grandchild that ignores SIGTERM and outlives its parent (the group leader)
    "subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
    "time.sleep(120)\n"
)


def test_stop_process_group_leaves_no_member_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN_CHILD], start_new_session=True)
    deadline = time.monotonic() + 30
    while len(group_members(proc.pid)) < 2:
        assert time.monotonic() < deadline, "the grandchild did not start"
        time.sleep(0.05)
    stop_process_group(proc, timeout=1)
    assert group_members(proc.pid) == []
    assert proc.returncode is not None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=lambda s: s.name)
def test_each_stop_signal_unwinds_the_main_thread_once(sig: signal.Signals) -> None:
    cleaned = []
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    with pytest.raises(KeyboardInterrupt), stop_on_signals() as request:
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)  # interrupted
        finally:
            os.kill(os.getpid(), sig)  # a second signal during cleanup is ignored
            time.sleep(0.2)
            cleaned.append(True)
    assert request.signum == sig
    assert request.exit_code == 128 + sig
    assert cleaned == [True]
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before  # handlers restored


def test_a_stop_signal_swallowed_by_another_handler_is_delivered_again() -> None:
    """What Dagster does while it runs a step: it handles SIGINT itself and carries on. The
    watcher interrupts the main thread again once that handler is gone."""
    seen = []
    with pytest.raises(KeyboardInterrupt), stop_on_signals(retry_interval=0.1) as request:
        ours = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # swallowed (and maybe re-sent) while the other handler is installed
        signal.signal(signal.SIGINT, ours)
        signal.signal(signal.SIGTERM, ours)
        time.sleep(5)  # interrupted again within retry_interval
    assert seen and request.signum == signal.SIGTERM


def test_port_in_use() -> None:
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert port_in_use(port)
