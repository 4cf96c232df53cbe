"""The shared HTTP policy: redaction, Retry-After, backoff, limiter, retry loop, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import dagster as dg
import httpx
import pytest

from moocassets.sources import (
    AdaptiveLimiter,
    FetchStats,
    H5PApiResource,
    MoocApiResource,
    SourceHTTPError,
    SourceUnavailableError,
    redact,
)
from moocassets.sources.http import backoff_delay, parse_retry_after
from moocassets.sources.redaction import register_secret
from moocassets_tests.sources import (
    COURSE,
    COURSE_ENC,
    H5P_BASE,
    MOOC_BASE,
    ClosingTransport,
    FakeSleep,
    http_threads,
)

# ------------------------------------------------------------------------------ redaction


def test_redact_removes_cookie_header_form_and_json_secrets() -> None:
    text = (
        "Cookie: sessionid=abc123; edx-session=abc123; csrftoken=tok9; "
        "edx-jwt-cookie-header-payload=eyJhbGc.x; other=keep | "
        "body email=a%40b.c&password=hunter22 | "
        '{"password": "with spaces", "csrfToken": "tok9", "user": "keepme"} | '
        "X-CSRFToken: tok9"
    )
    out = redact(text)
    for secret in ("abc123", "tok9", "eyJhbGc", "hunter22", "with spaces"):
        assert secret not in out
    assert "other=keep" in out and "keepme" in out and "email=a%40b.c" in out


def test_redact_removes_registered_secret_values_anywhere() -> None:
    register_secret("Zq9-very-secret-Value")
    assert "Zq9-very-secret-Value" not in redact("boom: Zq9-very-secret-Value!")
    register_secret("ab")  # too short to register: must not wreck ordinary text
    assert redact("about") == "about"


# ------------------------------------------------------------------------------ Retry-After


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rng = random.Random(1)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 5.0)):
        samples = [backoff_delay(attempt, 0.5, 5.0, rng) for _ in range(300)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert min(samples) < ceiling * 0.1  # full jitter reaches near zero
        assert max(samples) > ceiling * 0.9  # ... and near the ceiling


# ------------------------------------------------------------------------------ limiter


def test_limiter_bounds_in_flight_and_adapts() -> None:
    async def scenario() -> tuple[int, AdaptiveLimiter]:
        lim = AdaptiveLimiter(4)
        peak = 0

        async def work() -> None:
            nonlocal peak
            async with lim.slot():
                peak = max(peak, lim.in_flight)
                await asyncio.sleep(0)
                await asyncio.sleep(0)

        await asyncio.gather(*(work() for _ in range(40)))
        return peak, lim

    peak, lim = asyncio.run(scenario())
    assert peak == 4 and lim.in_flight == 0

    lim = AdaptiveLimiter(16)
    epoch = lim.epoch
    lim.on_throttle(epoch)
    lim.on_throttle(epoch)  # same burst: counted once
    assert lim.limit == 8
    lim.on_throttle(lim.epoch)
    assert lim.limit == 4 and lim.min_seen == 4
    for _ in range(4):
        lim.on_success()
    assert lim.limit == 5  # additive recovery after `limit` successes
    for _ in range(10):
        lim.on_throttle(lim.epoch)
    assert lim.limit == 1  # never below 1
    for _ in range(1000):
        lim.on_success()
    assert lim.limit == 16  # never above the configured maximum


def test_limiter_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def scenario() -> int:
        lim = AdaptiveLimiter(1)
        await lim.acquire()
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        lim.release()
        await asyncio.wait_for(lim.acquire(), timeout=5)  # the slot is free again
        lim.release()
        return lim.in_flight

    assert asyncio.run(scenario()) == 0


# ------------------------------------------------------------------------------ retry loop


def _h5p(handler, sleep: FakeSleep | None = None, **config: object) -> H5PApiResource:
    return H5PApiResource(base_url=H5P_BASE, **config).with_transport(
        httpx.MockTransport(handler), sleep=sleep or FakeSleep()
    )


def _sequence(*responses: httpx.Response | Exception):
    """A handler answering one response (or raising one exception) per request, in order."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


OK = httpx.Response(200, json={"course_id": COURSE, "students": [{"user_id": "1"}]})


def test_503_and_429_honour_retry_after_seconds_and_http_date() -> None:
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    handler = _sequence(
        httpx.Response(503, headers={"Retry-After": "7"}, text="down"),
        httpx.Response(429, headers={"Retry-After": future}),
        OK,
    )
    sleep = FakeSleep()
    got = _h5p(handler, sleep).course_students(COURSE)
    assert got.data == [{"user_id": "1"}]
    assert 7.0 <= sleep.delays[0] <= 7.7  # Retry-After + at most 10 % jitter
    assert 35.0 <= sleep.delays[1] <= 41.0  # the HTTP-date, a few seconds later
    assert (got.stats.requests, got.stats.retries, got.stats.throttled, got.stats.errors) == (
        3,
        2,
        1,
        1,
    )


