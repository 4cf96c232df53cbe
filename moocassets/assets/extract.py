"""Extract assets (group ``extract``): one per source endpoint, partitioned by ``course_id``.

Generated from the endpoint table (:data:`moocassets.endpoints.ENDPOINTS`), plus
``mooc_course_extract`` (the course's name and dates). Each asset calls its source resource,
normalizes the payload with the endpoint's pure parser (:mod:`moocassets.transforms.payloads`),
applies the reject threshold and returns a typed frame.
Extract frames are kept by the ``extract_io_manager`` (one pickle per course under Dagster's
storage, ``moocassets.io.extract_store``); the warehouse assets turn them into the ERD tables.
"""


from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from moocassets import keys, schema
from moocassets.assets.common import (
    COURSE_FRAME_TYPE,
    course_keys,
    split_by_course,
)
from moocassets.endpoints import ENDPOINTS, Endpoint
from moocassets.execution import h5p_queue_tags
from moocassets.partitions import course_partitions
from moocassets.sources import FetchStats, H5PApiResource, MoocApiResource
from moocassets.transforms import payloads


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
        "group_name": keys.EXTRACT_GROUP,
        "io_manager_key": keys.EXTRACT_IO,
        "pool": pool,
        "kinds": {"python", "pandas"},
        "owners": ["team:learning-analytics"],
        "description": description,
        **({"dagster_type": spec.dagster_type} if spec is not None else {}),
        "code_version": "1",
    }


@dg.asset(
    name=keys.COURSE_EXTRACT,
    **_extract_kwargs(
        "Course name, start and end (MOOC M2 `/course-details/display-name/`). Start and end "
        "decide whether a course has ended and fix `raw_data.as_of` for ended courses.",
        keys.MOOC_POOL,
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
            keys.COURSE_ENDS_METADATA: dg.MetadataValue.json(
                {
                    row.course_id: (None if pd.isna(row.end) else row.end.isoformat())
                    for row in frame.itertuples()
                }
            ),
        }
    )
    return frame


def _mooc_extract(ep: Endpoint) -> dg.AssetsDefinition:
    @dg.asset(name=ep.extract, **_extract_kwargs(ep.extract_description, keys.MOOC_POOL, ep.table))
    def _asset(
        context: dg.AssetExecutionContext, config: ExtractConfig, mooc: MoocApiResource
    ) -> pd.DataFrame:
        parsed, stats = [], []
        for course_id in course_keys(context):
            fetched = ep.fetch(mooc, course_id, (), context.log)
            stats.append(fetched.stats)
            parsed.append(ep.parse(course_id, fetched.data, _now()))
        return _finish(context, ep.label, parsed, _merge_stats(stats), config, ep.table)

    return _asset


def _h5p_extract(ep: Endpoint) -> dg.AssetsDefinition:
    @dg.asset(
        name=ep.extract,
        ins={"enrollments": dg.AssetIn(keys.ENROLLMENTS_EXTRACT)},
        # on Celery, the H5P queue: its workers bound the load on the H5P server
        op_tags=h5p_queue_tags(),
        **_extract_kwargs(ep.extract_description, keys.H5P_POOL, ep.table),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: ExtractConfig,
        h5p: H5PApiResource,
        enrollments: pd.DataFrame,
    ) -> pd.DataFrame:
        learners = split_by_course(enrollments, course_keys(context))

        def fetch_course(course_id: str) -> Any:
            enrolled = learners[course_id]
            user_ids = sorted(int(u) for u in enrolled["user_id"].dropna().unique())
            context.log.info(f"{ep.label}: {course_id}: fetching {len(user_ids)} learners")
            return ep.fetch(h5p, course_id, user_ids, context.log)

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
                parsed.append(ep.parse(course_id, fetched.data, _now()))
        return _finish(context, ep.label, parsed, _merge_stats(stats), config, ep.table)

    return _asset


def extract_asset(ep: Endpoint) -> dg.AssetsDefinition:
    """The extract asset of one endpoint (see :mod:`moocassets.endpoints`)."""
    return _h5p_extract(ep) if ep.per_learner else _mooc_extract(ep)


EXTRACT_ASSETS: list[dg.AssetsDefinition] = [
    mooc_course_extract,
    *(extract_asset(ep) for ep in ENDPOINTS),
]

EXTRACT_BY_NAME: dict[str, dg.AssetsDefinition] = {
    a.key.to_user_string(): a for a in EXTRACT_ASSETS
}
"""Each extract asset by its name."""
