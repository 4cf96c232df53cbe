"""The source endpoints of the pipeline, each declared once.

One :class:`Endpoint` per source endpoint that becomes a table: which system serves it, how it
is fetched (a call of the system's client), how its payload is parsed into rows (a pure parser
in :mod:`moocassets.transforms.payloads`), and the table those rows go to. From this table are
generated:

* the extract assets (:mod:`moocassets.assets.extract`), one per endpoint;
* the warehouse detail-table assets (:mod:`moocassets.assets.warehouse`), one per endpoint;
* the simulated replay of a course (:func:`moocassets.replay.snapshot`);
* the automation tests' stand-in graph (through the real asset definitions).

The course details (M2, one row per course, no table of their own) are fetched by
``mooc_course_extract``; the derived tables (summaries, features) are declared with their
transforms (:data:`moocassets.transforms.summaries.SUMMARIES`,
:data:`moocassets.transforms.features.INPUT_TABLES`). Adding an endpoint: see docs/CONTRACTS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from moocassets import keys, schema
from moocassets.sources import H5PApiResource, MoocApiResource
from moocassets.sources.http import Fetched, LoggerLike
from moocassets.sources.mooc import M4_ENVELOPES, M5_ENVELOPES, M6_ENVELOPES
from moocassets.transforms.payloads import Parsed, h5p, mooc

System = Literal["mooc", "h5p"]
Fetch = Callable[[Any, str, Sequence[int], LoggerLike | None], Fetched[Any]]
"""``fetch(client, course_id, enrolled_user_ids, log)``: the endpoint's payload for one course
(per-learner endpoints use the learners; the others ignore them)."""
Parse = Callable[[str, Any, datetime], Parsed]
"""``parse(course_id, payload, fetched_at)``: rows, rejected records and records seen."""


@dataclass(frozen=True)
class Endpoint:
    """One source endpoint and the table its rows go to."""

    extract: str
    """Name of its extract asset (group ``extract``)."""
    label: str
    """Spec id and route, as messages, rejects and metadata name the endpoint."""
    system: System
    """The resource that serves it: ``keys.MOOC_RESOURCE`` or ``keys.H5P_RESOURCE``."""
    fetch: Fetch
    parse: Parse
    table: schema.TableSpec
    """The rows' table: the extract frame's type and the warehouse detail table."""
    extract_description: str
    table_description: str
    per_learner: bool = False
    """Fetched one learner at a time (the H5P fan-out): needs the course's enrolled learners."""

    @property
    def detail(self) -> str:
        """Name of its warehouse detail-table asset (the table's name)."""
        return self.table.name


def _mooc_export(eid: str, route: str, envelopes: tuple[tuple[str, ...], ...]) -> Fetch:
    def fetch(
        client: MoocApiResource, course_id: str, _learners: Sequence[int], log: LoggerLike | None
    ) -> Fetched[Any]:
        return client.export(eid, route, course_id, envelopes, log=log)

    return fetch


def _h5p_per_learner(eid: str, route: str) -> Fetch:
    def fetch(
        client: H5PApiResource, course_id: str, learners: Sequence[int], log: LoggerLike | None
    ) -> Fetched[Any]:
        return client.per_learner(eid, route, course_id, learners, log=log)

    return fetch


def _enrollments(
    client: MoocApiResource, course_id: str, _learners: Sequence[int], log: LoggerLike | None
) -> Fetched[Any]:
    return client.enrollments(course_id, log=log)


def _dashboards(
    client: H5PApiResource, course_id: str, learners: Sequence[int], log: LoggerLike | None
) -> Fetched[Any]:
    return client.dashboards(course_id, learners, log=log)


