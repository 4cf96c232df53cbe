"""``learner_features`` (group ``features``): every learner's features and label, once per refresh.

``raw_data`` (which adds the risk score) and ``raw_data_history`` (which stores the snapshot)
both read this one frame, so they carry the same ``as_of`` and the same feature values whichever
executor runs them: in one process, in one process per step, or on different hosts. The
evaluation time is fixed here, when this step runs (after the course's extracts were fetched),
or taken from the run configuration (replaying a past moment). The frame is kept by the
``extract_io_manager`` (one stored frame per course, like the extracts).
"""


from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from moocassets import keys, schema
from moocassets.assets.common import course_keys, split_by_course
from moocassets.partitions import course_partitions
from moocassets.transforms import features

FEATURE_INPUTS = features.INPUT_TABLES
"""``features.build_raw_data`` argument → the asset whose frame it receives."""


class FeaturesConfig(dg.Config):
    """Run configuration of ``learner_features``."""

    dropout_inactivity_days: int = features.DEFAULT_INACTIVITY_DAYS
    """Days without activity after which a learner who has not passed is a dropout."""
    as_of: str | None = None
    """Evaluate as of this ISO-8601 instant instead of now (replaying a course week by week)."""


def evaluation_time(as_of: str | None) -> datetime:
    """``as_of`` (ISO-8601, naive = UTC) as an aware UTC datetime; now when it is None."""
    if as_of:
        ts = pd.Timestamp(as_of)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.to_pydatetime()
    return datetime.now(UTC)


def build_features_for_courses(
    course_ids: list[str],
    inputs: dict[str, pd.DataFrame],
    *,
    as_of: datetime,
    inactivity_days: int,
) -> pd.DataFrame:
    """``features.build_raw_data`` for each course of a (possibly multi-course) step, as the
    ``learner_features`` columns (no score columns)."""
    per_course = {name: split_by_course(frame, course_ids) for name, frame in inputs.items()}
    frames = [
        features.build_raw_data(
            **{name: per_course[name][course_id] for name in inputs},
            evaluation_time=as_of,
            inactivity_days=inactivity_days,
        )
        for course_id in course_ids
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.LEARNER_FEATURES.empty_frame()
    return schema.LEARNER_FEATURES.coerce_frame(pd.concat(frames, ignore_index=True))


def as_of_values(frame: pd.DataFrame) -> str:
    """The distinct ``as_of`` instants of a frame, for metadata ("none" when empty)."""
    return ", ".join(sorted({t.isoformat() for t in frame["as_of"].dropna()})) or "none"


@dg.asset(
    name=keys.LEARNER_FEATURES,
    ins={arg: dg.AssetIn(key) for arg, key in FEATURE_INPUTS.items()},
    partitions_def=course_partitions,
    group_name=keys.FEATURES_GROUP,
    io_manager_key=keys.EXTRACT_IO,
    dagster_type=schema.LEARNER_FEATURES.dagster_type,
    kinds={"python", "pandas"},
    owners=["team:learning-analytics"],
    description=(
        "Every enrolled learner's features and `is_dropout` label as of one instant "
        "(spec/raw-data.md): computed once per course refresh and read by both `raw_data` "
        "(which adds the risk score) and `raw_data_history` (which keeps the snapshot), so the "
        "two agree on `as_of` wherever their steps run."
    ),
    code_version="1",
)
def learner_features(
    context: dg.AssetExecutionContext, config: FeaturesConfig, **inputs: pd.DataFrame
) -> pd.DataFrame:
    evaluated_at = evaluation_time(config.as_of)
    frame = build_features_for_courses(
        course_keys(context),
        {name: inputs[name] for name in FEATURE_INPUTS},
        as_of=evaluated_at,
        inactivity_days=config.dropout_inactivity_days,
    )
    context.add_output_metadata(
        {
            "learners": dg.MetadataValue.int(len(frame)),
            "evaluated_at": dg.MetadataValue.text(evaluated_at.isoformat()),
            "as_of": dg.MetadataValue.text(as_of_values(frame)),
            "dropout_rate": dg.MetadataValue.float(
                round(float(frame["is_dropout"].mean()), 4) if len(frame) else 0.0
            ),
        }
    )
    return frame


FEATURE_ASSETS: list[dg.AssetsDefinition] = [learner_features]
