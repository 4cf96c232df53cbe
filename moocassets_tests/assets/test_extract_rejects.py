"""Extract assets: bad records are rejected and counted; too many fail the step clearly."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import httpx

from moocassets.assets.extract import EXTRACT_BY_NAME
from moocassets.io import ExtractStoreIOManager
from moocassets.sources import MoocApiResource

COURSE = "course-v1:UEL+NLTT241225+2025_12"
GOOD = {"user_id": 1, "grade_percentage": 81.0, "letter_grade": "B", "is_passed": True}

GRADES = EXTRACT_BY_NAME["mooc_grades_extract"]


def _mooc(rows: list[dict[str, object]]) -> MoocApiResource:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "/export/student-grades/" in request.url.path
        return httpx.Response(200, json={"students": rows})

    return MoocApiResource(
        base_url="http://mooc.test/api/custom/v1", sessionid="operator-session"
    ).with_transport(httpx.MockTransport(handler))


def _run(rows: list[dict[str, object]], tmp_path: Path, share: float | None = None
         ) -> dg.ExecuteInProcessResult:
    config = {"ops": {"mooc_grades_extract": {"config": {"max_reject_share": share}}}} \
        if share is not None else None
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("course_id", [COURSE])
        return dg.materialize(
            [GRADES], partition_key=COURSE, instance=instance, run_config=config,
            raise_on_error=False,
            resources={
                "mooc": _mooc(rows),
                "extract_io_manager": ExtractStoreIOManager(base_dir=str(tmp_path)),
            },
        )


def test_a_share_of_bad_records_above_the_threshold_fails_with_counts_and_samples(
    tmp_path: Path,
) -> None:
    rows = [GOOD, {"user_id": 2, "grade_percentage": 250}, {"grade_percentage": 50.0}]
    result = _run(rows, tmp_path)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message  # type: ignore[union-attr]
    assert "2 of 3 records rejected" in message
    assert COURSE in message and "250" in message


def test_rejects_within_the_threshold_are_counted_in_metadata_and_not_stored(
    tmp_path: Path,
) -> None:
    rows = [GOOD, {"user_id": 2, "grade_percentage": 250}, {**GOOD, "user_id": 3}]
    result = _run(rows, tmp_path, share=0.5)
    assert result.success
    frame = result.output_for_node("mooc_grades_extract")
    assert sorted(frame["user_id"]) == [1, 3]
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["records_seen"].value == 3
    assert meta["records_rejected"].value == 1
    assert meta["requests"].value >= 1
    assert "user_id=2" in meta["reject_samples"].value


def test_hostile_records_in_an_export_envelope_are_rejected_one_by_one(tmp_path: Path) -> None:
    """M4 ``grade_table`` with a non-object item, a Unicode-digit id, an id beyond INT and a
    1 MB field among 400 good rows: the course loads, four records are counted as rejected
    (reasons bounded), nothing wrong is stored."""
    good = [{**GOOD, "user_id": u} for u in range(1, 401)]
    hostile = ["oops", {**GOOD, "user_id": "١٢٣"}, {**GOOD, "user_id": 2**70},
               {**GOOD, "user_id": 999, "letter_grade": "Z" * 1_000_000}]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"grade_data": {"grade_table": [*good, *hostile]}})

    mooc = MoocApiResource(
        base_url="http://mooc.test/api/custom/v1", sessionid="operator-session"
    ).with_transport(httpx.MockTransport(handler))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("course_id", [COURSE])
        result = dg.materialize(
            [GRADES], partition_key=COURSE, instance=instance,
            resources={"mooc": mooc,
                       "extract_io_manager": ExtractStoreIOManager(base_dir=str(tmp_path))},
        )
    assert result.success
    frame = result.output_for_node("mooc_grades_extract")
    assert sorted(frame["user_id"]) == list(range(1, 401))
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["records_seen"].value == 404 and meta["records_rejected"].value == 4
    samples = meta["reject_samples"].value
    assert "item #400: record is not an object (str)" in samples
    assert "non-integer user id '١٢٣'" in samples and "outside [1, 2147483647]" in samples
    assert "letter_grade longer than 32 characters" in samples
    assert len(samples) < 2_000
