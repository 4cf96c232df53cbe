"""moocassets.backfill: grouping courses into ranged runs, and the CLI's answers."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from moocassets.backfill import contiguous_ranges, main
from moocassets.partitions import COURSE_PARTITIONS_NAME

REGISTERED = ["c1", "c2", "c3", "c4", "c5"]


def test_contiguous_courses_make_one_range_and_gaps_split_it() -> None:
    assert contiguous_ranges(REGISTERED, REGISTERED) == [REGISTERED]
    assert contiguous_ranges(["c4", "c2", "c1"], REGISTERED) == [["c1", "c2"], ["c4"]]
    assert contiguous_ranges(["c3", "c3"], REGISTERED) == [["c3"]]  # duplicates once
    assert contiguous_ranges(REGISTERED, REGISTERED, max_len=2) == [
        ["c1", "c2"], ["c3", "c4"], ["c5"]]  # bounded memory per run


def test_unknown_course_is_named() -> None:
    with pytest.raises(KeyError, match="nope"):
        contiguous_ranges(["c1", "nope"], REGISTERED)


def test_cli_refuses_unknown_courses_and_an_empty_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert main(["--all"]) == 1
    assert "none registered" in capsys.readouterr().err
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(COURSE_PARTITIONS_NAME, ["course-v1:A+B+C"])
    assert main(["--courses", "course-v1:X+Y+Z"]) == 2
    assert "course-v1:X+Y+Z" in capsys.readouterr().err
