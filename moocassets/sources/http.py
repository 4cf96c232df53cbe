"""The one HTTP policy shared by the MOOC and H5P clients.

What lives here (and nowhere else):

* **Timeouts**: explicit ``httpx.Timeout(read, connect)`` per attempt, never longer than what is
  left of the call's time budget.
* **Retries** (GET only): 429 and 503 honour ``Retry-After`` (delta seconds or HTTP-date, capped by
  ``max_retry_after_seconds``); other 5xx, timeouts, connection errors and 2xx bodies that are not
  valid JSON (malformed or truncated) back off exponentially with full jitter. At most
  ``max_attempts`` attempts and ``call_budget_seconds`` per call, then a :class:`SourceError`
  subclass. Other 4xx are not retried; 401/403 go to the auth handler (MOOC re-login, once per
  call); 404 is handed back to the caller, which knows what it means for its endpoint.
* **Adaptive concurrency**: :class:`AdaptiveLimiter` halves its limit on a 429 (once per "epoch",
  so a burst of 429s from requests already in flight counts once) and grows it by one after
  ``limit`` consecutive successes, between 1 and the configured maximum.
* **Redaction**: every log line and error message produced by this package goes through
  :func:`moocassets.sources.redaction.redact` (passwords, session ids, CSRF tokens, edX JWT
  cookies removed).
* **Stats**: :class:`FetchStats` per public call, all numeric so the UI can plot them.
* **Lifecycle**: :class:`HttpSourceResource` owns one :class:`HttpSession` (one event-loop thread,
  one keep-alive ``httpx.AsyncClient``, one limiter) per Dagster run or per ``with
  resource.session():`` block. Public methods are synchronous and run their coroutine on that
  session's loop. (A persistent loop rather than ``asyncio.run`` per call: pooled connections are
  bound to their event loop, so a fresh loop per call would defeat keep-alive. It also makes the
  sync methods safe to call from code that already runs an event loop.) A method called outside a
  session opens a temporary one and closes it before returning, so nothing is ever left unclosed.

Tests (and the in-process replay) route requests through an ``httpx`` transport
(``httpx.MockTransport`` or ``httpx.ASGITransport(app)``) and a fake ``sleep`` by subclassing the
resource (:meth:`HttpSourceResource.transport` / :meth:`~HttpSourceResource.sleeper`);
:meth:`HttpSourceResource.with_transport` builds such a subclass.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import email.utils
import importlib.metadata
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from moocassets.sources.errors import (
    SourceAuthError,
    SourceError,
    SourceHTTPError,
    SourceUnavailableError,
)
from moocassets.sources.redaction import redact

T = TypeVar("T")
K = TypeVar("K")

DEFAULT_LOGGER_NAME = "moocassets.sources"


def _package_version() -> str:
    try:
        return importlib.metadata.version("moocassets")
    except importlib.metadata.PackageNotFoundError:
        import moocassets

        return str(getattr(moocassets, "__version__", "0.1.0"))


USER_AGENT = f"moocassets/{_package_version()} (+httpx/{httpx.__version__})"


_CURRENT_LOG: contextvars.ContextVar[SafeLog | None] = contextvars.ContextVar(
    "moocassets_sources_log", default=None
)


class LoggerLike(Protocol):
    """``logging.Logger``, ``logging.LoggerAdapter`` or Dagster's ``context.log``."""

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class SafeLog:
    """Every log line of this package goes through here and is redacted first."""

    def __init__(self, log: LoggerLike | None = None) -> None:
        self.log: LoggerLike = log if log is not None else logging.getLogger(DEFAULT_LOGGER_NAME)

    def debug(self, msg: str) -> None:
        self.log.debug(redact(msg))

    def info(self, msg: str) -> None:
        self.log.info(redact(msg))

    def warning(self, msg: str) -> None:
        self.log.warning(redact(msg))


# --------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------


