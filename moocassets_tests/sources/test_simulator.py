"""Integration: the source clients against the simulator of both APIs.

In-process through ``httpx.ASGITransport`` (fast; retry waits faked) and on a loopback port through
``serve_in_thread`` (real sockets: timeouts, keep-alive, slow exports). Every faulty run is compared
with a clean run of the same world: the extract either completes with exactly the same rows or
fails with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from moocassets.simulator import FaultConfig, World, WorldConfig, create_app, serve_in_thread
from moocassets.sources import (
    H5PApiResource,
    MoocApiResource,
    SourceAuthError,
    SourceUnavailableError,
)
from moocassets_tests.sources import FakeSleep

EMAIL = "ops@example.edu"
PASSWORD = "sim-Secret-pw-1"
SID = "operator-session-abc123"
ROOT = "http://sim.test"


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(courses=2, learners=60, seed=3))


@pytest.fixture(scope="module")
def course(world: World) -> str:
    return next(iter(world.courses))


def app_for(world: World, **faults: Any) -> Any:
    return create_app(
        world,
        mooc_email=EMAIL,
        mooc_password=PASSWORD,
        session_ids=(SID,),
        faults=FaultConfig(seed=11, **faults),
    )


def mooc_asgi(app: Any, sleep: FakeSleep | None = None, **config: Any) -> MoocApiResource:
    cfg: dict[str, Any] = {"base_url": f"{ROOT}/api/custom/v1", "email": EMAIL}
    cfg["password"] = PASSWORD
    cfg.update(config)
    return MoocApiResource(**cfg).with_transport(
        httpx.ASGITransport(app), sleep=sleep or FakeSleep()
    )


def h5p_asgi(app: Any, sleep: FakeSleep | None = None, **config: Any) -> H5PApiResource:
    return H5PApiResource(base_url=f"{ROOT}/wp-json/mooc/v1", **config).with_transport(
        httpx.ASGITransport(app), sleep=sleep or FakeSleep()
    )


def extract(mooc: MoocApiResource, h5p: H5PApiResource, course: str) -> dict[str, Any]:
    """Everything one course partition needs from both systems."""
    with mooc.session(), h5p.session():
        enrollments = mooc.enrollments(course).data
        uids = [int(e.get("user_id", e.get("id"))) for e in enrollments]
        return {
            "details": mooc.course_details(course).data,
            "uids": sorted(uids),
            "grades": _by_user(mooc.grades(course).data),
            "progress": _by_user(mooc.progress(course).data),
            "discussions": _by_user(mooc.discussions(course).data),
            "scores": h5p.scores(course, uids).data,
            "videos": h5p.video_progress(course, uids).data,
            "dashboards": h5p.dashboards(course, uids).data,
            "students": _by_user(h5p.course_students(course).data),
        }


def _by_user(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["user_id"]): r for r in rows}


@pytest.fixture(scope="module")
def baseline(world: World, course: str) -> dict[str, Any]:
    app = app_for(world)
    return extract(mooc_asgi(app), h5p_asgi(app), course)


# ------------------------------------------------------------------------------ clean + auth


def test_clean_extract_matches_the_world(world: World, course: str, baseline: dict) -> None:
    expected = sorted(e.user_id for e in world.visible_enrollments(course))
    assert baseline["uids"] == expected and len(expected) == 60
    assert set(baseline["grades"]) == set(expected)
    assert set(baseline["scores"]) == set(expected)
    assert any(v is None for v in baseline["scores"].values())  # learners without H5P activity
    assert any(v is not None for v in baseline["scores"].values())
    assert {src for src, _ in filter(None, baseline["dashboards"].values())} == {"H3"}
    assert baseline["details"]["display_name"]


def test_operator_session_cookie_works_without_login(world: World, course: str) -> None:
    app = app_for(world)
    res = mooc_asgi(app, email=None, password=None, sessionid=SID)
    assert len(res.enrollments(course).data) == 60
    assert app.state.stats.to_dict()["by_route"].get("LOGIN") is None


def test_wrong_password_fails_clearly(world: World, course: str) -> None:
    with pytest.raises(SourceAuthError) as info:
        mooc_asgi(app_for(world), password="not-the-password").grades(course)
    msg = str(info.value)
    assert f"MOOC login refused for {EMAIL}" in msg and "HTTP 403" in msg
    assert "not-the-password" not in msg


def test_session_expiry_relogs_in_and_completes(world: World, course: str, baseline: dict) -> None:
    app = app_for(world, session_max_requests=3)
    res = mooc_asgi(app, page_size=10)  # 7 pages: the session dies several times
    with res.session():
        got = res.enrollments(course)
        grades = res.grades(course)
    assert sorted(int(e["user_id"]) for e in got.data) == baseline["uids"]
    assert got.stats.reauths >= 2 and _by_user(grades.data) == baseline["grades"]


# ------------------------------------------------------------------------------ envelopes


@pytest.mark.parametrize(
    ("key", "variant"),
    [
        ("M1", "data.enrollments"),
        ("M1", "data"),
        ("M1", "enrollments"),
        ("M1", "results"),
        ("M4", "students"),
        ("M4", "grade_data"),
        ("M5", "students"),
        ("M5", "students_progress_data"),
    ],
)
def test_every_envelope_variant(
    world: World, course: str, baseline: dict, key: str, variant: str
) -> None:
    res = mooc_asgi(app_for(world, envelopes={key: variant}))
    if key == "M1":
        ids = sorted(int(e.get("user_id", e.get("id"))) for e in res.enrollments(course).data)
        assert ids == baseline["uids"]
    elif key == "M4":
        assert set(_by_user(res.grades(course).data)) == set(baseline["grades"])
    else:
        assert set(_by_user(res.progress(course).data)) == set(baseline["progress"])


# ------------------------------------------------------------------------------ faults (ASGI)


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 0.3},
        {"malformed_rate": 0.3},
        {"truncated_rate": 0.3},
        {"error_rate": 0.15, "malformed_rate": 0.1, "truncated_rate": 0.1},
    ],
    ids=["5xx", "malformed", "truncated", "mixed"],
)
def test_faulty_extract_returns_the_same_rows(
    world: World, course: str, baseline: dict, faults: dict
) -> None:
    app = app_for(world, **faults)
    sleep = FakeSleep()
    got = extract(
        mooc_asgi(app, sleep, max_attempts=8), h5p_asgi(app, sleep, max_attempts=8), course
    )
    assert got == baseline
    assert sleep.delays  # it did have to retry


def test_unrelenting_5xx_fails_with_a_clear_error(world: World, course: str) -> None:
    app = app_for(world, error_rate=1.0, routes=("M4",))
    with pytest.raises(SourceUnavailableError) as info:
        mooc_asgi(app, max_attempts=3).grades(course)
    msg = str(info.value)
    assert "MOOC M4 GET /export/student-grades/" in msg and course in msg
    assert "3 attempt" in msg and "HTTP 50" in msg


def test_h3_failing_falls_back_to_h4(world: World, course: str, baseline: dict) -> None:
    app = app_for(world, error_rate=1.0, routes=("H3",))
    got = h5p_asgi(app, max_attempts=2).dashboards(course, baseline["uids"]).data
    assert set(got) == set(baseline["dashboards"])
    sources = {src for src, _ in filter(None, got.values())}
    assert sources == {"H4"}
    assert {u for u, v in got.items() if v is None} == {
        u for u, v in baseline["dashboards"].items() if v is None
    }


def test_rate_limit_429_drops_concurrency_and_completes(
    world: World, course: str, baseline: dict
) -> None:
    # Real (short) waits here: the simulator's token bucket refills on the wall clock. With 20 ms
    # per call, 16 in flight is ~800 calls/s against a 150/s limit: the limit must come down.
    app = app_for(world, rate_limit_rps=150, rate_limit_burst=4, latency_ms=20)
    res = H5PApiResource(
        base_url=f"{ROOT}/wp-json/mooc/v1",
        max_concurrency=16,
        max_attempts=8,
        max_retry_after_seconds=0.3,
    ).with_transport(httpx.ASGITransport(app))
    got = res.scores(course, baseline["uids"])
    assert got.data == baseline["scores"]
    assert got.stats.throttled > 0 and got.stats.min_concurrency < 16


# ------------------------------------------------------------------------------ loopback port


@pytest.fixture
def served(world: World, request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    faults = getattr(request, "param", {})
    app = app_for(world, **faults)
    with serve_in_thread(app) as root:
        yield root, app


def loop_clients(root: str, **mooc_config: Any) -> tuple[MoocApiResource, H5PApiResource]:
    fast = {"backoff_base_seconds": 0.01, "max_retry_after_seconds": 0.05}
    mooc_cfg = {"email": EMAIL, "password": PASSWORD, **fast, **mooc_config}
    mooc = MoocApiResource(base_url=f"{root}/api/custom/v1", **mooc_cfg)
    h5p = H5PApiResource(base_url=f"{root}/wp-json/mooc/v1", timeout_seconds=0.5, **fast)
    return mooc, h5p


@pytest.mark.parametrize(
    "served",
    [{"latency_ms": 5, "timeout_rate": 0.05, "timeout_s": 30.0, "routes": ("H1", "H2", "H3")}],
    indirect=True,
)
def test_loopback_extract_with_latency_and_timeouts(
    served: tuple[str, Any], course: str, baseline: dict
) -> None:
    root, app = served
    mooc, h5p = loop_clients(root)
    got = extract(mooc, h5p, course)
    assert got == baseline
    assert app.state.stats.to_dict()["by_route"]["H1"].get("timeout", 0) > 0


@pytest.mark.parametrize("served", [{"export_delay_s": 0.4}], indirect=True)
def test_slow_exports_use_the_export_timeout(served: tuple[str, Any], course: str) -> None:
    root, _app = served
    mooc, _ = loop_clients(root, timeout_seconds=0.2, export_timeout_seconds=5.0)
    with mooc.session():
        assert len(mooc.grades(course).data) == 60  # 0.4 s export under a 0.2 s normal timeout
        assert mooc.course_details(course).data
    impatient, _ = loop_clients(root, export_timeout_seconds=0.1, max_attempts=2)
    with pytest.raises(SourceUnavailableError) as info:
        impatient.grades(course)
    assert "timeout" in str(info.value) and "M4 GET /export/student-grades/" in str(info.value)


def test_lane_transport_reuses_a_bounded_set_of_connections(world: World, course: str) -> None:
    """The network transport: at most ``lanes`` keep-alive connections, reused across calls."""
    import asyncio

    from moocassets.sources.http import LaneTransport

    async def scenario(root: str) -> tuple[int, list[int]]:
        lanes = LaneTransport(3)
        async with httpx.AsyncClient(transport=lanes) as client:
            url = f"{root}/wp-json/mooc/v1/course-students/{course}"
            answers = await asyncio.gather(*(client.get(url) for _ in range(30)))
            statuses = [r.status_code for r in answers]
            return len(lanes._all), statuses

    with serve_in_thread(app_for(world)) as root:
        n_lanes, statuses = asyncio.run(scenario(root))
    assert statuses == [200] * 30 and n_lanes == 3
