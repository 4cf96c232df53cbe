"""Separate "hosts" for the Celery tests: network namespaces, TCP forwarders, workers, a vhost.

Each worker runs in its own network namespace (``ip netns``), joined to the host namespace by a
veth pair with a /30 of 10.231.0.0/16. MariaDB, RabbitMQ and the simulator listen on loopback
only, so a worker reaches them through TCP forwarders that listen on the host end of ITS veth
pair and connect to 127.0.0.1 (the servers see a loopback client, which RabbitMQ's ``guest``
rule requires). Nothing else is shared but the filesystem, and each worker gets its own
``DAGSTER_HOME`` and ``TMPDIR``. Every piece registers its own cleanup on an ``ExitStack`` the
moment it exists, so an exception, Ctrl-C or a signal mid-setup still removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest

from moocassets.processes import stop_process_group

NETWORK = ipaddress.ip_network("10.231.0.0/16")
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def require_namespaces() -> None:
    """Skip (fail under CI) when this machine cannot make test hosts: root, ``ip``,
    ``rabbitmqctl``."""
    missing = [what for what, ok in (
        ("root", os.geteuid() == 0),
        ("ip (iproute2)", shutil.which("ip") is not None),
        ("rabbitmqctl", shutil.which("rabbitmqctl") is not None),
    ) if not ok]
    if missing:
        msg = f"the Celery host tests need {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr[-800:]}")
    return proc


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (as Ctrl-C does) while inside, so pytest
    unwinds and every fixture finalizer runs instead of the process dying with namespaces
    left behind."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# =============================================================================================
# RabbitMQ: one vhost per test session, so its queues are nobody else's
# =============================================================================================


@contextlib.contextmanager
def rabbitmq_vhost(user: str = "guest") -> Iterator[str]:
    name = f"moocassets_test_{uuid.uuid4().hex[:10]}"
    run("rabbitmqctl", "-q", "add_vhost", name)
    try:
        run("rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield name
    finally:
        run("rabbitmqctl", "-q", "delete_vhost", name, check=False)


# =============================================================================================
# TCP forwarders (host namespace, asyncio in one thread)
# =============================================================================================


class Forwarders:
    """Listen on ``(host, port)``, connect each client to ``(target_host, target_port)``; when
    either side closes (or dies), the other is closed too."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="forwarders",
                                        daemon=True)
        self._thread.start()

    def add(self, host: str, port: int, target_host: str, target_port: int) -> None:
        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

        async def start() -> asyncio.Server:
            return await asyncio.start_server(client, host, port, reuse_address=True)

        self._servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# =============================================================================================
# Network namespaces
# =============================================================================================


@dataclass(frozen=True)
class Host:
    """A network namespace joined to the host namespace by a veth pair."""

    name: str  # namespace and worker name
    host_ip: str  # the host end: where this host's forwarders listen
    own_ip: str  # the namespace end

    def exec_args(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` random /30s of 10.231.0.0/16 that no interface of this host uses."""
    used = {
        ipaddress.ip_interface(token).ip
        for line in run("ip", "-o", "-4", "addr", "show").stdout.splitlines()
        for token in line.split()
        if "/" in token and token[0].isdigit()
    }
    candidates = list(NETWORK.subnets(new_prefix=30))
    random.shuffle(candidates)
    return [n for n in candidates if not any(a in n for a in used)][:count]


def make_hosts(stack: contextlib.ExitStack, names: list[str]) -> list[Host]:
    tag = uuid.uuid4().hex[:5]
    hosts = []
    for name, subnet in zip(names, _free_subnets(len(names)), strict=True):
        ns, veth_host, veth_ns = f"mc{tag}{name}", f"mch{tag}{name}"[:15], f"mcn{tag}{name}"[:15]
        host_ip, own_ip = (str(a) for a in list(subnet.hosts())[:2])
        run("ip", "netns", "add", ns)
        stack.callback(run, "ip", "netns", "del", ns, check=False)
        run("ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns)
        stack.callback(run, "ip", "link", "del", veth_host, check=False)  # gone with ns: fine
        run("ip", "link", "set", veth_ns, "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", veth_host)
        run("ip", "link", "set", veth_host, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{own_ip}/30", "dev", veth_ns)
        run("ip", "netns", "exec", ns, "ip", "link", "set", veth_ns, "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        hosts.append(Host(ns, host_ip, own_ip))
    return hosts


def can_connect_from(host: Host, address: str, port: int) -> bool:
    """Whether a TCP connection from inside ``host`` to ``address:port`` succeeds."""
    code = (f"import socket; socket.create_connection(({address!r}, {port}), timeout=3).close()")
    return run(*host.exec_args(sys.executable, "-c", code), check=False).returncode == 0


# =============================================================================================
# Workers
# =============================================================================================


@dataclass
class Worker:
    host: Host
    home: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def node_name(self) -> str:
        return f"{self.host.name}@"  # Celery's node name: <name>@<hostname>

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: a host that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=20)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_worker(stack: contextlib.ExitStack, host: Host, parent: Path, env: Mapping[str, str],
                 queues: str) -> Worker:
    """``dagster-celery worker start`` inside ``host`` with its own DAGSTER_HOME and TMPDIR."""
    home = parent / f"worker_{host.name}"
    (home / "tmp").mkdir(parents=True)
    # the deployment's instance config (storage from the worker's own DAGSTER_MYSQL_URL)
    shutil.copy(REPO / "deploy" / "celery" / "dagster.yaml", home / "dagster.yaml")
    log = home / "worker.log"
    worker_env = {**env, "DAGSTER_HOME": str(home), "TMPDIR": str(home / "tmp"),
                  "PATH": f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"}
    cmd = host.exec_args(
        str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
        "-y", str(REPO / "deploy" / "celery" / "worker.yaml"), "-q", queues, "-n", host.name,
        "--loglevel", "INFO", "--", "--concurrency", "1",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=home, env=worker_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(host, home, log, proc)
    stack.callback(worker.stop)
    return worker


def wait_until(what: str, probe: Callable[[], bool], timeout: float,
               on_timeout: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                               f"{on_timeout()}")
        time.sleep(0.2)


def wait_ready(worker: Worker, timeout: float = 120) -> None:
    def ready() -> bool:
        assert worker.alive(), f"worker {worker.host.name} exited:\n{worker.tail()}"
        return " ready." in worker.log.read_text(errors="replace")

    wait_until(f"worker {worker.host.name}", ready, timeout, worker.tail)
