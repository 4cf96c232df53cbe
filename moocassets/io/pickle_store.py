"""The base of the extract and model stores: IO managers that keep pickled objects in an
:class:`~moocassets.io.objects.ObjectStore`.

Where the objects go, in this order:

* ``database_url`` set: the ``pipeline_objects`` table of that database (the warehouse), which
  every step reaches wherever it runs: what ``moocassets.definitions`` configures;
* ``base_dir`` set: files under that directory (one host);
* neither: files under ``<instance storage>/<STORAGE_SUBDIR>`` (one host).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import Field, PrivateAttr

from moocassets.io.objects import DirectoryObjects, ObjectKey, ObjectStore, TableObjects


class PickleStoreIOManager(dg.ConfigurableIOManager):
    STORAGE_SUBDIR: ClassVar[str] = "files"

    database_url: str | None = Field(
        default=None,
        description="Keep the objects in table pipeline_objects of this database (use "
        "dg.EnvVar); reachable from every host",
    )
    base_dir: str | None = Field(default=None, description="Keep the objects as files here")
    _store: ObjectStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.database_url:
            self._store = TableObjects(self.database_url)
        elif self.base_dir:
            self._store = DirectoryObjects(Path(self.base_dir))
        elif context.instance is not None:
            root = Path(context.instance.storage_directory()) / self.STORAGE_SUBDIR
            self._store = DirectoryObjects(root)

    def store(self) -> ObjectStore:
        if self._store is None:
            raise RuntimeError(
                f"{type(self).__name__} has no database_url, no base_dir and no Dagster instance"
            )
        return self._store

    def key(self, asset_key: dg.AssetKey, partition: str = "") -> ObjectKey:
        return ObjectKey(self.STORAGE_SUBDIR, "/".join(asset_key.path), partition)
