"""The database: engine, tables, migrations and transactions."""

from shipyard.store.engine import StoreUnavailable, create_store_engine, read_transaction, redact, write_transaction
from shipyard.store.migrate import SchemaTooNew, migrate

__all__ = [
    "SchemaTooNew",
    "StoreUnavailable",
    "create_store_engine",
    "migrate",
    "read_transaction",
    "redact",
    "write_transaction",
]
