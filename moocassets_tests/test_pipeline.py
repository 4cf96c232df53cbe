"""One full materialization of every asset for a course: simulator on a loopback port → MariaDB.

Row counts and key values are checked against what the simulator served, read independently of the
project's clients (plain httpx against the simulator's routes).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from moocassets.assets import ALL_ASSETS
from moocassets.backfill import RANGE_END_TAG, RANGE_START_TAG, run_backfill
from moocassets.io import (
    ExtractStoreIOManager,
    ModelStoreIOManager,
    WarehouseIOManager,
    make_engine,
)
from moocassets.schema import WAREHOUSE_TABLES, table_spec
from moocassets.simulator import World, WorldConfig, create_app, serve_in_thread
from moocassets.sources import H5PApiResource, MoocApiResource

pytestmark = pytest.mark.mysql

EMAIL = "pipeline.test@example.edu"
TRICKY_COURSE = "course-v1:O'Reilly+X+1"


@dataclass
class Sim:
    root: str
    world: World
    password: str

    def mooc(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.root}/api/custom/v1{path}", cookies=self.cookies, timeout=30)

    @property
    def cookies(self) -> dict[str, str]:
        return {"sessionid": "pipeline-test-session"}


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    world = World(WorldConfig(courses=2, learners=40, seed=11))
    world.add_course(
        TRICKY_COURSE, display_name="O'Reilly: Tricky ids", learners=15,
        start=world.now - timedelta(days=21),
    )
    password = secrets.token_urlsafe(12)
    app = create_app(
        world, mooc_email=EMAIL, mooc_password=password, session_ids=["pipeline-test-session"]
    )
    with serve_in_thread(app) as root:
        yield Sim(root=root, world=world, password=password)


def _resources(sim: Sim, database_url: str, tmp_path: Path) -> dict[str, object]:
    return {
        "mooc": MoocApiResource(
            base_url=f"{sim.root}/api/custom/v1", email=EMAIL, password=sim.password
        ),
        "h5p": H5PApiResource(base_url=f"{sim.root}/wp-json/mooc/v1"),
        "warehouse_io_manager": WarehouseIOManager(database_url=database_url),
        "extract_io_manager": ExtractStoreIOManager(base_dir=str(tmp_path / "extracts")),
        "model_io_manager": ModelStoreIOManager(base_dir=str(tmp_path / "models")),
    }


def _materialize(sim: Sim, database_url: str, tmp_path: Path, course_id: str,
                 instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    as_of = {"config": {"as_of": sim.world.now.isoformat()}}
    return dg.materialize(
        ALL_ASSETS,
        # every course-partitioned asset; the (unpartitioned) model is trained separately, and
        # raw_data scores with the fallback rule until it exists
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets("dropout_risk_model"),
        resources=_resources(sim, database_url, tmp_path),
        partition_key=course_id,
        instance=instance,
        run_config={"ops": {"learner_features": as_of}},
    )


def _table(database_url: str, name: str, course_id: str) -> pd.DataFrame:
    with make_engine(database_url).connect() as conn:
        return pd.read_sql(
            sa.text(f"SELECT * FROM `{name}` WHERE course_id = :c"), conn, params={"c": course_id}
        )


@pytest.fixture(scope="module")
def materialized(
    sim: Sim, module_mysql_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dg.DagsterInstance, Path]]:
    tmp = tmp_path_factory.mktemp("pipeline")
    course_ids = list(sim.world.courses)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("course_id", course_ids)
        for course_id in course_ids:
            result = _materialize(sim, module_mysql_database_url, tmp, course_id, instance)
            assert result.success
        yield module_mysql_database_url, instance, tmp


def test_every_table_is_filled_for_every_course(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    url, _, _ = materialized
    for course_id in sim.world.courses:
        for spec in WAREHOUSE_TABLES:
            frame = _table(url, spec.name, course_id)
            if spec.name == "mooc_discussions":
                continue  # sparse by nature: may legitimately be empty for a small course
            assert len(frame) > 0, f"{spec.name} is empty for {course_id}"


def test_rows_match_what_the_simulator_served(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    url, _, _ = materialized
    course_id = next(iter(sim.world.courses))
    enc = quote(course_id, safe="")

    served_enrollments = []
    offset = 0
    while True:
        page = sim.mooc(f"/course-enrollments-attributes/{enc}/?limit=200&offset={offset}").json()
        items = _unwrap_m1(page)
        served_enrollments += items
        if len(items) < 200:
            break
        offset += 200
    enrolled_ids = {int(i.get("user_id", i.get("id"))) for i in served_enrollments}

    enrollments = _table(url, "enrollments", course_id)
    assert set(enrollments["user_id"]) == enrolled_ids
    raw = _table(url, "raw_data", course_id)
    assert set(raw["user_id"]) == enrolled_ids
    assert len(raw) == len(enrolled_ids)

    grades_payload = sim.mooc(f"/export/student-grades/{enc}/").json()
    rows = grades_payload.get("students") or grades_payload["grade_data"]["grade_table"]
    served = {int(r["user_id"]): float(r["grade_percentage"]) for r in rows}
    stored = _table(url, "mooc_grades", course_id).set_index("user_id")["grade_percentage"]
    for user_id, pct in served.items():
        if user_id in enrolled_ids:
            assert float(stored[user_id]) == pytest.approx(pct, abs=0.005)
    raw_grades = raw.set_index("user_id")["mooc_grade_percentage"]
    some = next(iter(served))
    assert float(raw_grades[some]) == pytest.approx(served[some], abs=0.005)

    # H5P scores: one row per learner and attempted content, as H1 served them
    h5p = _table(url, "h5p_scores", course_id)
    expected_rows = 0
    for user_id in sorted(enrolled_ids)[:10]:
        r = httpx.get(f"{sim.root}/wp-json/mooc/v1/scores/{user_id}/{course_id}", timeout=30)
        n = len(r.json()["scores"]) if r.status_code == 200 else 0
        expected_rows += n
        assert (h5p["user_id"] == user_id).sum() == n
    assert expected_rows > 0
    summary = _table(url, "h5p_scores_summary", course_id).set_index("user_id")
    detail_counts = h5p.groupby("user_id").size()
    for user_id, n in detail_counts.items():
        assert int(summary.loc[user_id, "total_contents"]) == n


def test_raw_data_is_scored_and_history_keeps_the_snapshot(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    url, _, _ = materialized
    course_id = next(iter(sim.world.courses))
    raw = _table(url, "raw_data", course_id)
    assert raw["dropout_risk_score"].between(0, 1).all()
    assert set(raw["dropout_risk_model"]) == {"fallback-rules-v1"}
    history = _table(url, "raw_data_history", course_id)
    assert len(history) == len(raw)
    assert history["as_of"].nunique() == 1


def test_label_varies_and_follows_the_spec(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    url, _, _ = materialized
    raw = pd.concat([_table(url, "raw_data", c) for c in sim.world.courses])
    assert raw["is_dropout"].nunique() == 2, "a label that never varies is a defect"
    passed = raw[raw["mooc_is_passed"] == 1]
    assert not passed["is_dropout"].astype(bool).any()


def test_rematerializing_a_partition_gives_identical_rows(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    url, instance, tmp = materialized
    course_id = TRICKY_COURSE  # contains ', + and :
    before = {s.name: _table(url, s.name, course_id) for s in WAREHOUSE_TABLES}
    assert len(before["enrollments"]) > 0
    assert _materialize(sim, url, tmp, course_id, instance).success
    for spec in WAREHOUSE_TABLES:
        after = _table(url, spec.name, course_id)
        drop = [c for c in ("id", "fetched_at") if c in after.columns]
        key = list(spec.unique_key)
        a = before[spec.name].drop(columns=drop).sort_values(key).reset_index(drop=True)
        b = after.drop(columns=drop).sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    # and other courses were not touched by this partition's replace
    other = next(c for c in sim.world.courses if c != course_id)
    assert len(_table(url, "enrollments", other)) > 0


def test_downstream_tables_rebuilt_from_mysql_equal_the_full_run(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    """The full run hands each written partition to its downstream steps from memory; rebuilding
    the downstream tables from what MySQL stores must give the same rows."""
    url, instance, tmp = materialized
    course_id = TRICKY_COURSE
    downstream = ["h5p_scores_summary", "video_progress_summary", "raw_data"]
    before = {name: _table(url, name, course_id) for name in downstream}
    as_of = {"config": {"as_of": sim.world.now.isoformat()}}
    result = dg.materialize(
        ALL_ASSETS,
        # their inputs are read from MySQL (learner_features recomputes raw_data's features)
        selection=dg.AssetSelection.assets(*downstream, "learner_features"),
        resources=_resources(sim, url, tmp), partition_key=course_id, instance=instance,
        run_config={"ops": {"learner_features": as_of}},
    )
    assert result.success
    for name in downstream:
        after = _table(url, name, course_id)
        key = list(table_spec(name).unique_key)
        a = before[name].drop(columns=["id"]).sort_values(key).reset_index(drop=True)
        b = after.drop(columns=["id"]).sort_values(key).reset_index(drop=True)
        assert len(a) > 0, name
        pd.testing.assert_frame_equal(a, b)


def test_one_ranged_run_over_every_course_gives_the_rows_of_per_course_runs(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path], mysql_database_url: str,
    tmp_path: Path,
) -> None:
    """The single-run backfill (moocassets.backfill) against the per-course runs of the module
    fixture: same rows in every table, for every course."""
    url, instance, _ = materialized
    courses = instance.get_dynamic_partitions("course_id")
    as_of = {"config": {"as_of": sim.world.now.isoformat()}}
    result = dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets("dropout_risk_model"),
        resources=_resources(sim, mysql_database_url, tmp_path), instance=instance,
        tags={RANGE_START_TAG: courses[0], RANGE_END_TAG: courses[-1]},
        run_config={"ops": {"learner_features": as_of}},
    )
    assert result.success
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    assert "h5p_scores_extract" in steps and len(steps) == 20  # each step once, all courses
    for spec in WAREHOUSE_TABLES:
        key = list(spec.unique_key)
        for course_id in courses:
            per_course, ranged = (
                _table(u, spec.name, course_id)
                .drop(columns=["id", "fetched_at"], errors="ignore")
                .sort_values(key).reset_index(drop=True)
                for u in (url, mysql_database_url)
            )
            assert len(per_course) > 0 or spec.name == "mooc_discussions", (spec.name, course_id)
            pd.testing.assert_frame_equal(per_course, ranged, obj=f"{spec.name} {course_id}")


def test_raw_data_and_its_history_snapshot_share_one_as_of_per_run(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path], mysql_database_url: str,
    tmp_path: Path,
) -> None:
    """Without a configured as_of both are evaluated "now": the run computes the features once,
    so the snapshot holds exactly the rows (and instant) that raw_data scored."""
    _, instance, _ = materialized
    course_id = TRICKY_COURSE
    result = dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets("dropout_risk_model"),
        resources=_resources(sim, mysql_database_url, tmp_path), partition_key=course_id,
        instance=instance,
    )
    assert result.success
    raw = _table(mysql_database_url, "raw_data", course_id).sort_values("user_id")
    history = _table(mysql_database_url, "raw_data_history", course_id).sort_values("user_id")
    assert len(raw) > 0 and raw["as_of"].nunique() == 1
    assert history["as_of"].tolist() == raw["as_of"].tolist()
    shared = [c for c in history.columns if c not in ("id", "as_of")]
    pd.testing.assert_frame_equal(raw[shared].reset_index(drop=True),
                                  history[shared].reset_index(drop=True))


def test_raw_data_and_history_share_as_of_when_every_step_has_its_own_process(
    sim: Sim, mysql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the multiprocess executor (one process per step, as on Celery workers) nothing is
    shared through memory: raw_data and raw_data_history still carry one as_of and the same
    features, because both read the learner_features frame from storage."""
    from moocassets_tests.multiprocess_job import course_refresh_multiprocess

    for name, value in {
        "MOOCASSETS_DATABASE_URL": mysql_database_url,
        "MOOCASSETS_MOOC_API_URL": f"{sim.root}/api/custom/v1",
        "MOOCASSETS_H5P_API_URL": f"{sim.root}/wp-json/mooc/v1",
        "MOOCASSETS_MOOC_EMAIL": EMAIL,
        "MOOCASSETS_MOOC_PASSWORD": sim.password,
    }.items():
        monkeypatch.setenv(name, value)
    course_id = TRICKY_COURSE
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("course_id", [course_id])
        with dg.execute_job(
            dg.reconstructable(course_refresh_multiprocess), instance=instance,
            tags={"dagster/partition": course_id},
        ) as result:
            assert result.success
            pids = {e.step_key: e.pid for e in result.all_events if e.is_step_start}
            features_meta = next(
                e.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey("learner_features")
            )
    assert len({pids["raw_data"], pids["raw_data_history"], pids["learner_features"]}) == 3
    raw = _table(mysql_database_url, "raw_data", course_id).sort_values("user_id")
    history = _table(mysql_database_url, "raw_data_history", course_id).sort_values("user_id")
    assert len(raw) > 0 and raw["as_of"].nunique() == 1
    assert history["as_of"].tolist() == raw["as_of"].tolist()
    assert pd.Timestamp(features_meta["as_of"].value).tz_convert(None) == raw["as_of"].iloc[0]
    shared = [c for c in history.columns if c not in ("id",)]
    pd.testing.assert_frame_equal(raw[shared].reset_index(drop=True),
                                  history[shared].reset_index(drop=True))


