"""The MOOC side of the contract: M1-M8, M12, login, sessions, percent-encoded course ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from moocassets.simulator import VARIANTS, World

from .conftest import BASE, EMAIL, MOOC, PASSWORD, SID, enc, learner_id, unwrap_m1

pytestmark = pytest.mark.anyio

EXPORTS = ("student-grades", "student-progress", "student-discussions", "complete-student-data",
           "student-enrollments")


def first_course(world: World) -> str:
    return next(iter(world.courses))


async def login(c: httpx.AsyncClient, password: str = PASSWORD,
                token: str | None = None) -> httpx.Response:
    r = await c.get("/csrf/api/v1/token")
    assert r.status_code == 200
    csrf = token or r.json()["csrfToken"]
    assert c.cookies.get("csrftoken") == r.json()["csrfToken"]
    return await c.post("/api/user/v1/account/login_session/",
                        data={"email": EMAIL, "password": password},
                        headers={"X-CSRFToken": csrf, "Referer": f"{BASE}/login",
                                 "Origin": BASE})


async def test_m3_is_public_and_lists_every_course(anon: httpx.AsyncClient, world: World) -> None:
    r = await anon.get(f"{MOOC}/course-details/all/")
    assert r.status_code == 200
    items = r.json()["data"]
    assert [i["id"] for i in items] == list(world.courses)
    assert all(i["display_name"] for i in items)


async def test_every_other_route_needs_a_session(anon: httpx.AsyncClient, world: World) -> None:
    cid = enc(first_course(world))
    paths = [f"{MOOC}/course-enrollments-attributes/{cid}/?limit=200&offset=0",
             f"{MOOC}/course-details/display-name/?course_id={cid}", f"{MOOC}/users/me/",
             *(f"{MOOC}/export/{e}/{cid}/" for e in EXPORTS)]
    for path in paths:
        r = await anon.get(path)
        assert r.status_code == 401, path
        assert "detail" in r.json()
    anon.cookies.set("sessionid", "forged")
    for path in paths:
        assert (await anon.get(path)).status_code == 401, path
    anon.cookies.clear()
    anon.cookies.set("edx-session", SID)  # the operator cookie under its other name works too
    for path in paths:
        assert (await anon.get(path)).status_code == 200, path


async def test_login_flow_sets_cookies_and_me_works(anon: httpx.AsyncClient) -> None:
    r = await login(anon)
    assert r.status_code == 200 and r.json()["success"] is True
    for name in ("sessionid", "csrftoken", "edx-jwt-cookie-header-payload"):
        assert anon.cookies.get(name), name
    me = await anon.get(f"{MOOC}/users/me/")
    assert me.status_code == 200
    assert me.json()["success"] is True
    assert me.json()["data"]["email"] == EMAIL and isinstance(me.json()["data"]["id"], int)


async def test_login_rejects_bad_password_and_bad_csrf(anon: httpx.AsyncClient) -> None:
    r = await login(anon, password="wrong")
    assert r.status_code == 403 and r.json()["success"] is False
    assert "sessionid" not in anon.cookies
    r = await login(anon, token="not-the-token")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    # right token but a foreign Origin
    token = (await anon.get("/csrf/api/v1/token")).json()["csrfToken"]
    r = await anon.post("/api/user/v1/account/login_session/",
                        data={"email": EMAIL, "password": PASSWORD},
                        headers={"X-CSRFToken": token, "Referer": "https://evil.example/login",
                                 "Origin": "https://evil.example"})
    assert r.status_code == 403
    # JSON instead of a form is not a login
    r = await anon.post("/api/user/v1/account/login_session/",
                        json={"email": EMAIL, "password": PASSWORD},
                        headers={"X-CSRFToken": token, "Referer": f"{BASE}/login", "Origin": BASE})
    assert r.status_code == 400
    assert "sessionid" not in anon.cookies


async def test_login_session_expires_after_12_simulated_hours(anon: httpx.AsyncClient,
                                                               world: World) -> None:
    assert (await login(anon)).status_code == 200
    world.advance(timedelta(hours=11))
    assert (await anon.get(f"{MOOC}/users/me/")).status_code == 200
    world.advance(timedelta(hours=1, minutes=1))
    assert (await anon.get(f"{MOOC}/users/me/")).status_code == 401
    assert (await login(anon)).status_code == 200  # a new login gives a fresh session
    assert (await anon.get(f"{MOOC}/users/me/")).status_code == 200


async def _all_pages(c: httpx.AsyncClient, cid: str, limit: int) -> list[list[dict]]:
    pages: list[list[dict]] = []
    offset = 0
    while True:
        r = await c.get(f"{MOOC}/course-enrollments-attributes/{enc(cid)}/",
                        params={"limit": limit, "offset": offset})
        assert r.status_code == 200
        page = unwrap_m1(r.json())
        pages.append(page)
        if len(page) < limit:
            return pages
        offset += limit


async def test_m1_pages_until_a_short_page(client: httpx.AsyncClient, world: World) -> None:
    cid = first_course(world)
    pages = await _all_pages(client, cid, 7)
    ids = [learner_id(i) for p in pages for i in p]
    expected = [e.user_id for e in world.visible_enrollments(cid)]
    assert ids == expected and len(set(ids)) == len(ids)
    assert all(len(p) == 7 for p in pages[:-1]) and len(pages[-1]) < 7
    body = (await client.get(f"{MOOC}/course-enrollments-attributes/{enc(cid)}/",
                             params={"limit": 5, "offset": 10_000})).json()
    assert unwrap_m1(body) == []
    assert "count" not in body and "next" not in body


@pytest.mark.parametrize("envelope", VARIANTS["M1"])
async def test_m1_envelopes(client: httpx.AsyncClient, app: Starlette, world: World,
                            envelope: str) -> None:
    app.state.faults.update(envelopes={"M1": envelope, "M1_id": "user_id", "M1_id_type": "int"})
    cid = first_course(world)
    body = (await client.get(f"{MOOC}/course-enrollments-attributes/{enc(cid)}/?limit=3")).json()
    if envelope == "data.enrollments":
        items = body["data"]["enrollments"]
    elif envelope == "data":
        items = body["data"]
    else:
        items = body[envelope]
    assert len(items) == 3 and unwrap_m1(body) == items
    assert isinstance(items[0]["user_id"], int)


async def test_m1_item_shape_and_id_fallback(client: httpx.AsyncClient, app: Starlette,
                                             world: World) -> None:
    cid = first_course(world)
    e = world.visible_enrollments(cid)[0]
    url = f"{MOOC}/course-enrollments-attributes/{enc(cid)}/?limit=1&offset=0"
    app.state.faults.update(envelopes={"M1": "results", "M1_id": "id", "M1_id_type": "str"})
    item = unwrap_m1((await client.get(url)).json())[0]
    assert "user_id" not in item and item["id"] == str(e.user_id)
    app.state.faults.update(envelopes={"M1": "results", "M1_id": "user_id", "M1_id_type": "int"})
    item = unwrap_m1((await client.get(url)).json())[0]
    assert item["user_id"] == e.user_id
    assert item["mode"] in ("audit", "verified", "honor", "professional")
    assert item["enrollment_id"] == e.enrollment_id and item["is_active"] is True
    info = item["student_info"]
    assert info["full_name_vn"] == e.person.full_name_vn
    assert item["full_name"].isascii() and item["full_name"] == e.person.full_name
    assert {"mssv", "first_name", "middle_name", "last_name", "class_code"} <= set(info)
    assert isinstance(item["all_attributes"], list) and item["all_attributes"][0]["name"]


@pytest.mark.parametrize("variant", VARIANTS["M1_created"])
async def test_m1_created_formats_parse_to_the_same_instant(
        client: httpx.AsyncClient, app: Starlette, world: World, variant: str) -> None:
    app.state.faults.update(envelopes={"M1_created": variant})
    cid = first_course(world)
    e = world.visible_enrollments(cid)[0]
    item = unwrap_m1((await client.get(
        f"{MOOC}/course-enrollments-attributes/{enc(cid)}/?limit=1")).json())[0]
    dt = datetime.fromisoformat(item["created"])
    if dt.tzinfo is None:
        assert variant == "naive"
        dt = dt.replace(tzinfo=UTC)
    assert abs(dt.timestamp() - e.created) < 1.0
    assert item["created"].endswith("Z") == (variant in ("z", "frac"))


async def test_default_envelopes_differ_between_courses(world: World) -> None:
    assert len({c.variants["M1"] for c in world.courses.values()}) == 3
    assert len({c.variants["M4"] for c in world.courses.values()}) == 2


async def test_course_ids_are_percent_encoded_in_paths_and_queries(
        client: httpx.AsyncClient, world: World) -> None:
    cid = world.add_course("course-v1:O'Reilly+X.1+2025_T3", learners=5,
                           start=world.now - timedelta(weeks=5))
    r = await client.get(f"{MOOC}/export/student-enrollments/{enc(cid)}/")
    assert "%3A" in enc(cid) and "%2B" in enc(cid) and "%27" in enc(cid)
    assert r.status_code == 200 and len(r.json()["students"]) == 5
    r = await client.get(f"{MOOC}/course-details/display-name/?course_id={enc(cid)}")
    assert r.status_code == 200
    r = await client.get(f"{MOOC}/export/student-grades/{enc('course-v1:No+Such+Course')}/")
    assert r.status_code == 404 and r.json()["success"] is False


async def test_m2_course_details(client: httpx.AsyncClient, world: World) -> None:
    cid = first_course(world)
    c = world.courses[cid]
    data = (await client.get(f"{MOOC}/course-details/display-name/",
                             params={"course_id": cid})).json()["data"]
    assert data["display_name"] == c.display_name
    assert datetime.fromisoformat(data["start"]).timestamp() == c.start
    assert datetime.fromisoformat(data["end"]).timestamp() == c.end
    assert (await client.get(f"{MOOC}/course-details/display-name/")).status_code == 400
    open_ended = world.add_course(hide_end=True, learners=0)
    data = (await client.get(f"{MOOC}/course-details/display-name/",
                             params={"course_id": open_ended})).json()["data"]
    assert data["end"] is None


async def test_m4_both_envelopes_carry_the_world_grades(
        client: httpx.AsyncClient, app: Starlette, world: World) -> None:
    cid = first_course(world)
    url = f"{MOOC}/export/student-grades/{enc(cid)}/"
    app.state.faults.update(envelopes={"M4": "students", "M4_letters": "AF", "M4_fields": "full"})
    rows = (await client.get(url)).json()["students"]
    visible = world.visible_enrollments(cid)
    assert [r["user_id"] for r in rows] == [e.user_id for e in visible]
    for r, e in zip(rows, visible, strict=True):
        g = world.grade(e, world.now_ts)
        assert r["grade_percentage"] == g and r["percent_grade"] == round(g / 100, 4)
        assert r["is_passed"] == (g >= 50.0)
        assert r["letter_grade"] in "ABCDF" and (r["letter_grade"] == "F") == (g < 50)
    assert any(r["is_passed"] for r in rows) and not all(r["is_passed"] for r in rows)
    app.state.faults.update(envelopes={"M4": "grade_data", "M4_letters": "pass"})
    body = (await client.get(url)).json()
    table = body["grade_data"]["grade_table"]
    assert "percent_grade" not in table[0]
    assert [r["grade_percentage"] for r in table] == [r["grade_percentage"] for r in rows]
    assert body["summary"]["total_students"] == len(rows)
    assert body["summary"]["pass_rate"] == round(
        100 * sum(r["is_passed"] for r in rows) / len(rows), 2)
    assert {r["letter_grade"] for r in table} <= {"Pass", ""}


async def test_m4_optional_fields_and_query(client: httpx.AsyncClient, app: Starlette,
                                            world: World) -> None:
    cid = first_course(world)
    url = f"{MOOC}/export/student-grades/{enc(cid)}/"
    app.state.faults.update(envelopes={"M4": "students", "M4_letters": "none",
                                       "M4_fields": "sparse"})
    rows = (await client.get(url)).json()["students"]
    assert all("letter_grade" not in r for r in rows)
    assert any(not {"username", "email", "full_name"} <= set(r) for r in rows)
    rows = (await client.get(url, params={"sort_by": "grade_percentage",
                                          "sort_order": "desc"})).json()["students"]
    grades = [r["grade_percentage"] for r in rows]
    assert grades == sorted(grades, reverse=True)
    someone = world.visible_enrollments(cid)[1].person.email
    rows = (await client.get(url, params={"email_filter": someone})).json()["students"]
    assert [r["email"] for r in rows] == [someone]


async def test_m5_both_envelopes(client: httpx.AsyncClient, app: Starlette, world: World) -> None:
    cid = first_course(world)
    url = f"{MOOC}/export/student-progress/{enc(cid)}/"
    app.state.faults.update(envelopes={"M5": "students", "M5_blocks": "present"})
    rows = (await client.get(url)).json()["students"]
    for r in rows:
        assert 0 <= r["completion_rate"] <= 100
        assert 0 <= r["completed_blocks"] <= r["total_blocks"]
        assert r["completion_rate"] == round(100 * r["completed_blocks"] / r["total_blocks"], 2)
        if r["completed_blocks"]:
            assert r["current_chapter"].startswith("Chương ") and r["last_activity"]
        else:
            assert r["current_chapter"] == ""
    assert any(r["last_activity"] is None for r in rows)  # never-started learners
    app.state.faults.update(envelopes={"M5": "students_progress_data", "M5_blocks": "absent"})
    body = (await client.get(url)).json()
    rows2 = body["students_progress_data"]["students_progress"]
    assert "total_blocks" not in rows2[0]
    assert [r["completion_rate"] for r in rows2] == [r["completion_rate"] for r in rows]
    assert body["summary"]["total_students"] == len(rows)


async def test_m6_omits_learners_without_forum_activity(client: httpx.AsyncClient,
                                                         world: World) -> None:
    cid = first_course(world)
    body = (await client.get(f"{MOOC}/export/student-discussions/{enc(cid)}/")).json()
    rows = body["students"]
    visible = world.visible_enrollments(cid)
    active = {e.user_id for e in visible if world.forum(e, world.now_ts) is not None}
    assert {r["user_id"] for r in rows} == active
    assert 0 < len(rows) < len(visible) / 2
    for r in rows:
        assert r["total_interactions"] == r["threads_count"] + r["comments_count"] > 0
        assert r["questions_count"] <= r["threads_count"]
    assert body["summary"]["total_students"] == len(visible)
    assert body["summary"]["total_threads"] == sum(r["threads_count"] for r in rows)


async def test_m7_joins_grades_progress_discussions(client: httpx.AsyncClient,
                                                    world: World) -> None:
    cid = first_course(world)
    rows = (await client.get(f"{MOOC}/export/complete-student-data/{enc(cid)}/")).json()["students"]
    assert len(rows) == len(world.visible_enrollments(cid))
    forum_rows = (await client.get(
        f"{MOOC}/export/student-discussions/{enc(cid)}/")).json()["students"]
    by_user = {r["user_id"]: r for r in forum_rows}
    for r in rows:
        assert {"grade_percentage", "is_passed", "completion_rate", "threads_count"} <= set(r)
        assert r["threads_count"] == by_user.get(r["user_id"], {}).get("threads_count", 0)


async def test_m8_enrollment_dates_and_modes(client: httpx.AsyncClient, world: World) -> None:
    cid = first_course(world)
    body = (await client.get(f"{MOOC}/export/student-enrollments/{enc(cid)}/")).json()
    rows = body["students"]
    visible = world.visible_enrollments(cid)
    assert [r["user_id"] for r in rows] == [e.user_id for e in visible]
    assert all(r["mode"] in ("audit", "verified", "honor", "professional") for r in rows)
    assert sum(body["summary"]["modes"].values()) == len(rows)
    assert datetime.fromisoformat(rows[0]["created"]).timestamp() == int(visible[0].created)
