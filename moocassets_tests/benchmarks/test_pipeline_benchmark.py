"""Smoke tests of ``benchmarks/pipeline.py``'s pure helpers and its original-strategy code, so the
benchmark cannot silently rot (no timings are asserted)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from benchmarks import pipeline
from moocassets.simulator import World, WorldConfig, create_app, serve_in_thread


def test_floor_counts_calls_and_divides_h5p_by_concurrency() -> None:
    floor = pipeline.compute_floor([1000, 1000], latency_s=0.02, h5p_concurrency=16, write_s=1.5)
    # login 3 + per course (M2 + 6 M1 pages + 3 exports) = 3 + 2 * 10
    assert floor.mooc_calls == 23
    assert floor.h5p_calls == 6000
    assert floor.mooc_s == pytest.approx(23 * 0.02)
    assert floor.h5p_s == pytest.approx(6000 * 0.02 / 16)
    assert floor.total_s == pytest.approx(floor.mooc_s + floor.h5p_s + 1.5)
    assert pipeline.m1_pages(200) == 2 and pipeline.m1_pages(199) == 1
    with pytest.raises(ValueError):
        pipeline.compute_floor([10], latency_s=0.02, h5p_concurrency=0, write_s=0)


def test_linear_fit_recovers_a_line() -> None:
    fit = pipeline.linear_fit([1, 3, 10], [2.5 + 7 * x for x in (1, 3, 10)])
    assert fit["slope_s_per_course"] == pytest.approx(7)
    assert fit["intercept_s"] == pytest.approx(2.5)
    assert fit["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        pipeline.linear_fit([1, 1], [1, 2])


def _fake_results() -> dict:  # type: ignore[type-arg]
    rows = {t: 10 for t in pipeline.ERD_TABLES}
    return {
        "project": {"wall_s": 80.0, "http_s": 50.0, "write_s": 10.0, "other_s": 20.0,
                    "requests": 30_000, "peak_rss_mib": 400.0, "process_wall_s": 84.0,
                    "rows": rows},
        "original": {"total_s_estimate": 800.0, "fetch_s_estimate": 90.0,
                     "write_s_estimate": 600.0, "other_s_estimate": 110.0,
                     "requests_estimate": 30_030, "statements_estimate": 400_000,
                     "peak_rss_mib": 100.0, "rows_estimate": rows},
        "floor": pipeline.compute_floor([1000] * 10, 0.02, 16, 5.0).as_dict(),
    }


def test_summary_table_has_ratios_and_formats_both_ways() -> None:
    header, rows = pipeline.summary_rows(_fake_results())
    wall = rows[0]
    assert wall[4] == (0.1, "x")  # project / original
    assert wall[5][0] == pytest.approx(80.0 / _fake_results()["floor"]["total_s"])
    text = pipeline.format_table(rows, header, markdown=False)
    assert "0.10x" in text and "rows raw_data" in text
    md = pipeline.format_table(rows, header, markdown=True)
    assert md.splitlines()[0].startswith("| figure |")
    assert md.count("\n") == len(rows) + 1
    assert pipeline.ratio(1.0, 0.0) is None and pipeline.ratio(None, 1.0) is None


def test_parse_collapsed_attributes_the_main_thread() -> None:
    lines = [
        "thread (0x1);main (benchmarks/pipeline.py:1);project_worker (benchmarks/pipeline.py:2);"
        "write_table (moocassets/io/write.py:3);execute (pymysql/cursors.py:4) 30",
        "thread (0x1);main (benchmarks/pipeline.py:1);project_worker (benchmarks/pipeline.py:2);"
        "run (moocassets/sources/http.py:5);wait (threading.py:6) 60",
        "thread (0x1);main (benchmarks/pipeline.py:1);project_worker (benchmarks/pipeline.py:2);"
        "store_event (dagster/x.py:7) 10",
        "thread (0x2);_run_once (asyncio/base_events.py:8);select (selectors.py:9) 90",
    ]
    got = pipeline.parse_collapsed(lines)
    assert got["main_thread_samples"] == 100
    share = got["main_thread_share"]
    assert share["waiting for HTTP (extract fan-outs/exports)"] == pytest.approx(0.6)
    assert share["MySQL writes (IO manager write_table)"] == pytest.approx(0.3)
    assert share["Dagster event log / run storage writes"] == pytest.approx(0.1)
    # idle leaves (select, threading wait) are not "busy" functions
    assert [f for f, _ in got["top_busy_functions"]] == [
        "execute (pymysql/cursors.py)", "store_event (dagster/x.py)"]


@pytest.fixture
def tiny_sim() -> Iterator[tuple[str, World, str]]:
    world = World(WorldConfig(courses=1, learners=12, seed=5))
    password = secrets.token_urlsafe(12)
    app = create_app(world, mooc_email=pipeline.EMAIL, mooc_password=password)
    with serve_in_thread(app) as root:
        yield root, world, password


@pytest.mark.mysql
def test_original_strategy_fills_every_erd_table(
    tiny_sim: tuple[str, World, str], mysql_database_url: str
) -> None:
    root, world, password = tiny_sim
    course_id = next(iter(world.courses))
    pipeline.create_erd_tables(mysql_database_url)
    tool = pipeline.OriginalTool(root, password, mysql_database_url, threads=4)
    try:
        timings = tool.run_course(course_id)
        tool.run_course(course_id)  # upserts: a second pass must not duplicate rows
    finally:
        tool.close()
    assert set(timings) >= {"total_s", "h5p_s", "raw_data_s"}
    rows = pipeline.count_rows(mysql_database_url)
    learners = rows["enrollments"]
    assert learners == 12
    assert rows["raw_data"] == learners
    assert rows["mooc_grades"] == learners
    assert rows["mooc_progress"] == learners
    expected_scores = 0
    engine = sa.create_engine(mysql_database_url)
    with engine.connect() as conn:
        uids = [r[0] for r in conn.exec_driver_sql("SELECT user_id FROM enrollments")]
    engine.dispose()
    for uid in uids:
        r = httpx.get(f"{root}/wp-json/mooc/v1/scores/{uid}/{course_id}", timeout=10)
        expected_scores += len(r.json()["scores"]) if r.status_code == 200 else 0
    assert rows["h5p_scores"] == expected_scores > 0
    assert 0 < rows["h5p_scores_summary"] <= learners
    assert 0 < rows["dashboard_summary"] <= learners
    # 1 SELECT of the learners + 10 queries per learner for raw_data, per pass
    assert tool.counters.commits == 2 * sum(rows.values())
    assert tool.counters.statements == tool.counters.commits + 2 * (1 + 9 * learners)


def test_scaling_verdict_allows_a_fixed_cost_but_not_a_growing_marginal_cost() -> None:
    linear, text = pipeline.scaling_verdict([1, 3, 10], [5 + 7 * x for x in (1, 3, 10)])
    assert linear and text.startswith("linear: 7.00 s per extra course + 5.0 s per run")
    linear, text = pipeline.scaling_verdict([1, 3, 10], [2 * x * x for x in (1, 3, 10)])
    assert not linear and text.startswith("NOT linear")  # quadratic: marginal cost grows