ENROLLMENTS = Endpoint(
    extract=keys.ENROLLMENTS_EXTRACT,
    label=mooc.EP_ENROLLMENTS,
    system="mooc",
    fetch=_enrollments,
    parse=mooc.enrollment_rows,
    table=schema.ENROLLMENTS,
    extract_description="Every enrollment of the course (MOOC M1, paged until a short page). "
    "Drives the learner list of the H5P extracts.",
    table_description="Learners enrolled in the course (from MOOC M1).",
)
"""The enrollment list: every other table keeps only the learners it lists."""

ENDPOINTS: tuple[Endpoint, ...] = (
    ENROLLMENTS,
    Endpoint(
        extract="mooc_grades_extract",
        label=mooc.EP_GRADES,
        system="mooc",
        fetch=_mooc_export("M4", "student-grades", M4_ENVELOPES),
        parse=mooc.grade_rows,
        table=schema.MOOC_GRADES,
        extract_description="One grade row per learner (MOOC M4 export; both envelopes "
        "accepted).",
        table_description="Grade and pass status per learner (MOOC M4).",
    ),
    Endpoint(
        extract="mooc_progress_extract",
        label=mooc.EP_PROGRESS,
        system="mooc",
        fetch=_mooc_export("M5", "student-progress", M5_ENVELOPES),
        parse=mooc.progress_rows,
        table=schema.MOOC_PROGRESS,
        extract_description="One progress row per learner (MOOC M5 export; both envelopes "
        "accepted).",
        table_description="Course progress per learner (MOOC M5).",
    ),
    Endpoint(
        extract="mooc_discussions_extract",
        label=mooc.EP_DISCUSSIONS,
        system="mooc",
        fetch=_mooc_export("M6", "student-discussions", M6_ENVELOPES),
        parse=mooc.discussion_rows,
        table=schema.MOOC_DISCUSSIONS,
        extract_description="Forum activity per learner (MOOC M6 export); learners without "
        "activity are absent.",
        table_description="Forum activity per learner (MOOC M6); absent learners had none.",
    ),
    Endpoint(
        extract="h5p_scores_extract",
        label=h5p.EP_SCORES,
        system="h5p",
        fetch=_h5p_per_learner("H1", "scores"),
        parse=h5p.h5p_score_rows,
        table=schema.H5P_SCORES,
        extract_description="H5P content scores of every enrolled learner (H5P H1, one call per "
        "learner, fanned out concurrently). A 404 `no_data` means the learner has no rows.",
        table_description="H5P score per learner and attempted content (H1).",
        per_learner=True,
    ),
    Endpoint(
        extract="video_progress_extract",
        label=h5p.EP_VIDEO,
        system="h5p",
        fetch=_h5p_per_learner("H2", "video-progress"),
        parse=h5p.video_rows,
        table=schema.VIDEO_PROGRESS,
        extract_description="Video progress of every enrolled learner (H5P H2, one call per "
        "learner).",
        table_description="Progress per learner and opened video (H2).",
        per_learner=True,
    ),
    Endpoint(
        extract="dashboard_extract",
        label=h5p.EP_DASHBOARDS,
        system="h5p",
        fetch=_dashboards,
        parse=h5p.dashboard_rows,
        table=schema.DASHBOARD_SUMMARY,
        extract_description="Per-learner dashboard (H5P H3 combined progress; the older H4 "
        "dashboard when H3 fails).",
        table_description="Per-learner dashboard (H3 combined progress, H4 fallback).",
        per_learner=True,
    ),
)
"""Every endpoint whose rows become a table, in lineage order (the enrollments first)."""

RESOURCE_OF: dict[System, str] = {"mooc": keys.MOOC_RESOURCE, "h5p": keys.H5P_RESOURCE}
POOL_OF: dict[System, str] = {"mooc": keys.MOOC_POOL, "h5p": keys.H5P_POOL}


def endpoint(extract: str) -> Endpoint:
    """The endpoint whose extract asset is ``extract``."""
    for ep in ENDPOINTS:
        if ep.extract == extract:
            return ep
    raise KeyError(f"no endpoint with extract asset {extract!r}")
