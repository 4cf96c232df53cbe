"""Warehouse I/O: the IO manager, the read resource and the shared engine factory."""

from moocassets.io.engine import dispose_engines, ensure_database, make_engine, safe_url
from moocassets.io.extract_store import ExtractStoreIOManager
from moocassets.io.model_store import ModelStoreIOManager
from moocassets.io.mysql_io_manager import (
    IncompatibleSchemaError,
    StrayPartitionRowsError,
    TableNotMaterializedError,
    WarehouseError,
    WarehouseIOManager,
    WarehouseWriteError,
    WriteEvent,
    WriteOptions,
    WriteResult,
    read_table,
    write_table,
)
from moocassets.io.warehouse import WarehouseResource

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
