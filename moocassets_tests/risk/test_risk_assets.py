"""The risk assets in Dagster against the loopback simulator and MariaDB: raw_data_history
snapshots, the model asset (fallback on thin history, logreg on ended courses) and the scored
raw_data table."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from moocassets.assets import ALL_ASSETS, EXTRACT_ASSETS, FEATURE_ASSETS, WAREHOUSE_ASSETS
from moocassets.io import (
    ExtractStoreIOManager,
    ModelStoreIOManager,
    WarehouseIOManager,
    make_engine,
    write_table,
)
from moocassets.schema import RAW_DATA_HISTORY
from moocassets.simulator import World, WorldConfig, create_app, serve_in_thread
from moocassets.sources import H5PApiResource, MoocApiResource
from moocassets.transforms import risk

pytestmark = pytest.mark.mysql

EMAIL = "risk.test@example.edu"


@dataclass
class Sim:
    root: str
    world: World
    password: str


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    world = World(WorldConfig(courses=2, learners=30, seed=5))
    password = secrets.token_urlsafe(12)
    app = create_app(world, mooc_email=EMAIL, mooc_password=password)
    with serve_in_thread(app) as root:
        yield Sim(root=root, world=world, password=password)


def _resources(sim: Sim, url: str, tmp: Path) -> dict[str, Any]:
    return {
        "mooc": MoocApiResource(base_url=f"{sim.root}/api/custom/v1", email=EMAIL,
                                password=sim.password),
        "h5p": H5PApiResource(base_url=f"{sim.root}/wp-json/mooc/v1"),
        "warehouse_io_manager": WarehouseIOManager(database_url=url),
        "extract_io_manager": ExtractStoreIOManager(base_dir=str(tmp / "files")),
        "model_io_manager": ModelStoreIOManager(base_dir=str(tmp / "models")),
    }


def _config(as_of: datetime, selection: list[str]) -> dict[str, Any]:
    cfg = {"config": {"as_of": as_of.isoformat()}}
    return {"ops": {"learner_features": cfg}} if "learner_features" in selection else {}


def _run(sim: Sim, url: str, tmp: Path, instance: dg.DagsterInstance, selection: list[str],
         partition: str | None, as_of: datetime) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        ALL_ASSETS, selection=selection, partition_key=partition, instance=instance,
        resources=_resources(sim, url, tmp), run_config=_config(as_of, selection),
    )
    assert result.success
    return result


def _sql(url: str, query: str, **params: Any) -> pd.DataFrame:
    with make_engine(url).connect() as conn:
        return pd.read_sql(sa.text(query), conn, params=params)


SNAPSHOT = ["learner_features", "raw_data_history"]  # a snapshot at the configured as_of
LOAD = [a.key.to_user_string() for a in [*EXTRACT_ASSETS, *WAREHOUSE_ASSETS, *FEATURE_ASSETS]
        if a.key.to_user_string() != "raw_data"]


@pytest.fixture(scope="module")
def loaded(
    sim: Sim, module_mysql_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, dg.DagsterInstance]]:
    """Every course: extracts + warehouse tables + one history snapshot (as of now)."""
    tmp = tmp_path_factory.mktemp("risk")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("course_id", list(sim.world.courses))
        for cid in sim.world.courses:
            _run(sim, module_mysql_database_url, tmp, instance, [*LOAD, "raw_data_history"],
                 cid, sim.world.now)
        yield module_mysql_database_url, tmp, instance


def test_thin_history_gives_the_fallback_and_raw_data_is_scored(
    sim: Sim, loaded: tuple[str, Path, dg.DagsterInstance]
) -> None:
    url, tmp, instance = loaded
    model_run = _run(sim, url, tmp, instance, ["dropout_risk_model"], None, sim.world.now)
    model = model_run.output_for_node("dropout_risk_model")
    assert model.kind == "fallback"  # at most one ended course, < 200 learners
    meta = model_run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["model"].value == "fallback-rules-v1"
    assert "fallback" in meta["selection"].value

    cid = next(c for c in sim.world.courses if sim.world.status(c) == "running")
    run = _run(sim, url, tmp, instance, ["raw_data"], cid, sim.world.now)
    raw = _sql(url, "SELECT * FROM raw_data WHERE course_id = :c", c=cid)
    enrolled = _sql(url, "SELECT user_id FROM enrollments WHERE course_id = :c", c=cid)
    assert len(raw) == len(enrolled) > 0
    score = raw["dropout_risk_score"].astype(float)
    assert score.notna().all() and score.between(0, 1).all() and score.nunique() > 1
    assert set(raw["dropout_risk_model"]) == {"fallback-rules-v1"}
    # the score is the documented fallback of the stored features
    expected = risk.fallback_model().predict(raw)
    assert score.to_numpy() == pytest.approx(expected, abs=1e-5)
    idle = raw[raw["days_since_last_activity"].fillna(99) >= 14]
    assert len(idle) and idle["dropout_risk_reasons"].str.contains(
        "no activity for|never active").all()

    mat = next(e.materialization for e in run.get_asset_materialization_events()
               if e.materialization.asset_key == dg.AssetKey("raw_data"))
    md = mat.metadata
    assert md["mean_risk"].value == pytest.approx(score.mean(), abs=1e-4)
    high = float((score >= 0.6).mean())
    assert md["share_high_risk"].value == pytest.approx(high, abs=1e-4)
    assert md["dropout_rate"].value == pytest.approx(raw["is_dropout"].astype(float).mean(),
                                                     abs=1e-4)
    summary = md["teacher_summary"].value
    top_uid = int(raw.sort_values(["dropout_risk_score", "user_id"],
                                  ascending=[False, True])["user_id"].iloc[0])
    assert "| high | ≥ 60% |" in summary and f"| {top_uid} |" in summary


def test_same_as_of_again_is_idempotent(
    sim: Sim, loaded: tuple[str, Path, dg.DagsterInstance]
) -> None:
    url, tmp, instance = loaded
    cid = next(iter(sim.world.courses))
    query = "SELECT * FROM raw_data_history WHERE course_id = :c ORDER BY user_id, as_of"
    before = _sql(url, query, c=cid)
    assert len(before) > 0 and before["as_of"].nunique() == 1
    _run(sim, url, tmp, instance, SNAPSHOT, cid, sim.world.now)
    after = _sql(url, query, c=cid)
    pd.testing.assert_frame_equal(before.drop(columns=["id"]), after.drop(columns=["id"]))


def test_history_keeps_one_snapshot_per_as_of(
    sim: Sim, loaded: tuple[str, Path, dg.DagsterInstance]
) -> None:
    """Needs the IO manager's ``replace_scope`` (DELETE only this course AT these as_of)."""
    url, tmp, instance = loaded
    cid = next(c for c in sim.world.courses if sim.world.status(c) == "running")
    other = next(c for c in sim.world.courses if c != cid)
    other_before = len(_sql(url, "SELECT id FROM raw_data_history WHERE course_id = :c", c=other))
    earlier = sim.world.now - timedelta(days=7)
    _run(sim, url, tmp, instance, SNAPSHOT, cid, earlier)
    _run(sim, url, tmp, instance, SNAPSHOT, cid, sim.world.now)
    _run(sim, url, tmp, instance, SNAPSHOT, cid, earlier)  # again: replaces only it
    rows = _sql(url, "SELECT user_id, as_of FROM raw_data_history WHERE course_id = :c", c=cid)
    counts = rows.groupby("as_of").size()
    assert len(counts) == 2
    assert not rows.duplicated().any()
    assert len(_sql(url, "SELECT id FROM raw_data_history WHERE course_id = :c",
                    c=other)) == other_before


