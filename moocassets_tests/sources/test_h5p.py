"""H5P client against httpx.MockTransport fakes: fan-out, no_data, encoded retry, H4 fallback,
adaptive concurrency."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from moocassets.sources import (
    H5PApiResource,
    SourceHTTPError,
    SourcePayloadError,
    SourceUnavailableError,
)
from moocassets_tests.sources import COURSE, COURSE_ENC, H5P_BASE, FakeSleep

PREFIX = "/wp-json/mooc/v1"
NO_DATA = {"code": "no_data", "message": "No data found", "data": {"status": 404}}
NO_ROUTE = {"code": "rest_no_route", "message": "No route was found", "data": {"status": 404}}


def h5p(handler, **config: object) -> H5PApiResource:
    return H5PApiResource(base_url=H5P_BASE, **config).with_transport(
        httpx.MockTransport(handler), sleep=FakeSleep()
    )


def split(request: httpx.Request) -> tuple[str, int, str]:
    """/wp-json/mooc/v1/<route>/<uid>/<course> -> (route, uid, raw course segment)."""
    raw = request.url.raw_path.decode().removeprefix(PREFIX + "/")
    route, uid, course = raw.split("/", 2)
    return route, int(uid), course


def test_scores_fan_out_no_data_and_duplicates() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        route, uid, course = split(request)
        assert route == "scores" and course == COURSE  # unencoded in the path
        if uid % 3 == 0:
            return httpx.Response(404, json=NO_DATA)
        return httpx.Response(200, json={"user_id": str(uid), "scores": [{"content_id": uid}]})

    got = h5p(handler).scores(COURSE, [1, 2, 3, 2, 4, 6])
    assert list(got.data) == [1, 2, 3, 4, 6]  # order kept, duplicates fetched once
    assert got.data[3] is None and got.data[6] is None
    assert got.data[4] == {"user_id": "4", "scores": [{"content_id": 4}]}
    assert len(seen) == 5 and got.stats.learners == 5 and got.stats.requests == 5


def encoded_only(courses: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    """A server whose route matches only the percent-encoded course id; records what it saw."""

    def handler(request: httpx.Request) -> httpx.Response:
        _route, uid, course = split(request)
        courses.append(course)
        if course != COURSE_ENC:
            return httpx.Response(404, json=NO_ROUTE)
        return httpx.Response(200, json={"user_id": str(uid), "video_progress": []})

    return handler


def test_route_miss_retries_with_the_encoded_id_and_remembers_it() -> None:
    courses: list[str] = []
    handler = encoded_only(courses)
    res = h5p(handler, max_concurrency=1)  # sequential, so the memo is visible in the order
    got = res.video_progress(COURSE, [10, 11, 12])
    assert all(got.data[u] == {"user_id": str(u), "video_progress": []} for u in (10, 11, 12))
    assert courses == [COURSE, COURSE_ENC, COURSE_ENC, COURSE_ENC]
    assert got.stats.fallbacks == 1


def test_the_encoded_form_is_learned_once_even_with_full_concurrency() -> None:
    courses: list[str] = []
    handler = encoded_only(courses)
    learners = list(range(100, 140))
    got = h5p(handler, max_concurrency=16).video_progress(COURSE, learners)
    assert sorted(got.data) == learners
    # the first learner probes the route; the 39 others go straight to the encoded form
    assert courses.count(COURSE) == 1
    assert courses.count(COURSE_ENC) == len(learners)
    assert got.stats.requests == len(learners) + 1


def test_route_missing_in_both_forms_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>Not Found</html>")

    with pytest.raises(SourceHTTPError) as info:
        h5p(handler).scores(COURSE, [7])
    msg = str(info.value)
    assert "H5P H1 GET /scores/7/" in msg and "learner 7" in msg and COURSE in msg
    assert "route not matched" in msg and info.value.status == 404


def test_dashboards_h3_then_h4_fallback_per_learner() -> None:
    calls: Counter[tuple[str, int]] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        route, uid, _course = split(request)
        calls[(route, uid)] += 1
        if route == "combined-progress":
            if uid == 1:
                return httpx.Response(200, json={"overall": {"total_items": 5}})
            if uid == 2:
                return httpx.Response(500, text="Fatal error")
            if uid == 3:
                return httpx.Response(404, json=NO_DATA)
            return httpx.Response(400, json={"code": "rest_invalid_param"})
        assert route == "dashboard"
        return httpx.Response(200, json={"overview": {"total_items": uid}})

    got = h5p(handler, max_attempts=3).dashboards(COURSE, [1, 2, 3, 4])
    assert got.data[1] == ("H3", {"overall": {"total_items": 5}})
    assert got.data[2] == ("H4", {"overview": {"total_items": 2}})  # after 3 failed H3 attempts
    assert got.data[3] is None  # no_data: nothing to fall back to
    assert got.data[4] == ("H4", {"overview": {"total_items": 4}})  # 400: not retried
    assert calls[("combined-progress", 2)] == 3 and calls[("combined-progress", 4)] == 1
    assert ("dashboard", 1) not in calls and ("dashboard", 3) not in calls
    assert got.stats.fallbacks == 2


def test_missing_h3_route_sends_later_learners_straight_to_h4() -> None:
    calls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        route, uid, _course = split(request)
        calls[route] += 1
        if route == "combined-progress":
            return httpx.Response(404, json=NO_ROUTE)
        return httpx.Response(200, json={"overview": {"user": uid}})

    got = h5p(handler, max_concurrency=1).dashboards(COURSE, list(range(1, 11)))
    assert all(got.data[u] == ("H4", {"overview": {"user": u}}) for u in range(1, 11))
    assert calls["combined-progress"] == 2  # raw + encoded for the first learner only
    assert calls["dashboard"] == 10


def test_course_students_rows_no_data_and_bad_envelope() -> None:
    answers = {
        "ok": httpx.Response(200, json={"course_id": COURSE, "students": [{"user_id": "1"}]}),
        "none": httpx.Response(404, json=NO_DATA),
        "bad": httpx.Response(200, json={"course_id": COURSE, "rows": []}),
    }
    mode = "ok"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.raw_path.decode() == f"{PREFIX}/course-students/{COURSE}"
        return answers[mode]

    res = h5p(handler)
    assert res.course_students(COURSE).data == [{"user_id": "1"}]
    mode = "none"
    assert res.course_students(COURSE).data == []
    mode = "bad"
    with pytest.raises(SourcePayloadError, match=r"top-level keys \['course_id', 'rows'\]"):
        res.course_students(COURSE)


def test_concurrency_never_exceeds_the_limit() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return httpx.Response(200, json={"scores": []})

    got = h5p(handler, max_concurrency=3).scores(COURSE, list(range(60)))
    assert len(got.data) == 60 and peak == 3


def test_429_halves_concurrency_and_the_extract_still_completes() -> None:
    """A server that throttles whenever more than 3 requests are in flight."""
    in_flight = peak_after_first_429 = 0
    throttled_once = False
    sleep = FakeSleep()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak_after_first_429, throttled_once
        in_flight += 1
        try:
            await asyncio.sleep(0.001)
            if in_flight > 3:
                throttled_once = True
                return httpx.Response(429, headers={"Retry-After": "0"})
            if throttled_once:
                peak_after_first_429 = max(peak_after_first_429, in_flight)
            _route, uid, _course = split(request)
            return httpx.Response(200, json={"user_id": str(uid)})
        finally:
            in_flight -= 1

    res = H5PApiResource(base_url=H5P_BASE, max_concurrency=16, max_attempts=10)
    got = res.with_transport(httpx.MockTransport(handler), sleep=sleep).scores(
        COURSE, list(range(200))
    )
    assert got.data == {u: {"user_id": str(u)} for u in range(200)}
    assert got.stats.throttled > 0 and got.stats.retries >= got.stats.throttled
    assert got.stats.min_concurrency <= 4  # 16 -> 8 -> 4 (or lower)
    assert all(d >= 0 for d in sleep.delays)


def test_one_learner_failing_fails_the_fan_out_with_its_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        _route, uid, _course = split(request)
        if uid == 13:
            return httpx.Response(503, headers={"Retry-After": "1"})
        return httpx.Response(200, json={"scores": []})

    with pytest.raises(SourceUnavailableError) as info:
        h5p(handler, max_attempts=2).scores(COURSE, list(range(30)))
    assert info.value.user_id == 13 and "learner 13" in str(info.value)
    assert "HTTP 503" in str(info.value)


def test_fan_out_logs_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="moocassets.sources")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"scores": []})

    h5p(handler).scores(COURSE, list(range(50)))
    lines = [r.getMessage() for r in caplog.records if "H5P H1 course" in r.getMessage()]
    assert len(lines) == 1  # a fan-out shorter than the interval: one line, at the end
    assert "50/50 learners (100%)" in lines[-1]

    caplog.clear()
    h5p(handler, progress_log_seconds=0.0).scores(COURSE, list(range(50)))
    lines = [r.getMessage() for r in caplog.records if "H5P H1 course" in r.getMessage()]
    assert len(lines) == 50 and "25/50 learners (50%)" in lines[24]  # every interval
