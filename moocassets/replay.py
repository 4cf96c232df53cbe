"""Replay simulated courses week by week: ``raw_data_history`` rows without HTTP sockets or a DB.

The simulator's ASGI app is called in-process through the project's real source clients
(:class:`MoocApiResource` / :class:`H5PApiResource` with ``httpx.ASGITransport``), and the frames
are built by the same declarations and pure transforms as the pipeline (the endpoint table's
fetch and parse → ``restrict_to_enrolled`` → ``summaries`` → ``features.build_raw_data``). Only
the simulator's clock moves (``world.set_now``), so a whole course history takes seconds instead
of one Dagster run per week.

Used by the risk tests, ``benchmarks/risk_evaluation.py`` and the CLI::

    python -m moocassets.replay --courses 6 --learners 120 --seed 3 --weekly --out history.csv
    python -m moocassets.replay --course "course-v1:UEL+NLTT241225+2025_S2" --weekly

In production history accumulates differently: every ``raw_data_history`` materialization stores
one snapshot at its ``as_of`` (docs/RISK.md).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd

from moocassets import keys
from moocassets.endpoints import ENDPOINTS, ENROLLMENTS
from moocassets.simulator import World, WorldConfig, create_app
from moocassets.sources import H5PApiResource, MoocApiResource
from moocassets.transforms import features, payloads, summaries
from moocassets.transforms.enrolled import restrict_to_enrolled

__all__ = [
    "CHECKPOINTS",
    "SimulatedSources",
    "course_history",
    "ended_world",
    "replay_times",
    "simulated_sources",
    "snapshot",
    "truth_frame",
]

CHECKPOINTS: tuple[float, ...] = (0.25, 0.5, 0.75)
"""Course-progress checkpoints at which the risk score is evaluated."""

_SESSION = "replay-operator-session"
_EMAIL = "replay@example.edu"
_ORIGIN = "http://simulator.local"


@dataclass
class SimulatedSources:
    """The simulator app behind the project's source clients (one open session each)."""

    world: World
    mooc: MoocApiResource
    h5p: H5PApiResource


@contextmanager
def simulated_sources(world: World) -> Iterator[SimulatedSources]:
    """Source clients that call ``world``'s simulator app in-process (no sockets)."""
    app = create_app(
        world, mooc_email=_EMAIL, mooc_password=secrets.token_urlsafe(12), session_ids=[_SESSION]
    )
    transport = httpx.ASGITransport(app=app)
    mooc = MoocApiResource(
        base_url=f"{_ORIGIN}/api/custom/v1", sessionid=_SESSION
    ).with_transport(transport)
    h5p = H5PApiResource(
        base_url=f"{_ORIGIN}/wp-json/mooc/v1", max_concurrency=16
    ).with_transport(transport)
    with mooc.session(), h5p.session():
        yield SimulatedSources(world=world, mooc=mooc, h5p=h5p)


def snapshot(
    sources: SimulatedSources,
    course_id: str,
    *,
    inactivity_days: int = features.DEFAULT_INACTIVITY_DAYS,
) -> pd.DataFrame:
    """The ``raw_data`` feature + label rows of ``course_id`` as of the world's current time.

    The pipeline's code path minus Dagster and MySQL, generated from the same declarations: every
    endpoint of :data:`moocassets.endpoints.ENDPOINTS` fetched and parsed, kept to the enrolled
    learners, the summaries of :data:`moocassets.transforms.summaries.SUMMARIES`, then
    ``features.build_raw_data`` on :data:`moocassets.transforms.features.INPUT_TABLES`.
    """
    now = sources.world.now
    clients = {"mooc": sources.mooc, "h5p": sources.h5p}
    tables: dict[str, pd.DataFrame] = {
        keys.COURSE_EXTRACT: payloads.course_frame(
            course_id, sources.mooc.course_details(course_id).data
        )
    }
    enrolled = ENROLLMENTS.parse(
        course_id, ENROLLMENTS.fetch(sources.mooc, course_id, (), None).data, now
    ).frame
    tables[ENROLLMENTS.table.name] = enrolled
    user_ids = sorted(int(u) for u in enrolled["user_id"].dropna().unique())
    for ep in ENDPOINTS:
        if ep is ENROLLMENTS:
            continue
        fetched = ep.fetch(clients[ep.system], course_id, user_ids, None)
        tables[ep.table.name] = restrict_to_enrolled(
            ep.parse(course_id, fetched.data, now).frame, enrolled
        )[0]
    for summary in summaries.SUMMARIES:
        tables[summary.table] = summary.aggregate(tables[summary.detail])
    return features.build_raw_data(
        **{arg: tables[table] for arg, table in features.INPUT_TABLES.items()},
        evaluation_time=now,
        inactivity_days=inactivity_days,
    )


