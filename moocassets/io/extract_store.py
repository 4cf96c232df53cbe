"""The extract store: one pickled frame per extract asset and course partition.

Dagster's ``FilesystemIOManager`` keeps one file per output and refuses an output that covers
several partitions (a single run over a range of courses). This IO manager splits each extract
frame by ``course_id`` and keeps one object per course, so a ranged run and the per-course runs
read and write the same objects. A course that has no rows in the frame gets an empty frame with
the same columns, so "nothing at the source" replaces what was there before. A ranged output's
courses are replaced together (one transaction in the database store).

Where: ``moocassets.definitions`` puts them in the warehouse database (table
``pipeline_objects``, :mod:`moocassets.io.objects`), so a step on one host reads what a step on
another host wrote; ``base_dir`` keeps them as files instead (one host).
"""

from __future__ import annotations

from typing import ClassVar

import dagster as dg
import pandas as pd

from moocassets.io.pickle_store import PickleStoreIOManager
from moocassets.schema import PARTITION_COLUMN


class ExtractNotMaterializedError(LookupError):
    """An extract partition a step reads was never stored."""


class ExtractStoreIOManager(PickleStoreIOManager):
    """Extract frames per (asset, course partition)."""

    STORAGE_SUBDIR: ClassVar[str] = "extracts"

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
        self.store().put_many({
            self.key(context.asset_key, key): groups.get(key, obj.iloc[0:0]).reset_index(drop=True)
            for key in keys
        })

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        keys = [self.key(context.asset_key, k) for k in context.asset_partition_keys]
        found = self.store().get_many(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            raise ExtractNotMaterializedError(
                f"{context.asset_key.to_user_string()} has not been materialized for course "
                f"{missing[0].partition!r} ({self.store().where(missing[0])} missing)"
            )
        frames = [found[k] for k in keys]
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)
