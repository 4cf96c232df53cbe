"""The extract store: one pickle per extract asset and course partition.

Dagster's ``FilesystemIOManager`` keeps one file per output and refuses an output that covers
several partitions (a single run over a range of courses). This IO manager splits each extract
frame by ``course_id`` and keeps one file per course, so a ranged run and the per-course runs
read and write the same files: ``<base_dir>/<asset>/<quoted course id>.pkl`` (atomic writes).
A course that has no rows in the frame gets an empty frame with the same columns, so "nothing at
the source" replaces what was there before.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import dagster as dg
import pandas as pd

from moocassets.io.files import PickleStoreIOManager, read_pickle, write_pickle
from moocassets.schema import PARTITION_COLUMN


class ExtractStoreIOManager(PickleStoreIOManager):
    """Extract frames per (asset, course partition) under ``base_dir`` (default: instance
    storage ``extracts/``)."""

    STORAGE_SUBDIR: ClassVar[str] = "extracts"

    def _path(self, asset_key: dg.AssetKey, course_id: str) -> Path:
        return self.root().joinpath(*asset_key.path, quote(course_id, safe="") + ".pkl")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not context.has_asset_partitions:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: the extract store keeps course partitions"
            )
        keys = list(context.asset_partition_keys)
        groups = dict(tuple(obj.groupby(PARTITION_COLUMN, sort=False))) if len(obj) else {}
        stray = sorted(set(groups) - set(keys))
        if stray:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: rows of course(s) {stray[:5]} that are "
                f"not among the partitions written ({len(keys)})"
            )
        for key in keys:
            part = groups.get(key, obj.iloc[0:0])
            write_pickle(self._path(context.asset_key, key), part.reset_index(drop=True))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        keys = list(context.asset_partition_keys)
        frames = []
        for key in keys:
            path = self._path(context.asset_key, key)
            if not path.exists():
                raise FileNotFoundError(
                    f"{context.asset_key.to_user_string()} has not been materialized for course "
                    f"{key!r} ({path} missing)"
                )
            frames.append(read_pickle(path))
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)
