"""Pickled model objects (e.g. ``dropout_risk_model``) in the instance's storage directory.

Written atomically (temp file + ``os.replace``), so a reader never sees half a model. Loading a
model that was never materialized returns ``None`` and logs it: the consumer decides what that
means (``raw_data`` then scores with the documented fallback rule), so a fresh deployment does not
have to wait for every course's history before the first scores appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from moocassets.io.files import read_pickle, write_pickle


class ModelStoreIOManager(dg.ConfigurableIOManager):
    """One pickle per (unpartitioned) asset under ``base_dir`` (default: instance storage)."""

    base_dir: str | None = None
    _root: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.base_dir:
            self._root = Path(self.base_dir)
        elif context.instance is not None:
            self._root = Path(context.instance.storage_directory()) / "models"

    def _path(self, context: dg.InputContext | dg.OutputContext) -> Path:
        if self._root is None:
            raise RuntimeError("ModelStoreIOManager has no base_dir and no Dagster instance")
        return self._root.joinpath(*context.asset_key.path).with_suffix(".pkl")

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
