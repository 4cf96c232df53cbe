"""The /__sim__ controls and every injected fault."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import httpx
import pytest
from starlette.applications import Starlette

import moocassets.simulator.app as sim_app
from moocassets.simulator import FaultConfig, Faults, World, parse_envelopes

from .conftest import BASE, EMAIL, H5P, MOOC, PASSWORD, enc, learner_id, unwrap_m1

pytestmark = pytest.mark.anyio


def some_h5p_path(world: World) -> str:
    cid = next(c for c in world.courses if world.status(c) == "ended")
    e = next(x for x in world.visible_enrollments(cid) if world.h5p_state(x, world.now_ts).rows)
    return f"{H5P}/scores/{e.user_id}/{cid}"


# ------------------------------------------------------------------ admin routes


async def test_admin_clock(anon: httpx.AsyncClient, world: World) -> None:
    start = world.now
    r = await anon.get("/__sim__/clock")
    assert datetime.fromisoformat(r.json()["now"]) == start
    r = await anon.post("/__sim__/clock", json={"advance_days": 2, "advance_seconds": 60})
    assert (datetime.fromisoformat(r.json()["now"]) - start).total_seconds() == 2 * 86400 + 60
    assert (world.now - start).total_seconds() == 2 * 86400 + 60
    r = await anon.post("/__sim__/clock", json={"set": "2025-12-01T00:00:00Z"})
    assert world.now == datetime.fromisoformat("2025-12-01T00:00:00+00:00")
    assert (await anon.post("/__sim__/clock", json={"set": "not a date"})).status_code == 400


async def test_admin_enroll_unenroll_courses_outcomes(client: httpx.AsyncClient,
                                                      world: World) -> None:
    cid = next(iter(world.courses))
    r = await client.post("/__sim__/enroll", json={"course_id": cid, "count": 2})
    new = r.json()["user_ids"]
    assert len(new) == 2
    items = unwrap_m1((await client.get(
        f"{MOOC}/course-enrollments-attributes/{enc(cid)}/?limit=1000")).json())
    assert [learner_id(i) for i in items][-2:] == new
    r = await client.post("/__sim__/unenroll", json={"course_id": cid, "user_id": new[0]})
    assert r.json()["removed"] == [new[0]]
    assert (await client.post("/__sim__/enroll", json={"course_id": "nope", "count": 1})
            ).status_code == 404
    r = await client.post("/__sim__/courses", json={"course_id": "course-v1:UEL+NEW1+2026_S1",
                                                    "learners": 10, "weeks": 9})
    assert r.status_code == 201
    listed = (await client.get(f"{MOOC}/course-details/all/")).json()["data"]
    assert "course-v1:UEL+NEW1+2026_S1" in {c["id"] for c in listed}
    courses = (await client.get("/__sim__/courses")).json()["courses"]
    assert {c["status"] for c in courses} >= {"ended", "running"}
    r = await client.get(f"/__sim__/outcomes/{enc(cid)}")
    body = r.json()
    assert body["course_id"] == cid
    assert len(body["outcomes"]) == sum(1 for e in world.courses[cid].enrollments
                                        if not e.removed)
    assert {"passed", "dropped_out", "quit_at", "final_grade"} <= set(body["outcomes"][0])
    assert (await client.get(f"/__sim__/outcomes/{enc('course-v1:x+y+z')}")).status_code == 404


async def test_admin_faults_stats_health(anon: httpx.AsyncClient, app: Starlette) -> None:
    assert (await anon.get("/__sim__/health")).json()["status"] == "ok"
    cfg = (await anon.get("/__sim__/faults")).json()
    assert cfg["error_rate"] == 0 and cfg["latency_ms"] == 0 and cfg["envelopes"] == {}
    r = await anon.post("/__sim__/faults", json={"latency_ms": 0, "envelopes": {"M4": "students"}})
    assert r.json()["envelopes"] == {"M4": "students"}
    assert app.state.faults.config.envelopes == {"M4": "students"}
    assert (await anon.post("/__sim__/faults", json={"error_rate": 2})).status_code == 400
    assert (await anon.post("/__sim__/faults", json={"bogus": 1})).status_code == 400
    assert (await anon.post("/__sim__/faults", json={"envelopes": {"M1": "x"}})).status_code == 400
    assert (await anon.post("/__sim__/faults", json={"reset": True})).json()["envelopes"] == {}
    await anon.post("/__sim__/stats")  # reset
    await anon.get(f"{MOOC}/course-details/all/")
    await anon.get(f"{MOOC}/users/me/")
    await anon.get(f"{H5P}/scores/1/course-v1:a+b+c")
    stats = (await anon.get("/__sim__/stats")).json()
    assert stats["routes"] == {"M3": 1, "M12": 1, "H1": 1}
    assert stats["status"] == {"200": 1, "401": 1, "404": 1}
    assert stats["by_route"]["M12"] == {"401": 1}
    await anon.post("/__sim__/stats")
    assert (await anon.get("/__sim__/stats")).json()["total"] == 0


# ------------------------------------------------------------------ faults


async def test_latency_and_jitter_are_slept(anon: httpx.AsyncClient, app: Starlette,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(sim_app, "_sleep", fake_sleep)
    app.state.faults.update(latency_ms=20, jitter_ms=5, seed=1)
    for _ in range(5):
        assert (await anon.get(f"{MOOC}/course-details/all/")).status_code == 200
    delays = slept[0::2]  # latency, then the (zero) export delay
    assert len(delays) == 5 and all(0.020 <= d <= 0.025 for d in delays)
    assert len(set(delays)) > 1  # jitter varies
    again = Faults(FaultConfig(latency_ms=20, jitter_ms=5, seed=1))
    assert [again.plan("M3").delay_s for _ in range(5)] == delays  # seeded


async def test_export_routes_get_extra_delay(client: httpx.AsyncClient, app: Starlette,
                                             world: World,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(sim_app, "_sleep", fake_sleep)
    app.state.faults.update(export_delay_s=90)
    cid = enc(next(iter(world.courses)))
    assert (await client.get(f"{MOOC}/export/student-grades/{cid}/")).status_code == 200
    assert 90 in slept
    slept.clear()
    assert (await client.get(f"{MOOC}/course-details/all/")).status_code == 200
    assert 90 not in slept


async def test_rate_limit_answers_429_with_retry_after(anon: httpx.AsyncClient, app: Starlette,
                                                       world: World) -> None:
    app.state.faults.update(rate_limit_rps=0.5, rate_limit_burst=2)
    codes = [(await anon.get(f"{MOOC}/course-details/all/")) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 429, 429]
    assert int(codes[2].headers["Retry-After"]) >= 1
    # the other system has its own bucket
    assert (await anon.get(some_h5p_path(world))).status_code == 200
    stats = (await anon.get("/__sim__/stats")).json()
    assert stats["by_route"]["M3"]["429"] == 2


async def test_server_errors_500_502_503(anon: httpx.AsyncClient, app: Starlette,
                                         world: World) -> None:
    app.state.faults.update(error_rate=1.0, seed=3)
    seen: dict[int, httpx.Response] = {}
    for _ in range(30):
        r = await anon.get(some_h5p_path(world))
        seen.setdefault(r.status_code, r)
    assert set(seen) == {500, 502, 503}
    assert int(seen[503].headers["Retry-After"]) == 1
    app.state.faults.update(error_rate=0.3, seed=4, routes=("H1",))
    first = [(await anon.get(some_h5p_path(world))).status_code for _ in range(20)]
    app.state.faults.update(seed=4)
    second = [(await anon.get(some_h5p_path(world))).status_code for _ in range(20)]
    assert first == second and 200 in first and len(set(first)) > 1  # seeded and partial
    assert (await anon.get(f"{MOOC}/course-details/all/")).status_code == 200  # not in routes


async def test_timeouts_never_answer(anon: httpx.AsyncClient, app: Starlette) -> None:
    app.state.faults.update(timeout_rate=1.0, timeout_s=60, routes=("M3",))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anon.get(f"{MOOC}/course-details/all/"), timeout=0.3)
    assert app.state.stats.to_dict()["by_route"]["M3"] == {"timeout": 1}


async def test_malformed_json(client: httpx.AsyncClient, app: Starlette, world: World) -> None:
    app.state.faults.update(malformed_rate=1.0)
    for path in (f"{MOOC}/course-details/all/", some_h5p_path(world)):
        r = await client.get(path)
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.content)
    assert r.text.startswith("<br />")  # the PHP-notice flavour on H5P


async def test_truncated_body(client: httpx.AsyncClient, app: Starlette) -> None:
    app.state.faults.update(truncated_rate=1.0)
    r = await client.get(f"{MOOC}/course-details/all/")
    assert int(r.headers["content-length"]) > len(r.content) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


async def test_session_dies_after_n_requests(anon: httpx.AsyncClient, app: Starlette) -> None:
    app.state.faults.update(session_max_requests=2)
    r = await anon.get("/csrf/api/v1/token")
    token = r.json()["csrfToken"]
    form = {"email": EMAIL, "password": PASSWORD}
    headers = {"X-CSRFToken": token, "Referer": f"{BASE}/login", "Origin": BASE}
    assert (await anon.post("/api/user/v1/account/login_session/", data=form,
                            headers=headers)).status_code == 200
    codes = [(await anon.get(f"{MOOC}/users/me/")).status_code for _ in range(3)]
    assert codes == [200, 200, 401]
    headers["X-CSRFToken"] = anon.cookies["csrftoken"]
    assert (await anon.post("/api/user/v1/account/login_session/", data=form,
                            headers=headers)).status_code == 200
    assert (await anon.get(f"{MOOC}/users/me/")).status_code == 200


def test_envelope_choice_config_and_validation() -> None:
    assert parse_envelopes(["M1=results,M4=grade_data", "M5=students"]) == {
        "M1": "results", "M4": "grade_data", "M5": "students"}
    with pytest.raises(ValueError):
        parse_envelopes("M1=nope")
    with pytest.raises(ValueError):
        parse_envelopes("M1")
    with pytest.raises(ValueError):
        FaultConfig(timeout_rate=-0.1)
    with pytest.raises(ValueError):
        FaultConfig(routes=("Z9",))
    f = Faults(FaultConfig(envelopes={"M4": "grade_data"}))
    assert f.envelope("M4", "students") == "grade_data"
    assert f.envelope("M5", "students") == "students"
