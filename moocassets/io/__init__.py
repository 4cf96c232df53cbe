"""Warehouse I/O: the IO manager, the read resource and the shared engine factory.

One module per concern: ``engine`` (engines, quoting, URL masking), ``errors``, ``load_format``
(frame validation and the LOAD DATA text format), ``ddl`` (create/verify/evolve tables),
``locks`` (writers of a table take turns), ``write`` (the partition replace transaction and its
retries), ``read``, ``run_cache`` (frames a run wrote), and ``mysql_io_manager`` (the Dagster IO
manager, a thin layer over them). ``extract_store``/``model_store`` keep intermediate frames and
the model; ``warehouse`` is the read-only resource.
"""

from moocassets.io.engine import dispose_engines, ensure_database, make_engine, safe_url
from moocassets.io.errors import (
    IncompatibleSchemaError,
    StrayPartitionRowsError,
    TableNotMaterializedError,
    WarehouseError,
    WarehouseWriteError,
)
from moocassets.io.extract_store import ExtractStoreIOManager
from moocassets.io.model_store import ModelStoreIOManager
from moocassets.io.mysql_io_manager import WarehouseIOManager
from moocassets.io.read import read_table
from moocassets.io.warehouse import WarehouseResource
from moocassets.io.write import WriteEvent, WriteOptions, WriteResult, write_table

__all__ = [
    "ExtractStoreIOManager",
    "IncompatibleSchemaError",
    "ModelStoreIOManager",
    "StrayPartitionRowsError",
    "TableNotMaterializedError",
    "WarehouseError",
    "WarehouseIOManager",
    "WarehouseResource",
    "WarehouseWriteError",
    "WriteEvent",
    "WriteOptions",
    "WriteResult",
    "dispose_engines",
    "ensure_database",
    "make_engine",
    "read_table",
    "safe_url",
    "write_table",
]
