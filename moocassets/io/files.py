"""Atomic pickle files (temp file + ``os.replace``: a reader never sees half a file) and the base
of the IO managers that keep them under Dagster's storage directory."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import PrivateAttr


def write_pickle(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh)  # our own artefacts, written by write_pickle


class PickleStoreIOManager(dg.ConfigurableIOManager):
    """Files under ``base_dir``, by default ``<instance storage>/<STORAGE_SUBDIR>``."""

    STORAGE_SUBDIR: ClassVar[str] = "files"

    base_dir: str | None = None
    _root: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.base_dir:
            self._root = Path(self.base_dir)
        elif context.instance is not None:
            self._root = Path(context.instance.storage_directory()) / self.STORAGE_SUBDIR

    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError(f"{type(self).__name__} has no base_dir and no Dagster instance")
        return self._root
