"""Store stage: per-cell JSON (source of truth, harness/store/results.py) and the DuckDB index rebuilt
from it (harness/store/db.py: connection and ingest; schema.py: tables; rows.py: rows from a CellResult)."""

from harness.store.results import ResultStore

__all__ = ["ResultStore"]