def test_retry_after_is_capped() -> None:
    handler = _sequence(httpx.Response(429, headers={"Retry-After": "3600"}), OK)
    sleep = FakeSleep()
    _h5p(handler, sleep, max_retry_after_seconds=2.0).course_students(COURSE)
    assert 2.0 <= sleep.delays[0] <= 2.2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="boom"),
        httpx.Response(502),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.Response(200, text='{"course_id": "x", "students": [{"user'),  # truncated
        httpx.Response(200, text="<html>Fatal error</html>"),  # malformed
    ],
    ids=["500", "502", "timeout", "connect", "incomplete", "truncated", "malformed"],
)
def test_transient_failures_back_off_then_succeed(failure: httpx.Response | Exception) -> None:
    handler = _sequence(failure, failure, OK)
    sleep = FakeSleep()
    got = _h5p(handler, sleep, backoff_base_seconds=0.5).course_students(COURSE)
    assert got.data == [{"user_id": "1"}]
    assert got.stats.requests == 3 and got.stats.retries == 2 and got.stats.errors == 2
    assert len(sleep.delays) == 2
    assert 0 <= sleep.delays[0] <= 0.5 and 0 <= sleep.delays[1] <= 1.0  # full-jitter ceilings


def test_exhausted_retries_raise_a_clear_error() -> None:
    handler = _sequence(httpx.Response(500, text="Internal <b>error</b>"))
    with pytest.raises(SourceUnavailableError) as info:
        _h5p(handler, max_attempts=3).course_students(COURSE)
    msg = str(info.value)
    assert len(handler.seen) == 3
    for part in (
        "H5P",
        "H5 GET /course-students/",
        COURSE,
        "HTTP 500",
        "3 attempt",
        "max_attempts",
    ):
        assert part in msg, (part, msg)
    assert info.value.status == 500 and info.value.attempts == 3


def test_client_errors_are_not_retried() -> None:
    handler = _sequence(httpx.Response(400, json={"code": "rest_missing_callback_param"}))
    with pytest.raises(SourceHTTPError) as info:
        _h5p(handler).course_students(COURSE)
    assert len(handler.seen) == 1
    assert info.value.status == 400 and "rest_missing_callback_param" in str(info.value)


def test_call_budget_stops_retrying_before_a_long_wait() -> None:
    handler = _sequence(httpx.Response(503, headers={"Retry-After": "50"}), OK)
    sleep = FakeSleep()
    with pytest.raises(SourceUnavailableError, match="call budget of 10 s"):
        _h5p(handler, sleep, call_budget_seconds=10.0).course_students(COURSE)
    assert sleep.delays == [] and len(handler.seen) == 1


def test_timeouts_headers_and_export_timeout() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"students": [], "data": {"display_name": "x"}})

    mooc = MoocApiResource(
        base_url=MOOC_BASE,
        sessionid="s3ssion-value",
        timeout_seconds=12.0,
        export_timeout_seconds=345.0,
        connect_timeout_seconds=4.0,
    ).with_transport(httpx.MockTransport(handler))
    with mooc.session():
        mooc.grades(COURSE)
        mooc.course_details(COURSE)
    export, details = seen
    assert export.extensions["timeout"]["read"] == 345.0
    assert export.extensions["timeout"]["connect"] == 4.0
    assert details.extensions["timeout"]["read"] == 12.0
    assert (
        details.url.raw_path
        == (f"/api/custom/v1/course-details/display-name/?course_id={COURSE_ENC}").encode()
    )
    assert export.headers["accept"] == "application/json"
    assert export.headers["user-agent"].startswith("moocassets/")


def test_retry_warnings_are_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    handler = _sequence(
        httpx.Response(500, text="trace: sessionid=leaky-session-777 password=hunter2"), OK
    )
    caplog.set_level(logging.DEBUG, logger="moocassets.sources")
    _h5p(handler).course_students(COURSE)
    text = caplog.text
    assert "attempt 1/5 failed (HTTP 500" in text
    assert "leaky-session-777" not in text and "hunter2" not in text


def test_log_argument_receives_the_calls_log_lines() -> None:
    lines: list[str] = []

    class Sink:
        def debug(self, msg: str, *a: object, **k: object) -> None:
            lines.append(msg)

        info = warning = debug

    handler = _sequence(httpx.Response(502), OK)
    _h5p(handler).course_students(COURSE, log=Sink())
    assert any("attempt 1/5 failed (HTTP 502" in line for line in lines)


# ------------------------------------------------------------------------------ lifecycle


def test_session_reuses_one_client_and_closes_it() -> None:
    transport = ClosingTransport(lambda request: OK)
    res = H5PApiResource(base_url=H5P_BASE).with_transport(transport)
    with res.session():
        res.course_students(COURSE)
        res.course_students(COURSE)
        assert transport.closed == 0 and len(http_threads()) == 1
    assert transport.closed == 1
    assert http_threads() == []
    res.course_students(COURSE)  # outside a session: a temporary client, closed at once
    assert transport.closed == 2 and http_threads() == []


def test_dagster_run_opens_and_closes_the_client_and_keeps_the_transport() -> None:
    transport = ClosingTransport(lambda request: OK)
    seen_stats: list[FetchStats] = []

    @dg.asset
    def h5p_students(h5p: H5PApiResource) -> None:
        got = h5p.course_students(COURSE)
        got2 = h5p.course_students(COURSE)
        assert got.data == got2.data == [{"user_id": "1"}]
        seen_stats.append(got.stats)

    result = dg.materialize(
        [h5p_students],
        resources={"h5p": H5PApiResource(base_url=H5P_BASE).with_transport(transport)},
    )
    assert result.success
    assert transport.closed == 1  # one client for the run, closed at teardown
    assert seen_stats[0].requests == 1
    assert http_threads() == []


def test_stats_as_metadata_are_numbers() -> None:
    stats = FetchStats(requests=3, duration_s=1.23456, min_concurrency=2)
    meta = stats.as_metadata()
    assert meta["requests"] == 3 and meta["duration_s"] == 1.235
    assert all(isinstance(v, int | float) for v in meta.values())
    assert stats.merge(FetchStats(requests=2, min_concurrency=1)).requests == 5
