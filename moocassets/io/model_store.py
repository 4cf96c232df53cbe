"""Pickled model objects (e.g. ``dropout_risk_model``), one per (unpartitioned) asset.

Written atomically, so a reader never sees half a model. Loading a model that was never
materialized returns ``None`` and logs it: the consumer decides what that means (``raw_data``
then scores with the documented fallback rule), so a fresh deployment does not have to wait for
every course's history before the first scores appear. Kept where the extract store keeps its
frames (the warehouse database in ``moocassets.definitions``; files with ``base_dir``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import dagster as dg

from moocassets.io.pickle_store import PickleStoreIOManager


class ModelStoreIOManager(PickleStoreIOManager):
    """One pickled object per (unpartitioned) asset."""

    STORAGE_SUBDIR: ClassVar[str] = "models"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        key = self.key(context.asset_key)
        self.store().put_many({key: obj})
        context.add_output_metadata({"stored_in": dg.MetadataValue.text(self.store().where(key))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = self.key(context.asset_key)
        found = self.store().get_many([key])
        if key not in found:
            context.log.info(
                f"{context.asset_key.to_user_string()} has not been materialized yet "
                f"({self.store().where(key)} missing)"
            )
            return None
        return found[key]
