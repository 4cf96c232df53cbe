"""Risk assets: ``raw_data_history`` (snapshots) and ``dropout_risk_model`` (the trained score).

Cycle-free: ``raw_data_history`` and ``raw_data`` both read ``learner_features`` (the features
and label of one refresh, computed once), ``dropout_risk_model`` reads all of
``raw_data_history``, and ``raw_data`` reads the model. The snapshot and ``raw_data`` therefore
have the same rows and ``as_of`` wherever their steps run. See docs/RISK.md.

* ``raw_data_history`` (partitioned by course, group ``warehouse``): the feature + label rows as of
  ``as_of`` (``learner_features``' run config, default now), stored in table ``raw_data_history``
  with unique key ``(course_id, as_of, user_id)``. Each materialization adds (or, for the same
  ``as_of``, replaces) one snapshot per course: the asset's definition metadata
  ``replace_scope: ["as_of"]`` asks the warehouse IO manager to delete only this course's rows at
  the ``as_of`` values being written, not the whole partition.
* ``dropout_risk_model`` (unpartitioned, group ``risk``): trains on every ended course in the
  history (:func:`moocassets.transforms.risk.select_model`) and reports its quality on held-out
  courses; pickled by the ``model_io_manager`` (``moocassets.io.model_store``).
"""


from dataclasses import replace
from typing import Any

import dagster as dg
import pandas as pd

from moocassets import keys, schema
from moocassets.assets.features import as_of_values
from moocassets.partitions import course_partitions
from moocassets.transforms import risk

RAW_DATA_HISTORY = schema.RAW_DATA_HISTORY


@dg.asset(
    name=RAW_DATA_HISTORY.name,
    ins={"learner_features": dg.AssetIn(keys.LEARNER_FEATURES)},
    partitions_def=course_partitions,
    group_name=keys.WAREHOUSE_GROUP,
    io_manager_key=keys.WAREHOUSE_IO,
    pool=keys.WAREHOUSE_POOL,
    dagster_type=RAW_DATA_HISTORY.dagster_type,
    kinds={"mysql", "pandas", "table"},
    owners=["team:learning-analytics"],
    description=(
        "Snapshots of every learner's raw_data features and is_dropout label as of `as_of` "
        "(one per materialization; the same as_of again replaces that snapshot only). The "
        "training data of `dropout_risk_model`.\n\nTable `raw_data_history`; key "
        f"`({', '.join(RAW_DATA_HISTORY.unique_key)})`."
    ),
    metadata={
        keys.PARTITION_EXPR_METADATA: RAW_DATA_HISTORY.partition_column,
        keys.REPLACE_SCOPE_METADATA: ["as_of"],
        "dagster/column_schema": RAW_DATA_HISTORY.table_schema,
        "dagster/table_name": RAW_DATA_HISTORY.name,
    },
    code_version="1",
)
def raw_data_history(
    context: dg.AssetExecutionContext, learner_features: pd.DataFrame
) -> pd.DataFrame:
    out = RAW_DATA_HISTORY.coerce_frame(learner_features)
    context.add_output_metadata(
        {
            "learners": dg.MetadataValue.int(len(out)),
            "dropout_rate": dg.MetadataValue.float(
                round(float(out["is_dropout"].mean()), 4) if len(out) else 0.0
            ),
            "snapshot_as_of": dg.MetadataValue.text(as_of_values(out)),
            "course_ended": dg.MetadataValue.bool(
                bool(len(out)) and bool((out["course_elapsed_fraction"] >= 1.0).all())
            ),
        }
    )
    return out


def _model_metadata(model: risk.RiskModel, why: str) -> dict[str, Any]:
    quality = {k: dg.MetadataValue.float(v) for k, v in model.quality.items()}
    weights = "\n".join(
        f"| {f} | {w:+.3f} |" for f, w in zip(model.features, model.coef, strict=True) if w
    )
    return {
        "model": dg.MetadataValue.text(model.name),
        "kind": dg.MetadataValue.text(model.kind),
        "model_version": dg.MetadataValue.int(model.version),
        "features": dg.MetadataValue.json(list(model.features)),
        "training_courses": dg.MetadataValue.json(list(model.training_courses)),
        "n_training_courses": dg.MetadataValue.int(len(model.training_courses)),
        "n_rows": dg.MetadataValue.int(model.n_rows),
        "n_learners": dg.MetadataValue.int(model.n_learners),
        "selection": dg.MetadataValue.text(why),
        "weights": dg.MetadataValue.md(
            "| feature | weight (log-odds per SD; fallback: per unit) |\n|---|---:|\n" + weights
        ),
        **quality,
    }


@dg.asset(
    ins={"history": dg.AssetIn(RAW_DATA_HISTORY.name)},
    name=keys.RISK_MODEL,
    group_name=keys.RISK_GROUP,
    io_manager_key=keys.MODEL_IO,
    kinds={"python", "scikitlearn"},
    owners=["team:learning-analytics"],
    description=(
        "The dropout risk model: a logistic regression on standardized, leakage-free features "
        "trained on the learners of ENDED courses in `raw_data_history` (target: is_dropout at "
        "the course end), or the documented fallback rule while there are fewer than "
        f"{risk.MIN_ENDED_COURSES} ended courses or {risk.MIN_LABELLED_LEARNERS} labelled "
        "learners. Metadata: AUC and Brier at 25/50/75 % of the course on held-out courses "
        "(grouped CV), next to the rule 'inactive ≥ 7 days'. See docs/RISK.md."
    ),
    code_version="1",
)
def dropout_risk_model(
    context: dg.AssetExecutionContext, history: pd.DataFrame
) -> risk.RiskModel:
    model, why = risk.select_model(history)
    context.log.info(f"dropout_risk_model: {model.name}: {why}")
    if model.kind == "logreg":
        evaluation = risk.evaluate_grouped(history)
    else:
        evaluation = risk.evaluate_model(model, history)
    quality = risk.quality_metadata(evaluation)
    model = _with_quality(model, quality)
    context.add_output_metadata(
        {
            **_model_metadata(model, why),
            "evaluated_courses": dg.MetadataValue.int(int(evaluation["courses"])),
            "evaluation": dg.MetadataValue.text(
                "grouped CV by course" if evaluation["folds"] else "fixed model on ended courses"
            ),
        }
    )
    return model


def _with_quality(model: risk.RiskModel, quality: dict[str, float]) -> risk.RiskModel:
    return replace(model, quality=dict(quality))


RISK_ASSETS: list[dg.AssetsDefinition] = [raw_data_history, dropout_risk_model]
