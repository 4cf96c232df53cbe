"""Warehouse assets (group ``warehouse``): the ten ERD tables, partitioned by ``course_id``.

The detail tables are generated from the endpoint table (:data:`moocassets.endpoints.ENDPOINTS`)
and the summaries from :data:`moocassets.transforms.summaries.SUMMARIES`.

Every asset is written by the ``warehouse_io_manager`` to the table of its name, one course
partition replaced per transaction. Detail tables keep only learners enrolled in the course; the
summaries aggregate their detail table; ``raw_data`` joins everything per learner.
"""


from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from moocassets import keys, schema
from moocassets.assets.features import FEATURE_INPUTS, as_of_values
from moocassets.checks import check_specs, checked_output
from moocassets.endpoints import ENDPOINTS, ENROLLMENTS, Endpoint
from moocassets.partitions import course_partitions
from moocassets.transforms import features, risk, summaries
from moocassets.transforms.enrolled import restrict_to_enrolled

Checked = Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]
"""What a warehouse asset yields: its checked frame, then its check evaluations (checks.py)."""


def _warehouse_kwargs(spec: schema.TableSpec, description: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "partitions_def": course_partitions,
        "group_name": keys.WAREHOUSE_GROUP,
        "io_manager_key": keys.WAREHOUSE_IO,
        "pool": keys.WAREHOUSE_POOL,  # bounds concurrent warehouse writes across runs
        "dagster_type": spec.dagster_type,
        "kinds": {"mysql", "pandas", "table"},
        "owners": ["team:learning-analytics"],
        "description": f"{description}\n\nTable `{spec.name}`; key "
        f"`({', '.join(spec.unique_key)})`.",
        "metadata": {
            keys.PARTITION_EXPR_METADATA: spec.partition_column,
            "dagster/column_schema": spec.table_schema,
            "dagster/table_name": spec.name,
        },
        "check_specs": check_specs(spec),
        "code_version": "1",
    }


@dg.asset(
    ins={"extract": dg.AssetIn(ENROLLMENTS.extract)},
    **_warehouse_kwargs(ENROLLMENTS.table, ENROLLMENTS.table_description),
)
def enrollments(extract: pd.DataFrame) -> Checked:
    frame = ENROLLMENTS.table.coerce_frame(extract)
    yield from checked_output(ENROLLMENTS.table, frame, enrolled=frame,
                              metadata={"learners": dg.MetadataValue.int(len(frame))})


def detail_table(ep: Endpoint) -> dg.AssetsDefinition:
    """The warehouse table of one endpoint: its extract's rows of enrolled learners."""
    spec = ep.table

    @dg.asset(
        ins={"extract": dg.AssetIn(ep.extract), "enrolled": dg.AssetIn(keys.ENROLLMENTS)},
        **_warehouse_kwargs(spec, ep.table_description),
    )
    def _asset(
        context: dg.AssetExecutionContext, extract: pd.DataFrame, enrolled: pd.DataFrame
    ) -> Checked:
        kept, dropped = restrict_to_enrolled(extract, enrolled)
        if len(dropped):
            context.log.warning(
                f"{spec.name}: dropped {len(dropped)} rows of {dropped['user_id'].nunique()} "
                f"learners not enrolled (e.g. user_id {int(dropped['user_id'].iloc[0])})"
            )
        metadata = {
            "rows_not_enrolled_dropped": dg.MetadataValue.int(len(dropped)),
            "learners": dg.MetadataValue.int(int(kept["user_id"].nunique())),
        }
        yield from checked_output(spec, spec.coerce_frame(kept), enrolled=enrolled,
                                  metadata=metadata)

    return _asset


