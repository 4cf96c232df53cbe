"""What every payload parser shares: the result types and the field readers.

A field reader returns the value for its column or raises :class:`BadRecord` whose message is
the reject reason; the parsers of each system (:mod:`.mooc`, :mod:`.h5p`) turn that into a
:class:`Reject` of the one record and go on with the next.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from moocassets.schema import USER_ID, TableSpec
from moocassets.transforms.timeparse import TimeParseError, parse_timestamp, to_utc

__all__ = [
    "QUOTE_LIMIT",
    "BadRecord",
    "Parsed",
    "Reject",
    "check_bounds",
    "quote",
    "read_bool",
    "read_bounded",
    "read_count",
    "read_number",
    "read_optional_int",
    "read_percent",
    "read_section",
    "read_text",
    "read_time",
    "read_user_id",
    "record_user_id",
    "utc",
]


@dataclass(frozen=True)
class Reject:
    """One record that was not stored, and why."""

    endpoint: str
    course_id: str
    record_ref: str  # e.g. "user_id=12", "item #37", "user_id=12 content_id=45"
    reason: str


@dataclass
class Parsed:
    """Rows for one table, the rejected records, and how many records were examined."""

    frame: pd.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    seen: int = 0

    @property
    def reject_share(self) -> float:
        """Rejected records / records examined (0.0 when nothing was examined)."""
        return len(self.rejects) / self.seen if self.seen else 0.0


class BadRecord(Exception):
    """A record fails validation; the message is the reject reason."""


QUOTE_LIMIT = 120
"""A reject reason quotes at most this many characters of the bad value (and says its length)."""

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_MAX_DIGITS = 40  # far beyond any column; keeps int()/float() away from huge texts


def quote(value: Any) -> str:
    """``repr(value)`` for a reject reason, cut to :data:`QUOTE_LIMIT` characters (a 1 MB field
    gives a short reason, not a 1 MB log line)."""
    if isinstance(value, str) and len(value) > QUOTE_LIMIT:
        return f"{value[:QUOTE_LIMIT]!r}… ({len(value):,} characters)"
    text = repr(value)
    if len(text) > QUOTE_LIMIT:
        return f"{text[:QUOTE_LIMIT]}… ({type(value).__name__} of {len(text):,} characters)"
    return text


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, Mapping) else f"a {type(value).__name__}"


# ---- field readers (raise BadRecord with the reject reason) ------------------------------------


def read_user_id(value: Any, what: str = "user id") -> int:
    """A learner id: an integer or a text of ASCII digits, within ``user_id``'s column bounds."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRecord(f"missing {what}")
    if isinstance(value, bool):
        raise BadRecord(f"non-integer {what} {quote(value)}")
    if isinstance(value, int):
        uid = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise BadRecord(f"non-integer {what} {quote(value)}")
        uid = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_DIGITS or not _INTEGER.fullmatch(text):
            raise BadRecord(f"non-integer {what} {quote(value)}")
        uid = int(text)
    else:
        raise BadRecord(f"non-integer {what} {quote(value)}")
    if uid <= 0:
        raise BadRecord(f"non-positive {what} {uid}")
    _lo, hi = USER_ID.bounds
    if hi is not None and uid > hi:
        raise BadRecord(f"{what} {quote(uid)} outside {USER_ID.bounds_text}")
    return uid


def record_user_id(rec: Mapping[str, Any]) -> int:
    value = rec.get("user_id")
    if value is None:
        value = rec.get("id")
    return read_user_id(value)


def read_number(value: Any, name: str) -> float | None:
    """A finite number (int/float, or a text of an ASCII decimal number); None/"" → None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRecord(f"non-numeric {name} {quote(value)}")
    if isinstance(value, int):
        if abs(value) > 10**_MAX_DIGITS:
            raise BadRecord(f"{name} {quote(value)} out of range")
        num = float(value)
    elif isinstance(value, float):
        num = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) > _MAX_DIGITS or not _DECIMAL.fullmatch(text):
            raise BadRecord(f"non-numeric {name} {quote(value)}")
        num = float(text)
    else:
        raise BadRecord(f"non-numeric {name} {quote(value)}")
    if not math.isfinite(num):
        raise BadRecord(f"non-numeric {name} {quote(value)}")
    return num


def read_bounded(
    value: Any, name: str, lo: float | None = 0.0, hi: float | None = None
) -> float | None:
    num = read_number(value, name)
    if num is None:
        return None
    if lo is not None and hi is not None and not lo <= num <= hi:
        raise BadRecord(f"{name} {num:g} outside [{lo:g}, {hi:g}]")
    if lo is not None and num < lo:
        raise BadRecord(f"negative {name} {num:g}" if lo == 0 else f"{name} {num:g} below {lo:g}")
    if hi is not None and num > hi:
        raise BadRecord(f"{name} {num:g} above {hi:g}")
    return num


def read_percent(value: Any, name: str) -> float | None:
    return read_bounded(value, name, 0.0, 100.0)


def read_count(value: Any, name: str) -> int | None:
    """A non-negative integer (5.0 and "5" accepted; 5.5, -1 rejected)."""
    num = read_bounded(value, name)
    if num is None:
        return None
    if num != int(num):
        raise BadRecord(f"non-integer {name} {quote(value)}")
    return int(num)


def read_optional_int(value: Any, name: str) -> int | None:
    num = read_number(value, name)
    if num is None:
        return None
    if num != int(num):
        raise BadRecord(f"non-integer {name} {quote(value)}")
    return int(num)


def read_bool(value: Any, name: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        if not text:
            return None
    raise BadRecord(f"non-boolean {name} {quote(value)}")


def read_time(value: Any, name: str) -> pd.Timestamp | None:
    try:
        return parse_timestamp(value)
    except (TimeParseError, ValueError, OverflowError):
        raise BadRecord(f"unparseable {name} {quote(value)}") from None


def read_text(spec: TableSpec, name: str, value: Any, *, truncate: bool) -> str | None:
    """Text for a varchar column: a string (a number is written as text); None/"" → None; an
    object, a list or a boolean is rejected; too long → truncated or rejected."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRecord(f"{name} is {_kind(value)}, not text: {quote(value)}")
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        return None
    length = spec.column(name).length
    if length is not None and len(text) > length:
        if not truncate:
            raise BadRecord(f"{name} longer than {length} characters")
        text = text[:length]
    return text


def check_bounds(spec: TableSpec, row: Mapping[str, Any]) -> None:
    """Reject a row whose numeric value lies outside its column's bounds (the declared range
    within what the SQL type stores), before it reaches a frame or the database."""
    for name, value in row.items():
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        column = spec.column(name)
        lo, hi = column.bounds
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            shown = str(value) if isinstance(value, int) and abs(value) < 10**15 else f"{value:g}"
            raise BadRecord(f"{name} {shown} outside {column.bounds_text}")


def read_section(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRecord(f"{key} is not an object")
    return value


def utc(fetched_at: datetime) -> pd.Timestamp:
    return to_utc(fetched_at)
