"""The range rules live in one place (``Column.bounds``): frame validation, the ``value_ranges``
asset check and the dagster-pandas type accept and reject exactly the same values."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest

from moocassets import schema
from moocassets.checks import evaluate_value_ranges

T = datetime(2025, 3, 1, tzinfo=UTC)


def _h5p_row(**values: object) -> pd.DataFrame:
    row = {"user_id": 7, "course_id": "course-v1:X+Y+Z", "content_id": 3, "score": 4,
           "max_score": 5, "percentage": 80.0, "time_spent": 12.5, "is_finished": True,
           "fetched_at": T, **values}
    return schema.H5P_SCORES.coerce_frame(pd.DataFrame([row]).reindex(
        columns=schema.H5P_SCORES.column_names))


def _verdicts(frame: pd.DataFrame) -> tuple[bool, bool, bool]:
    spec = schema.H5P_SCORES
    try:
        spec.validate_frame(frame)
        validated = True
    except schema.SchemaError:
        validated = False
    checked = evaluate_value_ranges(spec, frame).passed
    typed = dg.check_dagster_type(spec.dagster_type, frame).success
    return validated, checked, typed


@pytest.mark.parametrize(
    ("column", "inside", "outside"),
    [
        ("percentage", 100.0, 100.5),            # declared range [0, 100]
        ("user_id", 2**31 - 1, 3_000_000_000),   # INT: what MySQL can store
        ("content_id", 0, 2**40),                # INT, declared minimum 0
        ("time_spent", 9_999_999_999.99, 1e15),  # DECIMAL(12,2)
        ("score", 0, -1),                        # declared minimum 0
    ],
)
def test_validation_check_and_type_agree_on_every_bound(
    column: str, inside: float, outside: float
) -> None:
    assert _verdicts(_h5p_row(**{column: inside})) == (True, True, True)
    assert _verdicts(_h5p_row(**{column: outside})) == (False, False, False)


def test_bounds_combine_the_declaration_with_the_sql_type() -> None:
    col = schema.H5P_SCORES.column
    assert col("percentage").bounds == (0.0, 100.0)
    assert col("user_id").bounds == (1.0, 2.0**31 - 1)
    assert col("time_spent").bounds_text == "[0, 9999999999.99]"
    assert col("content_title").bounds == (None, None)
