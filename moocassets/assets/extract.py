"""Extract assets (group ``extract``): one per source family, partitioned by ``course_id``.

Each asset calls a source resource, normalizes the payload with a pure transform
(:mod:`moocassets.transforms.payloads`), applies the reject threshold and returns a typed frame.
Extract frames are kept by the ``extract_io_manager`` (one pickle per course under Dagster's
storage, ``moocassets.io.extract_store``); the warehouse assets turn them into the ERD tables.
"""


from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from moocassets import schema
from moocassets.assets.common import (
    COURSE_FRAME_TYPE,
    course_keys,
    split_by_course,
)
from moocassets.execution import h5p_queue_tags
from moocassets.partitions import course_partitions
from moocassets.sources import FetchStats, H5PApiResource, MoocApiResource
from moocassets.transforms import payloads

EXTRACT_GROUP = "extract"
EXTRACT_IO = "extract_io_manager"
MOOC_POOL = "mooc_api"
H5P_POOL = "h5p_api"


class ExtractConfig(dg.Config):
    """Run configuration shared by the extract assets."""

    max_reject_share: float = 0.01
    """Fail the extract when more than this share of records is rejected (default 1 %)."""


class ExtractRejectError(Exception):
    """Too many records of one endpoint failed validation."""


def _stats_metadata(stats: FetchStats) -> dict[str, Any]:
    """Numeric request statistics, so the UI plots them across materializations."""
    return dict(stats.as_metadata())


def _merge_stats(items: Sequence[FetchStats]) -> FetchStats:
    total = FetchStats()
    for s in items:
        total = total.merge(s)
    return total


def _finish(
    context: dg.AssetExecutionContext,
    endpoint: str,
    parsed_by_course: list[payloads.Parsed],
    stats: FetchStats,
    config: ExtractConfig,
    spec: schema.TableSpec,
) -> pd.DataFrame:
    """Apply the reject threshold, attach metadata and return the combined typed frame."""
    seen = sum(p.seen for p in parsed_by_course)
    rejects = [r for p in parsed_by_course for r in p.rejects]
    share = (len(rejects) / seen) if seen else 0.0
    samples = [f"{r.course_id} {r.record_ref}: {r.reason}" for r in rejects[:10]]
    if rejects:
        context.log.warning(
            f"{endpoint}: rejected {len(rejects)} of {seen} records ({share:.2%}); e.g. "
            + "; ".join(samples[:3])
        )
    if share > config.max_reject_share:
        raise ExtractRejectError(
            f"{endpoint}: {len(rejects)} of {seen} records rejected ({share:.2%} > allowed "
            f"{config.max_reject_share:.2%}) for course(s) "
            f"{sorted({r.course_id for r in rejects})}; samples: " + "; ".join(samples)
        )
    frames = [p.frame for p in parsed_by_course if len(p.frame)]
    frame = (
        spec.coerce_frame(pd.concat(frames, ignore_index=True)) if frames else spec.empty_frame()
    )
    context.add_output_metadata(
        {
            **_stats_metadata(stats),
            "records_seen": dg.MetadataValue.int(seen),
            "records_rejected": dg.MetadataValue.int(len(rejects)),
            "reject_share": dg.MetadataValue.float(round(share, 6)),
            "rows": dg.MetadataValue.int(len(frame)),
            "learners": dg.MetadataValue.int(
                int(frame["user_id"].nunique()) if "user_id" in frame else 0
            ),
            **(
                {"reject_samples": dg.MetadataValue.md("\n".join(f"- {s}" for s in samples))}
                if samples
                else {}
            ),
        }
    )
    return frame


def _now() -> datetime:
    return datetime.now(UTC)


def _extract_kwargs(description: str, pool: str, spec: schema.TableSpec | None) -> dict[str, Any]:
    return {
        "partitions_def": course_partitions,
        "group_name": EXTRACT_GROUP,
        "io_manager_key": EXTRACT_IO,
        "pool": pool,
        "kinds": {"python", "pandas"},
        "owners": ["team:learning-analytics"],
        "description": description,
        **({"dagster_type": spec.dagster_type} if spec is not None else {}),
        "code_version": "1",
    }


@dg.asset(
    **_extract_kwargs(
        "Course name, start and end (MOOC M2 `/course-details/display-name/`). Start and end "
        "decide whether a course has ended and fix `raw_data.as_of` for ended courses.",
        MOOC_POOL,
        None,
    ),
    dagster_type=COURSE_FRAME_TYPE,
)
def mooc_course_extract(
    context: dg.AssetExecutionContext, mooc: MoocApiResource
) -> pd.DataFrame:
    frames, stats = [], []
    for course_id in course_keys(context):
        fetched = mooc.course_details(course_id, log=context.log)
        stats.append(fetched.stats)
        frames.append(payloads.course_frame(course_id, fetched.data))
    frame = pd.concat(frames, ignore_index=True)
    context.add_output_metadata(
        {
            **_stats_metadata(_merge_stats(stats)),
            "courses": dg.MetadataValue.md(frame.astype(str).to_markdown(index=False)),
            # read by the automation conditions: an ended course's data is final
            "course_ends": dg.MetadataValue.json(
                {
                    row.course_id: (None if pd.isna(row.end) else row.end.isoformat())
                    for row in frame.itertuples()
                }
            ),
        }
    )
    return frame


