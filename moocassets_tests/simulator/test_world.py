"""World model: determinism, realism, the clock, enrolments and outcomes."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from moocassets.simulator import World, WorldConfig, create_app

from .conftest import BASE, EMAIL, H5P, MOOC, PASSWORD, SID, enc, learner_id, unwrap_m1


@pytest.fixture(scope="module")
def big() -> World:
    return World(WorldConfig(courses=3, learners=400, seed=7))


async def _snapshot(world: World) -> str:
    app = create_app(world, mooc_email=EMAIL, mooc_password=PASSWORD, session_ids=[SID])
    out = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE,
                                 cookies={"sessionid": SID}) as c:
        out.append((await c.get(f"{MOOC}/course-details/all/")).json())
        for cid in world.courses:
            for path in (f"course-enrollments-attributes/{enc(cid)}/?limit=50",
                         f"export/student-grades/{enc(cid)}/",
                         f"export/student-progress/{enc(cid)}/",
                         f"export/student-discussions/{enc(cid)}/"):
                out.append((await c.get(f"{MOOC}/{path}")).json())
            # H5P in reverse order: lazily built timelines must not depend on access order
            for e in reversed(world.courses[cid].enrollments[:15]):
                for route in ("scores", "video-progress", "dashboard"):
                    r = await c.get(f"{H5P}/{route}/{e.user_id}/{cid}")
                    out.append([r.status_code, r.json()])
    return json.dumps(out, sort_keys=True)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_same_seed_same_payloads(anyio_backend: str) -> None:
    a = await _snapshot(World(WorldConfig(courses=2, learners=30, seed=5)))
    b_world = World(WorldConfig(courses=2, learners=30, seed=5))
    for c in b_world.courses.values():  # touch timelines in another order first
        for e in c.enrollments:
            _ = e.timeline
    b = await _snapshot(b_world)
    c = await _snapshot(World(WorldConfig(courses=2, learners=30, seed=6)))
    assert a == b
    assert a != c


def test_some_courses_ended_some_running(big: World) -> None:
    statuses = [big.status(cid) for cid in big.courses]
    assert statuses.count("ended") == 1 and statuses.count("running") == 2
    for c in big.courses.values():
        assert 8 * 7 <= (c.end - c.start) / 86400 <= 14 * 7
        assert 10 <= len(c.contents) <= 25 and 5 <= len(c.videos) <= 12
        assert all(f.chapter.startswith(f"Chương {i + 1}: ") for i, f in enumerate(c.folders))


def test_learners_take_several_courses_and_have_vietnamese_names(big: World) -> None:
    sets = [set(c.by_user) for c in big.courses.values()]
    assert sets[0] & sets[1] and sets[1] & sets[2]
    people = [e.person for e in next(iter(big.courses.values())).enrollments]
    assert any(not p.full_name_vn.isascii() for p in people)
    assert all(p.full_name.isascii() and len(p.full_name.split()) == 3 for p in people)
    assert len({p.username for p in big.persons}) == len(big.persons)


def test_dropout_share_in_band_and_driven_by_traits(big: World) -> None:
    for cid in big.courses:
        out = big.outcomes(cid)
        quit_share = sum(o["quit"] for o in out) / len(out)
        assert 0.22 <= quit_share <= 0.43, cid
        dropped = sum(o["dropped_out"] for o in out) / len(out)
        assert 0.15 <= dropped <= 0.45, cid
        quitters = [o["traits"]["motivation"] for o in out if o["quit"]]
        stayers = [o["traits"]["motivation"] for o in out if not o["quit"]]
        assert statistics.mean(quitters) < statistics.mean(stayers) - 0.1
        for o in out:
            assert not (o["passed"] and o["dropped_out"])
            if o["never_started"]:
                assert o["last_activity"] is None and o["items_reached"] == 0


def test_passing_follows_work_done(big: World) -> None:
    out = big.outcomes(next(iter(big.courses)))
    passed = [o["items_reached"] for o in out if o["passed"]]
    failed = [o["items_reached"] for o in out if not o["passed"]]
    assert 0.25 < len(passed) / len(out) < 0.8
    assert statistics.mean(passed) > statistics.mean(failed) + 5
    stayers = [o for o in out if not o["quit"]]  # among those who kept working, ability counts
    assert statistics.correlation([o["traits"]["ability"] for o in stayers],
                                  [o["final_grade"] for o in stayers]) > 0.4
    assert all(o["final_grade"] >= 50 for o in out if o["passed"])


def test_forum_activity_is_sparse(big: World) -> None:
    for c in big.courses.values():
        with_forum = sum(big.forum(e, c.end) is not None for e in c.enrollments)
        assert 0.03 < with_forum / len(c.enrollments) < 0.4


def test_nothing_after_now_is_visible(big: World) -> None:
    now = big.now_ts
    for c in big.courses.values():
        for e in big.visible_enrollments(c.course_id)[:100]:
            assert e.created <= now
            st = big.h5p_state(e, now)
            assert all(a.opened <= now for a, _ in st.rows)
            assert all(a.finished is not None and a.finished <= now for a, f in st.rows if f)
            last = big.last_activity(e, now)
            assert last is None or last <= now


def test_advancing_the_clock_adds_activity_and_enrollments() -> None:
    world = World(WorldConfig(courses=3, learners=80, seed=9))
    cid = world.add_course(start=world.now - timedelta(days=5), weeks=10)  # still enrolling
    before_n = len(world.visible_enrollments(cid))
    before = {e.user_id: (world.progress(e, world.now_ts)[0],
                          len(world.h5p_state(e, world.now_ts).rows))
              for e in world.visible_enrollments(cid)}
    world.advance(timedelta(days=14))
    after = {e.user_id: (world.progress(e, world.now_ts)[0],
                         len(world.h5p_state(e, world.now_ts).rows))
             for e in world.visible_enrollments(cid)}
    assert len(world.visible_enrollments(cid)) > before_n  # late enrolments appeared
    assert all(after[u][0] >= b[0] and after[u][1] >= b[1] for u, b in before.items())
    assert sum(a[1] for a in after.values()) > sum(b[1] for b in before.values())
    world.set_now(world.now - timedelta(days=14))
    assert len(world.visible_enrollments(cid)) == before_n


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_new_enrollments_appear_at_the_end_of_m1(anyio_backend: str) -> None:
    world = World(WorldConfig(courses=2, learners=23, seed=4))
    app = create_app(world, mooc_email=EMAIL, mooc_password=PASSWORD, session_ids=[SID])
    cid = next(iter(world.courses))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE,
                                 cookies={"sessionid": SID}) as c:
        async def all_ids() -> list[int]:
            ids: list[int] = []
            while True:
                page = unwrap_m1((await c.get(
                    f"{MOOC}/course-enrollments-attributes/{enc(cid)}/",
                    params={"limit": 10, "offset": len(ids)})).json())
                ids += [learner_id(i) for i in page]
                if len(page) < 10:
                    return ids
        before = await all_ids()
        new = world.enroll(cid, 3)
        after = await all_ids()
        assert after == before + new
        assert all(world.courses[cid].by_user[u].created == int(world.now_ts) for u in new)
        assert world.unenroll(cid, before[0]) and not world.unenroll(cid, before[0])
        assert await all_ids() == before[1:] + new
        grades = (await c.get(f"{MOOC}/export/student-enrollments/{enc(cid)}/")).json()
        assert before[0] not in {r["user_id"] for r in grades["students"]}
        # a brand-new learner becomes active as time passes
        world.advance(timedelta(days=20))
        active = [u for u in new if world.last_activity(world.courses[cid].by_user[u],
                                                        world.now_ts) is not None]
        assert active or world.status(cid) == "ended"


def test_add_course_and_outcomes_cover_the_whole_course() -> None:
    world = World(WorldConfig(courses=1, learners=30, seed=2))
    cid = world.add_course(display_name="Khóa học mới", weeks=10, learners=40)
    assert cid in world.courses and world.status(cid) == "running"
    c = world.courses[cid]
    assert c.display_name == "Khóa học mới" and len(c.enrollments) == 40
    assert {o["user_id"] for o in world.outcomes(cid)} == set(c.by_user)
    with pytest.raises(ValueError):
        world.add_course(cid)


# ------------------------------------------------------- realism: breaks, stop-outs, cramming


def test_some_persistent_learners_take_long_breaks(big: World) -> None:
    """Learners who keep going still pause for 2+ weeks now and then (more if irregular), so a
    long inactivity is not by itself proof of dropout."""
    shares = []
    for cid in big.courses:
        stayers = [o for o in big.outcomes(cid) if not o["quit"]]
        gaps = [o["longest_idle_days"] or 0.0 for o in stayers]
        shares.append(sum(g >= 14 for g in gaps) / len(gaps))
        assert max(gaps) <= 60  # breaks of 1-4 weeks (possibly next to a holiday), no more
        long_breaks = [o["traits"]["regularity"] for o, g in zip(stayers, gaps, strict=True)
                       if g >= 14 and not o["crammer"]]
        assert statistics.mean(long_breaks) < statistics.mean(
            o["traits"]["regularity"] for o in stayers)
    assert all(0.05 < s < 0.5 for s in shares), shares  # occasional, not the norm


def test_some_learners_come_back_after_three_weeks_idle(big: World) -> None:
    for cid in big.courses:
        c = big.courses[cid]
        out = big.outcomes(cid)
        back = [o for o in out if (o["longest_idle_days"] or 0.0) >= 21 and not o["dropped_out"]]
        assert len(back) >= 0.02 * len(out)
        stopouts = [o for o in out if o["returned_at"] is not None]
        assert stopouts and all(o["quit"] and not o["never_started"] for o in stopouts)
        for o in stopouts:
            e = c.by_user[o["user_id"]]
            assert e.quit_at is not None and e.returns_at is not None
            assert 21 * 86400 <= e.returns_at - e.quit_at <= 49 * 86400
            assert e.returns_at < c.end
            # nothing between quitting and coming back, then work again
            assert not any(e.quit_at <= t < e.returns_at for t in e.timeline.activity)
            assert any(t >= e.returns_at for t in e.timeline.activity)
        # and still most quitters do not come back
        quitters = [o for o in out if o["quit"]]
        assert len(stopouts) < 0.5 * len(quitters)


def test_crammers_do_most_of_their_work_late(big: World) -> None:
    for cid, c in big.courses.items():
        out = big.outcomes(cid)
        crammers = [o for o in out if o["crammer"]]
        assert 0.03 < len(crammers) / len(out) < 0.3
        assert statistics.mean(o["traits"]["regularity"] for o in crammers) < statistics.mean(
            o["traits"]["regularity"] for o in out)
        late = c.start + 0.75 * (c.end - c.start)
        shares: dict[bool, list[float]] = {True: [], False: []}
        for e in c.enrollments:
            items = e.timeline.item_times
            if not e.quits and items:
                shares[e.crammer].append(sum(t >= late for t in items) / len(items))
        assert statistics.mean(shares[True]) > statistics.mean(shares[False]) + 0.1
        assert any(o["passed"] for o in crammers)


def test_tet_is_a_course_wide_break() -> None:
    world = World(WorldConfig(courses=1, learners=30, seed=2))
    cid = world.add_course(start=datetime(2026, 1, 5, tzinfo=UTC), weeks=10, learners=200)
    c = world.courses[cid]
    assert c.holiday_name == "Tết" and c.holiday is not None
    lo, hi = c.holiday
    tet = datetime(2026, 2, 17, tzinfo=UTC).timestamp()
    assert lo <= tet - 7 * 86400 and tet + 7 * 86400 < hi
    stayers = [e for e in c.enrollments if not e.quits]

    def working(a: float, b: float) -> int:
        return sum(any(a <= t < b for t in e.timeline.activity) for e in stayers)

    assert working(lo, hi) < 0.4 * working(lo - (hi - lo), lo)
    described = next(d for d in world.describe() if d["course_id"] == cid)
    assert described["holiday"]["name"] == "Tết"
    # a course far from Tết gets at most an exam period
    assert all(x.holiday_name in ("", "exam period")
               for x in World(WorldConfig(courses=4, learners=5, seed=3)).courses.values()
               if 4 <= datetime.fromtimestamp(x.start, UTC).month <= 10)


def test_outcomes_are_deterministic_per_seed() -> None:
    def outcomes(seed: int) -> str:
        world = World(WorldConfig(courses=2, learners=60, seed=seed))
        return json.dumps([[world.outcomes(cid), world.courses[cid].holiday]
                           for cid in world.courses], sort_keys=True)

    assert outcomes(11) == outcomes(11)
    assert outcomes(11) != outcomes(12)


def test_dropout_label_uses_the_activity_the_pipeline_sees(big: World) -> None:
    """Truth = the pipeline's end-of-course label: last activity = MOOC last_activity or a later
    H5P finish (unless the learner's H5P times are 0/1 flags), in whole seconds."""
    for cid, c in big.courses.items():
        for o in big.outcomes(cid):
            e = c.by_user[o["user_id"]]
            last = big.observed_last_activity(e, c.end)
            mooc = big.last_activity(e, c.end)
            assert (last is None) == (mooc is None)
            if last is not None and mooc is not None:
                assert int(mooc) <= last <= c.end and last == int(last)
                if e.flags:
                    assert last == int(mooc)
                idle = c.end - last >= 21 * 86400
                assert o["dropped_out"] == (not o["passed"] and idle)