def summary_table(summary: summaries.Summary) -> dg.AssetsDefinition:
    """A summary table: the aggregate of its detail table, checked against it."""
    spec = schema.table_spec(summary.table)

    @dg.asset(
        ins={"detail": dg.AssetIn(summary.detail), "enrolled": dg.AssetIn(keys.ENROLLMENTS)},
        **_warehouse_kwargs(spec, summary.description),
    )
    def _asset(detail: pd.DataFrame, enrolled: pd.DataFrame) -> Checked:
        aggregate = summary.aggregate(detail)
        frame = spec.coerce_frame(aggregate)
        yield from checked_output(spec, frame, enrolled=enrolled, aggregate=aggregate)

    return _asset


RAW_DATA_LINEAGE = dg.TableColumnLineage(
    {
        column: [
            dg.TableColumnDep(asset_key=dg.AssetKey(table), column_name=source)
            for table, source in lineage.sources
        ]
        for column, lineage in features.RAW_DATA_LINEAGE.items()
    }
)
"""The standard ``dagster/column_lineage`` (drawn by Dagster+ and read by catalog tools)."""


_raw_kwargs = _warehouse_kwargs(
    schema.RAW_DATA,
    "One row per learner and course: features, the `is_dropout` label and the dropout risk "
    "(spec/raw-data.md). What teachers and models read.",
)
_raw_kwargs["metadata"] = {
    **_raw_kwargs["metadata"],
    "dagster/column_lineage": RAW_DATA_LINEAGE,
    # the same declaration as a table the open-source UI shows on the asset's page
    "column_lineage": dg.MetadataValue.md(features.lineage_markdown()),
}


@dg.asset(
    ins={
        "learner_features": dg.AssetIn(keys.LEARNER_FEATURES),
        "enrolled": dg.AssetIn(keys.ENROLLMENTS),
        "risk_model": dg.AssetIn(keys.RISK_MODEL),
    },
    # what learner_features derives from, so the lineage shows every table raw_data rests on
    deps=[key for key in FEATURE_INPUTS.values() if key != keys.ENROLLMENTS],
    **_raw_kwargs,
)
def raw_data(
    context: dg.AssetExecutionContext,
    learner_features: pd.DataFrame,
    enrolled: pd.DataFrame,
    risk_model: risk.RiskModel | None,
) -> Checked:
    if risk_model is None:
        context.log.info("no dropout_risk_model materialized yet: scoring with the fallback rule")
        risk_model = risk.fallback_model()
    # the score reads only risk.RISK_INPUT_COLUMNS (never grade/pass, the label or position)
    frame = schema.RAW_DATA.coerce_frame(risk.score_frame(risk_model, learner_features))
    dropout_rate = float(frame["is_dropout"].mean()) if len(frame) else 0.0
    scores = frame["dropout_risk_score"]
    high = risk.RISK_BANDS[-1][1]
    metadata = {
        "learners": dg.MetadataValue.int(len(frame)),
        "dropout_rate": dg.MetadataValue.float(round(dropout_rate, 4)),
        "mean_risk": dg.MetadataValue.float(round(float(scores.mean()), 4) if len(frame)
                                            else 0.0),
        "share_high_risk": dg.MetadataValue.float(
            round(float((scores >= high).mean()), 4) if len(frame) else 0.0
        ),
        "risk_model": dg.MetadataValue.text(risk_model.name),
        "teacher_summary": dg.MetadataValue.md(risk.teacher_summary(frame)),
        "as_of": dg.MetadataValue.text(as_of_values(frame)),
        "dagster/column_lineage": RAW_DATA_LINEAGE,
    }
    yield from checked_output(schema.RAW_DATA, frame, enrolled=enrolled, metadata=metadata)


WAREHOUSE_ASSETS: list[dg.AssetsDefinition] = [
    enrollments,
    *(detail_table(ep) for ep in ENDPOINTS if ep is not ENROLLMENTS),
    *(summary_table(s) for s in summaries.SUMMARIES),
    raw_data,
]

WAREHOUSE_BY_TABLE: dict[str, dg.AssetsDefinition] = {
    a.key.to_user_string(): a for a in WAREHOUSE_ASSETS
}
"""Each warehouse asset by its table's name."""