def test_model_asset_learns_from_ended_courses_in_the_table(
    sim: Sim, loaded: tuple[str, Path, dg.DagsterInstance],
    replayed: tuple[World, pd.DataFrame, pd.DataFrame],
) -> None:
    url, tmp, instance = loaded
    _, history, _ = replayed
    courses = sorted(history["course_id"].unique())
    instance.add_dynamic_partitions("course_id", courses)
    write_table(make_engine(url), RAW_DATA_HISTORY, RAW_DATA_HISTORY.coerce_frame(history),
                courses)
    run = _run(sim, url, tmp, instance, ["dropout_risk_model"], None, sim.world.now)
    model = run.output_for_node("dropout_risk_model")
    assert model.kind == "logreg"
    assert set(courses) <= set(model.training_courses)
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["n_training_courses"].value == len(model.training_courses)
    assert meta["n_learners"].value == model.n_learners >= 200
    for key in ("auc_p25", "auc_p50", "auc_p75", "brier_p50", "rule_auc_p50",
                "rule_days_auc_p50"):
        assert isinstance(meta[key].value, float), key
    assert meta["auc_p50"].value > meta["rule_auc_p50"].value

    cid = next(iter(sim.world.courses))
    _run(sim, url, tmp, instance, ["raw_data"], cid, sim.world.now)
    raw = _sql(url, "SELECT dropout_risk_model, dropout_risk_score FROM raw_data "
                    "WHERE course_id = :c", c=cid)
    assert set(raw["dropout_risk_model"]) == {model.name[:64]}
    assert model.name.startswith("logreg-v1 (")
