"""Atomic pickle files (temp file + ``os.replace``): a reader never sees half a file."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any


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
