"""Timestamp parsing shared by the payload parsers and the feature builder (pure, no clock reads).

Rules (spec/source-apis.md §4-§6):

* MOOC timestamps are ISO-8601, with or without ``Z``, with or without fractional seconds (any
  number of digits; beyond microseconds they are truncated); an explicit offset is honoured.
* H5P text timestamps are ``YYYY-MM-DD HH:MM:SS`` (site time, treated as UTC).
* Naive times are UTC. Every result is a tz-aware UTC :class:`pandas.Timestamp`.
* H5P ``opened``/``finished`` numbers are either 0/1 flags or UNIX epoch seconds: only values
  ``>= PLAUSIBLE_EPOCH_MIN`` (2000-01-01) are points in time, so a flag ``1`` never becomes 1970.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd

PLAUSIBLE_EPOCH_MIN = 946_684_800  # 2000-01-01T00:00:00Z
PLAUSIBLE_EPOCH_MAX = 4_102_444_800  # 2100-01-01T00:00:00Z (beyond: e.g. milliseconds, not seconds)


class TimeParseError(ValueError):
    """A value that should be a timestamp is not one."""


def to_utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """A datetime as a tz-aware UTC Timestamp; naive values are taken to be UTC."""
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise TimeParseError("NaT is not a point in time")
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    try:
        return ts.as_unit("ns")  # the warehouse frames are datetime64[ns, UTC]
    except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise TimeParseError(f"timestamp {value!r} outside the representable range") from exc


def parse_timestamp(value: Any) -> pd.Timestamp | None:
    """Parse an ISO-8601 / ``YYYY-MM-DD HH:MM:SS`` text (or a datetime) to UTC.

    ``None``, ``""`` and NaN/NaT are "no value" and give ``None``. Anything else that is not a
    valid timestamp (including numbers: text timestamps must be text) raises
    :class:`TimeParseError`.
    """
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):  # includes pd.Timestamp
        return to_utc(value)
    if not isinstance(value, str):
        raise TimeParseError(f"not a timestamp text: {value!r}")
    text = value.strip()
    if not text:
        return None
    try:
        return to_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError) as exc:
        raise TimeParseError(f"unparseable timestamp {value!r}") from exc


def epoch_to_timestamp(seconds: float) -> pd.Timestamp | None:
    """UNIX epoch seconds to UTC when plausible (2000 ≤ t < 2100), else ``None`` (a flag)."""
    if not math.isfinite(seconds) or not PLAUSIBLE_EPOCH_MIN <= seconds < PLAUSIBLE_EPOCH_MAX:
        return None
    return pd.Timestamp(seconds, unit="s", tz=UTC)
