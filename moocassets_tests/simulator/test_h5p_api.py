"""The H5P side of the contract: H1-H5, no_data, string user ids, course ids in paths."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest

from moocassets.simulator import World, WorldConfig, create_app
from moocassets.simulator.world import PLAUSIBLE_EPOCH, Enrollment

from .conftest import BASE, EMAIL, H5P, PASSWORD, enc

pytestmark = pytest.mark.anyio

H5P_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def ended_course(world: World) -> str:
    return next(cid for cid in world.courses if world.status(cid) == "ended")


def active_learner(world: World, cid: str) -> Enrollment:
    """Someone with both H5P attempts and videos that are visible now."""
    for e in world.visible_enrollments(cid):
        if (world.h5p_state(e, world.now_ts).rows and world.watches_at(e, world.now_ts)
                and not e.flags):
            return e
    raise AssertionError("no active learner")


async def test_h1_scores_and_summary(client: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    e = active_learner(world, cid)
    r = await client.get(f"{H5P}/scores/{e.user_id}/{cid}")
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == str(e.user_id) and body["course_id"] == cid
    rows, s = body["scores"], body["summary"]
    assert s["total_contents"] == len(rows) <= len(world.courses[cid].contents)
    assert s["completed_contents"] == sum(1 for x in rows if x["finished"] > 0)
    assert s["total_score"] == sum(x["score"] for x in rows)
    assert s["total_max_score"] == sum(x["max_score"] for x in rows)
    assert s["overall_percentage"] == round(100 * s["total_score"] / s["total_max_score"], 2)
    assert len({x["content_id"] for x in rows}) == len(rows)
    for x in rows:
        assert 0 <= x["score"] <= x["max_score"]
        assert x["opened"] >= PLAUSIBLE_EPOCH
        assert x["finished"] == 0 or x["finished"] >= x["opened"]
        assert x["folder_name"].startswith("Chương ") and x["total_contents_in_folder"] >= 1
        assert x["percentage"] == round(100 * x["score"] / x["max_score"], 2)


async def test_h1_attempted_only_and_decimal_times(client: httpx.AsyncClient,
                                                   world: World) -> None:
    cid = ended_course(world)
    totals, times = [], []
    for e in world.visible_enrollments(cid):
        r = await client.get(f"{H5P}/scores/{e.user_id}/{cid}")
        if r.status_code == 200:
            totals.append(r.json()["summary"]["total_contents"])
            times += [x["time"] for x in r.json()["scores"]]
    assert min(totals) < len(world.courses[cid].contents)  # attempted, not existing
    assert any(isinstance(t, float) for t in times) and any(isinstance(t, int) for t in times)


async def test_h1_flags_instead_of_epochs_for_some_learners() -> None:
    world = World(WorldConfig(courses=2, learners=40, seed=3, flag_learner_share=0.5,
                              flag_course_share=0.0))
    app = create_app(world, mooc_email=EMAIL, mooc_password=PASSWORD)
    cid = next(c for c in world.courses if world.status(c) == "ended")
    seen = {"flags": 0, "epoch": 0}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as c:
        for e in world.visible_enrollments(cid):
            r = await c.get(f"{H5P}/scores/{e.user_id}/{cid}")
            if r.status_code != 200:
                continue
            values = {x["opened"] for x in r.json()["scores"]} | {
                x["finished"] for x in r.json()["scores"]}
            if e.flags:
                assert values <= {0, 1} and 1 in values
                seen["flags"] += 1
            else:
                assert all(v == 0 or v >= PLAUSIBLE_EPOCH for v in values)
                seen["epoch"] += 1
    assert seen["flags"] > 0 and seen["epoch"] > 0


async def test_no_h5p_activity_is_404_no_data(client: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    never = next(e for e in world.visible_enrollments(cid) if e.never_started)
    for route in ("scores", "video-progress", "combined-progress", "dashboard"):
        r = await client.get(f"{H5P}/{route}/{never.user_id}/{cid}")
        assert r.status_code == 404 and r.json()["code"] == "no_data", route
    r = await client.get(f"{H5P}/scores/999999999/{cid}")
    assert r.status_code == 404 and r.json()["code"] == "no_data"


async def test_h2_video_progress(client: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    statuses: set[str] = set()
    decimals = False
    for e in world.visible_enrollments(cid):
        r = await client.get(f"{H5P}/video-progress/{e.user_id}/{cid}")
        if r.status_code == 404:
            assert not world.watches_at(e, world.now_ts)
            continue
        body = r.json()
        assert body["user_id"] == str(e.user_id)
        rows, s = body["video_progress"], body["summary"]
        assert s["total_videos"] == len(rows)
        assert s["completed_videos"] + s["in_progress_videos"] + s["not_started_videos"] == len(
            rows)
        for x in rows:
            statuses.add(x["status"])
            assert x["current_time"] <= x["duration"] + 0.01
            assert (x["status"] == "completed") == (x["progress_percent"] >= 95)
            assert (x["status"] == "not_started") == (x["progress_percent"] == 0)
            decimals |= isinstance(x["duration"], float) or isinstance(x["current_time"], float)
    assert statuses == {"completed", "in_progress", "started", "not_started"}
    assert decimals


async def test_h3_combined_progress(client: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    e = active_learner(world, cid)
    body = (await client.get(f"{H5P}/combined-progress/{e.user_id}/{cid}")).json()
    h1 = (await client.get(f"{H5P}/scores/{e.user_id}/{cid}")).json()["summary"]
    h2 = (await client.get(f"{H5P}/video-progress/{e.user_id}/{cid}")).json()["summary"]
    o, v, s = body["overall"], body["video_progress"], body["scores"]
    assert o["total_contents_in_course_folders"] == len(world.courses[cid].contents)
    assert s["total_contents"] == h1["total_contents"]
    assert s["pending_contents"] == s["total_contents"] - s["completed_contents"]
    assert v["total_videos"] == h2["total_videos"]
    assert o["total_items"] == s["total_contents"] + v["total_videos"]
    assert o["completed_items"] == s["completed_contents"] + v["completed_videos"]
    assert o["overall_completion"] == round(100 * o["completed_items"] / o["total_items"], 2)
    assert body["user_id"] == str(e.user_id)


async def test_h4_dashboard_format(client: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    e = active_learner(world, cid)
    body = (await client.get(f"{H5P}/dashboard/{e.user_id}/{cid}")).json()
    assert set(body) >= {"overview", "h5p_stats", "folder_scores_stats", "video_stats",
                         "recent_activities", "top_achievements"}
    ov = body["overview"]
    assert ov["items_to_complete"] == ov["total_items"] - ov["completed_items"]
    for pct in (ov["overall_completion"], body["h5p_stats"]["average_percentage"],
                body["video_stats"]["average_video_progress"],
                body["folder_scores_stats"]["average_folder_percentage"]):
        assert round(pct, 2) == pct
    assert body["recent_activities"] and all(
        H5P_TIME.match(a["timestamp"]) for a in body["recent_activities"])
    assert all(H5P_TIME.match(a["completed_at"]) for a in body["top_achievements"])


async def test_h5_course_students(client: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    c = world.courses[cid]
    body = (await client.get(f"{H5P}/course-students/{cid}")).json()
    assert body["course_id"] == cid
    rows = body["students"]
    assert rows and all(isinstance(r["user_id"], str) for r in rows)
    never = {str(e.user_id) for e in world.visible_enrollments(cid) if e.never_started}
    assert never and not never & {r["user_id"] for r in rows}
    for r in rows:
        assert r["h5p_total_items_in_course"] == len(c.contents)
        assert r["h5p_course_max_score"] == c.total_max_score
        assert r["h5p_completed_items"] <= r["h5p_total_items_in_course"]
    e = active_learner(world, cid)
    h1 = (await client.get(f"{H5P}/scores/{e.user_id}/{cid}")).json()["summary"]
    row = next(r for r in rows if r["user_id"] == str(e.user_id))
    assert row["h5p_completed_items"] == h1["completed_contents"]
    assert row["h5p_total_score"] == h1["total_score"]


async def test_h5p_course_id_unencoded_encoded_and_quote(client: httpx.AsyncClient,
                                                         world: World) -> None:
    cid = ended_course(world)
    e = active_learner(world, cid)
    plain = await client.get(f"{H5P}/scores/{e.user_id}/{cid}")
    encoded = await client.get(f"{H5P}/scores/{e.user_id}/{enc(cid)}")
    assert plain.status_code == encoded.status_code == 200
    assert plain.json() == encoded.json()
    for odd in ("course-v1:O'Reilly+X+1", "course-v1:IU+BA.115+2025_T1"):
        oid = world.add_course(odd, learners=20, start=world.now - timedelta(weeks=6))
        who = next(x for x in world.visible_enrollments(oid)
                   if world.h5p_state(x, world.now_ts).rows)
        r = await client.get(f"{H5P}/scores/{who.user_id}/{oid}")
        assert r.status_code == 404 and r.json()["code"] == "rest_no_route"
        r = await client.get(f"{H5P}/scores/{who.user_id}/{enc(oid)}")
        assert r.status_code == 200 and r.json()["course_id"] == oid
        r = await client.get(f"{H5P}/course-students/{enc(oid)}")
        assert r.status_code == 200 and r.json()["course_id"] == oid
    assert (await client.get(f"{H5P}/scores/abc/{cid}")).json()["code"] == "rest_no_route"
    assert (await client.get(f"{H5P}/nope/1/{cid}")).status_code == 404


async def test_h5p_routes_are_public(anon: httpx.AsyncClient, world: World) -> None:
    cid = ended_course(world)
    e = active_learner(world, cid)
    for route in ("scores", "video-progress", "combined-progress", "dashboard"):
        assert (await anon.get(f"{H5P}/{route}/{e.user_id}/{cid}")).status_code == 200
    assert (await anon.get(f"{H5P}/course-students/{cid}")).status_code == 200
