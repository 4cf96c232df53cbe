"""Pickled model objects (e.g. ``dropout_risk_model``) in the instance's storage directory.

Written atomically (temp file + ``os.replace``), so a reader never sees half a model. Loading a
model that was never materialized returns ``None`` and logs it: the consumer decides what that
means (``raw_data`` then scores with the documented fallback rule), so a fresh deployment does not
have to wait for every course's history before the first scores appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import dagster as dg

from moocassets.io.files import PickleStoreIOManager, read_pickle, write_pickle


class ModelStoreIOManager(PickleStoreIOManager):
    """One pickle per (unpartitioned) asset under ``base_dir`` (default: instance storage
    ``models/``)."""

    STORAGE_SUBDIR: ClassVar[str] = "models"

    def _path(self, context: dg.InputContext | dg.OutputContext) -> Path:
        return self.root().joinpath(*context.asset_key.path).with_suffix(".pkl")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._path(context)
        write_pickle(path, obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._path(context)
        if not path.exists():
            context.log.info(
                f"{context.asset_key.to_user_string()} has not been materialized yet "
                f"({path} missing)"
            )
            return None
        return read_pickle(path)