def replay_times(
    start: datetime,
    end: datetime,
    *,
    weekly: bool = True,
    checkpoints: Sequence[float] = CHECKPOINTS,
    until: datetime | None = None,
) -> list[datetime]:
    """Snapshot instants of a course: every 7 days after ``start`` (if ``weekly``), the
    ``checkpoints`` (fractions of the course) and the end itself, none after ``until``."""
    span = end - start
    times = {start + span * f for f in checkpoints} | {end}
    if weekly:
        t = start + timedelta(days=7)
        while t < end:
            times.add(t)
            t += timedelta(days=7)
    limit = until if until is not None else end
    return sorted(t for t in times if start < t <= limit)


def course_history(
    sources: SimulatedSources,
    course_id: str,
    times: Iterable[datetime] | None = None,
    *,
    inactivity_days: int = features.DEFAULT_INACTIVITY_DAYS,
) -> pd.DataFrame:
    """Snapshots of one course at ``times`` (default: :func:`replay_times` up to now), stacked.

    The world's clock is restored afterwards.
    """
    world = sources.world
    c = world.course(course_id)
    start = datetime.fromtimestamp(c.start, tz=UTC)
    end = datetime.fromtimestamp(c.end, tz=UTC)
    original = world.now
    when = list(times) if times is not None else replay_times(start, end, until=original)
    frames: list[pd.DataFrame] = []
    try:
        for t in when:
            world.set_now(t)
            frame = snapshot(sources, course_id, inactivity_days=inactivity_days)
            if len(frame):
                frames.append(frame)
    finally:
        world.set_now(original)
    if not frames:
        return features.RAW_DATA.empty_frame()
    return pd.concat(frames, ignore_index=True)


def ended_world(
    courses: int, learners: int, seed: int, *, weeks_range: tuple[int, int] = (8, 12)
) -> World:
    """A world whose clock is after every course's end (all courses can be replayed fully)."""
    world = World(WorldConfig(courses=courses, learners=learners, seed=seed,
                              weeks_range=weeks_range))
    last_end = max(c.end for c in world.courses.values())
    world.set_now(datetime.fromtimestamp(last_end, tz=UTC) + timedelta(days=1))
    return world


def truth_frame(world: World, course_id: str, inactivity_days: int = 21) -> pd.DataFrame:
    """The simulator's ground truth per learner: ``user_id, course_id, dropped_out, passed``."""
    rows = world.outcomes(course_id, inactivity_days=inactivity_days)
    return pd.DataFrame(
        {
            "user_id": [r["user_id"] for r in rows],
            "course_id": course_id,
            "dropped_out": [bool(r["dropped_out"]) for r in rows],
            "passed": [bool(r["passed"]) for r in rows],
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moocassets.replay", description=__doc__)
    parser.add_argument("--courses", type=int, default=4)
    parser.add_argument("--learners", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--course", action="append", default=None,
                        help="only these course ids (repeatable; default: every course)")
    parser.add_argument("--weekly", action="store_true",
                        help="one snapshot per course week (else only the checkpoints and end)")
    parser.add_argument("--out", default=None, help="write the stacked history as CSV here")
    args = parser.parse_args(argv)
    world = ended_world(args.courses, args.learners, args.seed)
    ids = args.course or list(world.courses)
    frames = []
    with simulated_sources(world) as sources:
        for cid in ids:
            c = world.course(cid)
            times = replay_times(
                datetime.fromtimestamp(c.start, tz=UTC), datetime.fromtimestamp(c.end, tz=UTC),
                weekly=args.weekly,
            )
            hist = course_history(sources, cid, times)
            frames.append(hist)
            final = hist[hist["as_of"] == hist["as_of"].max()]
            print(f"{cid}: {hist['as_of'].nunique()} snapshots, {len(hist)} rows, "
                  f"final dropout rate {final['is_dropout'].mean():.1%}")
    history = pd.concat(frames, ignore_index=True)
    if args.out:
        history.to_csv(args.out, index=False)
        print(f"wrote {len(history)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