def _mooc_extract(
    name: str,
    endpoint: str,
    description: str,
    spec: schema.TableSpec,
    fetch: Callable[[MoocApiResource, str, Any], Any],
    parse: Callable[[str, Any, datetime], payloads.Parsed],
) -> dg.AssetsDefinition:
    @dg.asset(name=name, **_extract_kwargs(description, MOOC_POOL, spec))
    def _asset(
        context: dg.AssetExecutionContext, config: ExtractConfig, mooc: MoocApiResource
    ) -> pd.DataFrame:
        parsed, stats = [], []
        for course_id in course_keys(context):
            fetched = fetch(mooc, course_id, context.log)
            stats.append(fetched.stats)
            parsed.append(parse(course_id, fetched.data, _now()))
        return _finish(context, endpoint, parsed, _merge_stats(stats), config, spec)

    return _asset


mooc_enrollments_extract = _mooc_extract(
    "mooc_enrollments_extract",
    "M1 course-enrollments-attributes",
    "Every enrollment of the course (MOOC M1, paged until a short page). Drives the learner "
    "list of the H5P extracts.",
    schema.ENROLLMENTS,
    lambda m, c, log: m.enrollments(c, log=log),
    payloads.enrollment_rows,
)
mooc_grades_extract = _mooc_extract(
    "mooc_grades_extract",
    "M4 export/student-grades",
    "One grade row per learner (MOOC M4 export; both envelopes accepted).",
    schema.MOOC_GRADES,
    lambda m, c, log: m.grades(c, log=log),
    payloads.grade_rows,
)
mooc_progress_extract = _mooc_extract(
    "mooc_progress_extract",
    "M5 export/student-progress",
    "One progress row per learner (MOOC M5 export; both envelopes accepted).",
    schema.MOOC_PROGRESS,
    lambda m, c, log: m.progress(c, log=log),
    payloads.progress_rows,
)
mooc_discussions_extract = _mooc_extract(
    "mooc_discussions_extract",
    "M6 export/student-discussions",
    "Forum activity per learner (MOOC M6 export); learners without activity are absent.",
    schema.MOOC_DISCUSSIONS,
    lambda m, c, log: m.discussions(c, log=log),
    payloads.discussion_rows,
)


def _h5p_extract(
    name: str,
    endpoint: str,
    description: str,
    spec: schema.TableSpec,
    fetch: Callable[[H5PApiResource, str, list[int], Any], Any],
    parse: Callable[[str, Any, datetime], payloads.Parsed],
) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        ins={"mooc_enrollments_extract": dg.AssetIn()},
        # on Celery, the H5P queue: its workers bound the load on the H5P server
        op_tags=h5p_queue_tags(),
        **_extract_kwargs(description, H5P_POOL, spec),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: ExtractConfig,
        h5p: H5PApiResource,
        mooc_enrollments_extract: pd.DataFrame,
    ) -> pd.DataFrame:
        learners = split_by_course(mooc_enrollments_extract, course_keys(context))

        def fetch_course(course_id: str) -> Any:
            enrolled = learners[course_id]
            user_ids = sorted(int(u) for u in enrolled["user_id"].dropna().unique())
            context.log.info(f"{endpoint}: {course_id}: fetching {len(user_ids)} learners")
            return fetch(h5p, course_id, user_ids, context.log)

        parsed, stats = [], []
        # Several courses (a ranged run): the next course's fan-out runs while this thread
        # parses the previous one's answers, so parsing hides behind the network wait.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="h5p-prefetch") as prefetch:
            courses = list(learners)
            pending = [prefetch.submit(fetch_course, c) for c in courses[:1]]
            for i, course_id in enumerate(courses):
                fetched = pending.pop().result()
                if i + 1 < len(courses):
                    pending.append(prefetch.submit(fetch_course, courses[i + 1]))
                stats.append(fetched.stats)
                parsed.append(parse(course_id, fetched.data, _now()))
        return _finish(context, endpoint, parsed, _merge_stats(stats), config, spec)

    return _asset


h5p_scores_extract = _h5p_extract(
    "h5p_scores_extract",
    "H1 scores",
    "H5P content scores of every enrolled learner (H5P H1, one call per learner, fanned out "
    "concurrently). A 404 `no_data` means the learner has no rows.",
    schema.H5P_SCORES,
    lambda h, c, u, log: h.scores(c, u, log=log),
    payloads.h5p_score_rows,
)
video_progress_extract = _h5p_extract(
    "video_progress_extract",
    "H2 video-progress",
    "Video progress of every enrolled learner (H5P H2, one call per learner).",
    schema.VIDEO_PROGRESS,
    lambda h, c, u, log: h.video_progress(c, u, log=log),
    payloads.video_rows,
)
dashboard_extract = _h5p_extract(
    "dashboard_extract",
    "H3 combined-progress (H4 dashboard fallback)",
    "Per-learner dashboard (H5P H3 combined progress; the older H4 dashboard when H3 fails).",
    schema.DASHBOARD_SUMMARY,
    lambda h, c, u, log: h.dashboards(c, u, log=log),
    payloads.dashboard_rows,
)

EXTRACT_ASSETS: list[dg.AssetsDefinition] = [
    mooc_course_extract,
    mooc_enrollments_extract,
    mooc_grades_extract,
    mooc_progress_extract,
    mooc_discussions_extract,
    h5p_scores_extract,
    video_progress_extract,
    dashboard_extract,
]
