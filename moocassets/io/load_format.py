"""Frames → database values: validation before any write, and the LOAD DATA text format.

Vectorized (numpy/pandas column by column, not per value in Python, except JSON and the strings
that need escaping). ``native_columns`` also feeds the INSERT fallback and SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from moocassets.io.errors import StrayPartitionRowsError
from moocassets.schema import Column, SchemaError, TableSpec

__all__ = ["load_data_bytes", "native_columns", "prepare_frame"]

TEXT_KINDS = ("varchar", "text", "json")
_NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_NEEDS_ESCAPE = ("\\", "\t", "\n", "\r", "\0")


def prepare_frame(
    spec: TableSpec, frame: pd.DataFrame, partition_keys: Sequence[str] | None
) -> pd.DataFrame:
    """Coerce and validate ``frame``; check its course ids against ``partition_keys``.

    Raises :class:`SchemaError` (or :class:`StrayPartitionRowsError`) before any database work.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"table {spec.name}: the warehouse IO manager stores pandas DataFrames, "
            f"got {type(frame).__name__}"
        )
    coerced = spec.coerce_frame(frame)
    spec.validate_frame(coerced)
    if partition_keys is not None:
        col = spec.partition_column
        stray = sorted(set(coerced[col].dropna().unique()) - set(partition_keys))
        if stray:
            shown = ", ".join(repr(s) for s in stray[:10])
            raise StrayPartitionRowsError(
                f"table {spec.name}: rows with {col} not among the partitions being written "
                f"({len(partition_keys)} partition(s)): {shown}"
                + (f" and {len(stray) - 10} more" if len(stray) > 10 else "")
            )
    return coerced


def _decimal_strings(values: np.ndarray, scale: int) -> np.ndarray:
    out = values.astype(str).astype(object)
    # numpy's shortest repr switches to exponent notation below 1e-4; rare, format those exactly
    tiny = (np.abs(values) < 1e-4) & (values != 0)
    if tiny.any():
        fmt = f"%.{scale}f"
        out[tiny] = [fmt % v for v in values[tiny]]
    return out


def _native_column(s: pd.Series, c: Column, *, iso_t: bool) -> np.ndarray:
    """Object array of DB-ready strings (None = NULL), computed column-wise."""
    mask = s.isna().to_numpy()
    if c.kind in ("int", "bigint"):
        out = s.to_numpy(dtype="int64", na_value=0).astype(str).astype(object)
    elif c.kind == "decimal":
        out = _decimal_strings(s.to_numpy(dtype="float64", na_value=0.0), c.scale or 0)
    elif c.kind == "bool":
        out = np.where(s.to_numpy(dtype=bool, na_value=False), "1", "0").astype(object)
    elif c.kind == "datetime":
        naive = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]")
        out = np.datetime_as_string(naive, unit="s").astype(object)
        if not iso_t:
            out = np.array([v.replace("T", " ") for v in out], dtype=object)
    elif c.kind == "json":
        vals = s.to_numpy(dtype=object)
        out = np.empty(len(vals), dtype=object)
        for i, v in enumerate(vals):
            if not mask[i]:
                try:
                    out[i] = json.dumps(v, ensure_ascii=False, allow_nan=False)
                except ValueError as exc:
                    raise SchemaError(f"column {c.name}: value not valid JSON ({exc})") from exc
    else:
        out = s.to_numpy(dtype=object).copy()
    if mask.any():
        out[mask] = None
    return out


def native_columns(
    spec: TableSpec, frame: pd.DataFrame, *, iso_t: bool = True
) -> list[np.ndarray]:
    return [_native_column(frame[c.name], c, iso_t=iso_t) for c in spec.columns]


def _escape_for_load_data(col: np.ndarray) -> np.ndarray:
    nonnull = [v for v in col if v is not None]
    if not nonnull:
        return col
    joined = "".join(nonnull)
    if not any(ch in joined for ch in _NEEDS_ESCAPE):
        return col
    return np.array(
        [v.translate(_ESCAPES) if v is not None else None for v in col], dtype=object
    )


def load_data_bytes(spec: TableSpec, frame: pd.DataFrame) -> bytes:
    """The rows of a coerced frame as MySQL's default LOAD DATA text format, UTF-8."""
    if frame.empty:
        return b""
    cols = native_columns(spec, frame, iso_t=True)
    for i, c in enumerate(spec.columns):
        col = cols[i]
        if c.kind in TEXT_KINDS:
            col = _escape_for_load_data(col)
        nulls = pd.isna(col)
        if nulls.any():
            col = col.copy()
            col[nulls] = _NULL
        cols[i] = col
    lines = "\n".join(map("\t".join, zip(*(c.tolist() for c in cols), strict=True)))
    return (lines + "\n").encode("utf-8")