def test_backfill_retries_a_failed_ranged_run_course_by_course(
    sim: Sim, mysql_database_url: str, tmp_path: Path
) -> None:
    """One broken course in a ranged run: the run fails and writes nothing for the failed step,
    then each course runs on its own, so the healthy courses load and the broken one fails."""
    from moocassets.definitions import course_refresh_job

    good = list(sim.world.courses)
    broken = "course-v1:No+Such+2099"  # registered, but the MOOC does not know it
    defs = dg.Definitions(
        assets=ALL_ASSETS, jobs=[course_refresh_job],
        resources=_resources(sim, mysql_database_url, tmp_path), executor=dg.in_process_executor,
    )
    as_of = {"config": {"as_of": sim.world.now.isoformat()}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("course_id", [good[0], broken, *good[1:]])
        runs = run_backfill(instance, [*good, broken], defs=defs,
                            run_config={"ops": {"learner_features": as_of}})
    assert [len(r.courses) for r in runs] == [len(good) + 1] + [1] * (len(good) + 1)
    assert runs[0].superseded and not runs[0].success
    outcome = {r.courses[0]: r.success for r in runs[1:]}
    assert outcome == {**{c: True for c in good}, broken: False}
    for course_id in good:
        assert len(_table(mysql_database_url, "raw_data", course_id)) > 0
    assert len(_table(mysql_database_url, "enrollments", broken)) == 0


def test_removals_at_the_source_are_reflected(
    sim: Sim, materialized: tuple[str, dg.DagsterInstance, Path]
) -> None:
    url, instance, tmp = materialized
    course_id = next(iter(sim.world.courses))
    victim = int(_table(url, "enrollments", course_id)["user_id"].iloc[0])
    assert sim.world.unenroll(course_id, victim)
    assert _materialize(sim, url, tmp, course_id, instance).success
    for name in ("enrollments", "mooc_grades", "h5p_scores", "raw_data"):
        assert victim not in set(_table(url, name, course_id)["user_id"]), name


def _unwrap_m1(payload: dict) -> list[dict]:  # type: ignore[type-arg]
    data = payload.get("data")
    if isinstance(data, dict) and "enrollments" in data:
        return list(data["enrollments"])
    if isinstance(data, list):
        return list(data)
    return list(payload.get("enrollments") or payload.get("results") or [])