@dataclass
class FetchStats:
    """Counters of one public call. All numeric, so they can go straight into asset metadata."""

    requests: int = 0  # HTTP requests sent (including retries, logins, fallbacks)
    retries: int = 0  # re-attempts after a retryable failure
    throttled: int = 0  # 429 answers
    errors: int = 0  # failed attempts other than 429 (5xx, timeouts, connection, bad bodies)
    reauths: int = 0  # MOOC re-logins after 401/403
    duration_s: float = 0.0
    learners: int = 0  # learners covered by a fan-out
    pages: int = 0  # pages read (M1)
    fallbacks: int = 0  # H3 -> H4 dashboard fallbacks, unencoded -> encoded course id retries
    min_concurrency: int = 0  # lowest adaptive concurrency limit seen during the call

    def as_metadata(self) -> dict[str, float | int]:
        """Plain numbers for ``dagster`` metadata (ints stay ints)."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def merge(self, other: FetchStats) -> FetchStats:
        """Sum two stats (min_concurrency: the lower non-zero one)."""
        out = FetchStats()
        for name, value in asdict(self).items():
            setattr(out, name, value + getattr(other, name))
        mins = [m for m in (self.min_concurrency, other.min_concurrency) if m]
        out.min_concurrency = min(mins) if mins else 0
        return out


@dataclass
class Fetched(Generic[T]):
    """A payload plus the stats of the call that fetched it."""

    data: T
    stats: FetchStats = field(default_factory=FetchStats)


# --------------------------------------------------------------------------------------------
# Retry-After, backoff
# --------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP-date); None if absent
    or unparseable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return rng.uniform(0.0, ceiling)


# --------------------------------------------------------------------------------------------
# Adaptive concurrency limiter
# --------------------------------------------------------------------------------------------


class AdaptiveLimiter:
    """An asyncio limiter whose limit halves on throttling and recovers additively (AIMD).

    * ``on_throttle(epoch)``: halve the limit (min ``min_limit``), unless the throttled request was
      started before the last decrease (its epoch is older): one burst of 429s halves once.
    * ``on_success()``: after ``limit`` successes since the last change, limit += 1 (up to max).

    Must be used from a single event loop (not thread-safe, by design: no locks needed).
    """

    def __init__(self, max_limit: int, min_limit: int = 1) -> None:
        if max_limit < 1:
            raise ValueError("max_limit must be >= 1")
        self.max_limit = max_limit
        self.min_limit = max(1, min(min_limit, max_limit))
        self.limit = max_limit
        self.in_flight = 0
        self.epoch = 0
        self.min_seen = max_limit
        self.decreases = 0
        self.increases = 0
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to pass to :meth:`on_throttle`."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return self.epoch
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # a slot was granted just before cancellation
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    @contextlib.asynccontextmanager
    async def slot(self) -> Any:
        epoch = await self.acquire()
        try:
            yield epoch
        finally:
            self.release()

    def on_throttle(self, epoch: int) -> None:
        if epoch < self.epoch:
            return
        self.epoch += 1
        self._successes = 0
        new = max(self.min_limit, self.limit // 2)
        if new < self.limit:
            self.limit = new
            self.decreases += 1
        self.min_seen = min(self.min_seen, self.limit)

    def on_success(self) -> None:
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.max_limit:
            self.limit += 1
            self.increases += 1
            self._successes = 0
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)


# --------------------------------------------------------------------------------------------
# The engine: one AsyncClient, the retry loop
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpPolicy:
    system: str
    read_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_attempts: int = 5
    call_budget_s: float = 300.0
    max_retry_after_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_concurrency: int = 4
    progress_log_s: float = 5.0


@dataclass
class Request:
    """One logical GET call (retried as a unit)."""

    url: str
    endpoint: str  # e.g. "M4 /export/student-grades/course-v1%3AX%2BY%2BZ/" (no secrets)
    course_id: str | None = None
    user_id: int | None = None
    read_timeout_s: float | None = None  # override (MOOC export/* routes)
    passthrough: frozenset[int] = frozenset({404})  # statuses handed back instead of raised
    quiet: bool = False  # log retries at DEBUG instead of WARNING (fan-outs)
    auth: bool = True  # False for the login flow's own requests


@dataclass
class Answer:
    status: int
    json: Any
    text: str
    headers: httpx.Headers


class AuthHandler(Protocol):
    generation: int

    async def ensure(self, engine: Engine, stats: FetchStats) -> None: ...
    async def renew(self, engine: Engine, stats: FetchStats, seen_generation: int) -> None: ...


SleepFn = Callable[[float], Awaitable[None]]


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that hands its lane back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream, self._release = stream, release

    async def __aiter__(self) -> Any:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class LaneTransport(httpx.AsyncBaseTransport):
    """``lanes`` single-connection keep-alive transports behind one ``httpx.AsyncClient``.

    Why: httpcore's shared pool assigns every queued request to the *first* idle connection, so
    requests arriving together collide (``ConnectionNotAvailable``) and retry, and each pass scans
    all connections; at 16 in flight this cost ~10 internal retries per request and most of the
    client's CPU (measured with ``benchmarks/extract_latency.py``). One connection per lane makes
    that bookkeeping O(1). A lane is held from request start until the response body is closed.
    """

    def __init__(self, lanes: int, *, keepalive_expiry: float = 30.0) -> None:
        self._max = max(1, lanes)
        self._keepalive_expiry = keepalive_expiry
        self._ssl: Any = None  # one SSL context for all lanes (building one costs ~20 ms)
        self._all: list[httpx.AsyncHTTPTransport] = []
        self._free: collections.deque[httpx.AsyncHTTPTransport] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[httpx.AsyncHTTPTransport]] = (
            collections.deque()
        )

    def _new_lane(self) -> httpx.AsyncHTTPTransport:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        lane = httpx.AsyncHTTPTransport(
            verify=self._ssl,
            limits=httpx.Limits(
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=self._keepalive_expiry,
            ),
        )
        self._all.append(lane)
        return lane

    async def _take(self) -> httpx.AsyncHTTPTransport:
        if self._free and not self._waiters:
            return self._free.pop()  # LIFO: the most recently used connection is warm
        if len(self._all) < self._max:
            return self._new_lane()  # lanes are created on demand
        fut: asyncio.Future[httpx.AsyncHTTPTransport] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._give(fut.result())
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def _give(self, lane: httpx.AsyncHTTPTransport) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(lane)
                return
        self._free.append(lane)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        lane = await self._take()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._give(lane)

        try:
            resp = await lane.handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(resp.stream, httpx.AsyncByteStream)
        return httpx.Response(
            resp.status_code,
            headers=resp.headers,
            stream=_ReleasingStream(resp.stream, release),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        for lane in self._all:
            await lane.aclose()


class Engine:
    """Lives on the session's event loop. Owns the AsyncClient and the limiter."""

    def __init__(
        self,
        policy: HttpPolicy,
        *,
        log: SafeLog,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: SleepFn | None = None,
        auth: AuthHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._default_log = log
        self.auth = auth
        self.limiter = AdaptiveLimiter(policy.max_concurrency)
        self._sleep: SleepFn = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self.client = httpx.AsyncClient(
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})},
            cookies=cookies,
            timeout=httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s),
            # one lane per concurrent request, + 1 so a re-login never waits behind API calls
            transport=transport or LaneTransport(policy.max_concurrency + 1),
            follow_redirects=False,
        )

    @property
    def log(self) -> SafeLog:
        """The calling method's logger (``log=`` argument), else the resource's."""
        return _CURRENT_LOG.get() or self._default_log

    async def aclose(self) -> None:
        await self.client.aclose()

    def _timeout(self, read_s: float, remaining: float) -> httpx.Timeout:
        read = max(0.001, min(read_s, remaining))
        return httpx.Timeout(read, connect=max(0.001, min(self.policy.connect_timeout_s, read)))

    async def get_json(self, req: Request, stats: FetchStats) -> Answer:
        """GET with the retry policy. Returns 2xx answers (valid JSON) and ``passthrough`` statuses;
        raises a :class:`SourceError` subclass otherwise."""
        p = self.policy
        start = time.monotonic()
        deadline = start + p.call_budget_s
        attempt = 0
        reauthed = False
        last_status: int | None = None
        auth = self.auth if req.auth else None
        if auth is not None:
            await auth.ensure(self, stats)

        def fail(cls: type[SourceError], detail: str, status: int | None) -> SourceError:
            return cls(
                system=p.system,
                endpoint=req.endpoint,
                course_id=req.course_id,
                user_id=req.user_id,
                status=status,
                attempts=attempt,
                detail=detail,
            )

        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise fail(
                    SourceUnavailableError,
                    f"call budget of {p.call_budget_s:g} s exhausted",
                    last_status,
                )
            timeout = self._timeout(req.read_timeout_s or p.read_timeout_s, remaining)
            generation = auth.generation if auth is not None else 0
            retry_after: float | None = None
            problem: str
            async with self.limiter.slot() as epoch:
                stats.requests += 1
                stats.min_concurrency = (
                    min(stats.min_concurrency, self.limiter.limit)
                    if stats.min_concurrency
                    else self.limiter.limit
                )
                try:
                    resp = await self.client.get(req.url, timeout=timeout)
                except httpx.TimeoutException as exc:
                    problem = f"timeout ({type(exc).__name__}, read limit {timeout.read:g} s)"
                    resp = None
                except httpx.TransportError as exc:
                    problem = f"connection error ({type(exc).__name__}: {exc})"
                    resp = None
                if resp is not None:
                    last_status = resp.status_code
                    status = resp.status_code
                    if 200 <= status < 300:
                        try:
                            payload = resp.json()
                        except ValueError as exc:
                            problem = (
                                f"HTTP {status} with a body that is not valid JSON "
                                f"(malformed or truncated, {len(resp.content)} bytes: {exc})"
                            )
                        else:
                            self.limiter.on_success()
                            return Answer(status, payload, "", resp.headers)
                    elif status in req.passthrough:
                        self.limiter.on_success()
                        try:
                            payload = resp.json()
                        except ValueError:
                            payload = None
                        return Answer(status, payload, resp.text[:300], resp.headers)
                    elif status == 429:
                        stats.throttled += 1
                        self.limiter.on_throttle(epoch)
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        problem = "HTTP 429 Too Many Requests"
                    elif status in (401, 403):
                        problem = ""
                    elif status >= 500:
                        if status == 503:
                            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        problem = f"HTTP {status}: {_snippet(resp.text)}"
                    else:
                        stats.errors += 1
                        raise fail(SourceHTTPError, f"HTTP {status}: {_snippet(resp.text)}", status)

            # -- after the slot is released: auth renewal or backoff -------------------------
            if resp is not None and resp.status_code in (401, 403):
                if auth is None or reauthed:
                    stats.errors += 1
                    raise fail(
                        SourceAuthError,
                        f"session rejected with HTTP {resp.status_code}"
                        + (" again after a fresh login" if reauthed else ""),
                        resp.status_code,
                    )
                reauthed = True
                self.log.info(
                    f"{p.system} {req.endpoint}: HTTP {resp.status_code}, session expired? "
                    "logging in again"
                )
                await auth.renew(self, stats, generation)
                stats.reauths += 1
                attempt -= 1  # the re-login does not consume one of the call's attempts
                continue

            if resp is None or resp.status_code != 429:
                stats.errors += 1
            if attempt >= p.max_attempts:
                raise fail(
                    SourceUnavailableError,
                    f"gave up after max_attempts={p.max_attempts}; last problem: {problem}",
                    last_status,
                )
            if retry_after is not None:
                # honour Retry-After (capped), plus a little jitter so waiters do not stampede
                delay = min(retry_after, p.max_retry_after_s)
                delay += self._rng.uniform(0.0, min(1.0, 0.1 * delay))
            else:
                delay = backoff_delay(attempt, p.backoff_base_s, p.backoff_max_s, self._rng)
            if time.monotonic() + delay >= deadline:
                raise fail(
                    SourceUnavailableError,
                    f"next retry in {delay:.1f} s would exceed the call budget of "
                    f"{p.call_budget_s:g} s; last problem: {problem}",
                    last_status,
                )
            msg = (
                f"{p.system} {req.endpoint}"
                + (f" course {req.course_id}" if req.course_id else "")
                + (f" learner {req.user_id}" if req.user_id is not None else "")
                + f": attempt {attempt}/{p.max_attempts} failed ({problem}); "
                f"retrying in {delay:.2f} s"
            )
            if req.quiet:
                self.log.debug(msg)
            else:
                self.log.warning(msg)
            stats.retries += 1
            await self._sleep(delay)


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Fan-out with progress logging
# --------------------------------------------------------------------------------------------


class Progress:
    """Logs ``done/total`` every ``interval_s`` seconds and once at the end.

    Each line is a run event (a row in Dagster's event log): time-based, so a fan-out of a few
    seconds costs one line and a long one shows steady progress in the UI."""

    def __init__(self, log: SafeLog, label: str, total: int, interval_s: float) -> None:
        self.log, self.label, self.total, self.interval_s = log, label, total, interval_s
        self.done = 0
        self._last = time.monotonic()

    def tick(self, stats: FetchStats, limiter: AdaptiveLimiter) -> None:
        self.done += 1
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.interval_s:
            self._last = now
            pct = 100 * self.done // max(1, self.total)
            self.log.info(
                f"{self.label}: {self.done}/{self.total} learners ({pct}%), "
                f"{stats.requests} requests, {stats.retries} retries, {stats.throttled} throttled, "
                f"concurrency {limiter.limit}/{limiter.max_limit}"
            )


async def fan_out(
    engine: Engine,
    keys: Sequence[K],
    fetch: Callable[[K], Awaitable[T]],
    *,
    label: str,
    stats: FetchStats,
    probe_first: bool = False,
) -> dict[K, T]:
    """Run ``fetch(key)`` for every key concurrently (the engine's limiter bounds the requests in
    flight). Fails fast: the first error cancels the remaining work and is re-raised.

    ``probe_first`` fetches the first key alone before the others, so what it learns about the
    route (e.g. that the course id must be percent-encoded, or that H3 is missing) is known to
    every later request instead of being rediscovered by each of them (one request per learner).
    """
    progress = Progress(engine.log, label, len(keys), engine.policy.progress_log_s)
    results: dict[K, T] = {}

    async def one(key: K) -> None:
        results[key] = await fetch(key)
        progress.tick(stats, engine.limiter)

    rest = list(keys)
    try:
        if probe_first and rest:
            await one(rest.pop(0))
        async with asyncio.TaskGroup() as tg:
            for key in rest:
                tg.create_task(one(key))
    except BaseExceptionGroup as group:
        first = _first_leaf(group)
        raise first from None
    stats.learners += len(keys)
    return {key: results[key] for key in keys}


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_leaf(exc)
        if isinstance(exc, SourceError):
            return exc
    exc = group.exceptions[0]
    return _first_leaf(exc) if isinstance(exc, BaseExceptionGroup) else exc


def unique(ids: Iterable[int]) -> list[int]:
    """Distinct learner ids as ints, order preserved."""
    seen: dict[int, None] = {}
    for uid in ids:
        seen.setdefault(int(uid), None)
    return list(seen)


# --------------------------------------------------------------------------------------------
# Session: an event-loop thread + an Engine
# --------------------------------------------------------------------------------------------


class HttpSession:
    """One event loop (on a private thread) and one :class:`Engine`, created lazily, closed once."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self._make_engine = make_engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.closed = False

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.closed:
                raise RuntimeError("this HTTP session is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="moocassets-http", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, fn: Callable[[Engine], Awaitable[T]], log: SafeLog | None = None) -> T:
        """Run ``fn(engine)`` on the session loop and wait for it (interrupts cancel it)."""
        loop = self._start()

        async def call() -> T:
            if log is not None:
                _CURRENT_LOG.set(log)  # this task and the tasks it spawns log there
            if self._engine is None:
                self._engine = self._make_engine()
            return await fn(self._engine)

        fut = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            loop, thread, engine = self._loop, self._thread, self._engine
            self._loop = self._thread = self._engine = None
        if loop is None or thread is None:
            return
        try:
            if engine is not None:
                asyncio.run_coroutine_threadsafe(engine.aclose(), loop).result(timeout=30)
            asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()


# --------------------------------------------------------------------------------------------
# The shared resource base
# --------------------------------------------------------------------------------------------


class HttpSourceResource(dg.ConfigurableResource):
    """Config and lifecycle shared by :class:`MoocApiResource` and :class:`H5PApiResource`.

    Lifecycle: inside a Dagster run the session opens in ``setup_for_execution`` (logging through
    ``context.log``) and closes in ``teardown_after_execution``. Outside Dagster use ``with
    resource.session(): ...`` to reuse one client across calls, or call methods directly (each
    then uses a temporary client). ``close()`` closes an open session.
    """

    base_url: str = Field(description="API base URL (no trailing slash needed)")
    timeout_seconds: float = Field(default=30.0, description="read timeout per attempt")
    connect_timeout_seconds: float = Field(default=10.0, description="connect timeout")
    max_concurrency: int = Field(default=4, description="max requests in flight (adaptive)")
    max_attempts: int = Field(default=5, description="attempts per call, retries included")
    call_budget_seconds: float = Field(default=300.0, description="total time budget per call")
    max_retry_after_seconds: float = Field(default=60.0, description="cap on a Retry-After wait")
    backoff_base_seconds: float = Field(default=0.5, description="first backoff ceiling")
    backoff_max_seconds: float = Field(default=30.0, description="largest backoff ceiling")
    progress_log_seconds: float = Field(default=5.0, description="fan-out progress log interval")

    _log: LoggerLike | None = PrivateAttr(default=None)
    _session: HttpSession | None = PrivateAttr(default=None)

    SYSTEM: ClassVar[str] = "HTTP"

    # -- where requests go (overridden by a subclass to embed or test the client) ---------------
    def transport(self) -> httpx.AsyncBaseTransport | None:
        """The httpx transport every request of this client goes through; ``None`` (here) means
        the network. A subclass that returns e.g. ``httpx.ASGITransport(app)`` serves the client
        from an in-process app (see :meth:`with_transport`)."""
        return None

    def sleeper(self) -> SleepFn | None:
        """How the client waits between retries; ``None`` (here) means ``asyncio.sleep``."""
        return None

    def with_transport(
        self, transport: httpx.AsyncBaseTransport, *, sleep: SleepFn | None = None
    ) -> Self:
        """This resource's configuration on a subclass whose :meth:`transport` returns
        ``transport`` (e.g. ``httpx.MockTransport(handler)`` or ``httpx.ASGITransport(app)``) and
        whose :meth:`sleeper` returns ``sleep``. Dagster re-creates a resource from its class
        and configuration at launch, so the subclass (and its transport) is what runs:
        the copy can be passed to ``dg.materialize(resources=...)``."""
        cls = type(self)
        routed = type(
            f"{cls.__name__}Via{type(transport).__name__}",
            (cls,),
            {
                "__module__": cls.__module__,
                "__doc__": f"{cls.__name__} whose requests go through a given transport.",
                "transport": lambda _self: transport,
                "sleeper": lambda _self: sleep,
            },
        )
        return routed(**{name: getattr(self, name) for name in cls.model_fields})

    # -- lifecycle ----------------------------------------------------------------------------
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self._log is None and context.log is not None:
            self._log = context.log
        self._session = HttpSession(self._make_engine)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[Self]:
        """Reuse one keep-alive client (and one MOOC login) for every call in the block."""
        if self._session is not None and not self._session.closed:
            yield self  # nested: the outer owner closes it
            return
        self._session = HttpSession(self._make_engine)
        try:
            yield self
        finally:
            self.close()

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    # -- plumbing for subclasses --------------------------------------------------------------
    @property
    def safe_log(self) -> SafeLog:
        return SafeLog(self._log)

    def _policy(self) -> HttpPolicy:
        return HttpPolicy(
            system=self.SYSTEM,
            read_timeout_s=self.timeout_seconds,
            connect_timeout_s=self.connect_timeout_seconds,
            max_attempts=max(1, self.max_attempts),
            call_budget_s=self.call_budget_seconds,
            max_retry_after_s=self.max_retry_after_seconds,
            backoff_base_s=self.backoff_base_seconds,
            backoff_max_s=self.backoff_max_seconds,
            max_concurrency=max(1, self.max_concurrency),
            progress_log_s=self.progress_log_seconds,
        )

    def _make_engine(self) -> Engine:
        return Engine(
            self._policy(), log=self.safe_log, transport=self.transport(), sleep=self.sleeper()
        )

    def _api_url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _run(self, fn: Callable[[Engine], Awaitable[T]], log: LoggerLike | None = None) -> T:
        safe = SafeLog(log) if log is not None else None
        if self._session is not None and not self._session.closed:
            return self._session.run(fn, safe)
        temp = HttpSession(self._make_engine)
        try:
            return temp.run(fn, safe)
        finally:
            temp.close()

    def _timed(
        self, fn: Callable[[Engine, FetchStats], Awaitable[T]], log: LoggerLike | None = None
    ) -> Fetched[T]:
        """Run ``fn(engine, stats)``; ``log`` (e.g. an asset's ``context.log``) gets this call's
        log lines instead of the resource's logger."""
        stats = FetchStats()
        start = time.monotonic()
        try:
            data = self._run(lambda engine: fn(engine, stats), log)
        finally:
            stats.duration_s = time.monotonic() - start
        return Fetched(data, stats)
