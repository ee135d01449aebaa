"""Store stage: per-cell JSON (source of truth) and the DuckDB index rebuilt from it."""

from harness.store.results import SCHEMA_VERSION, ResultStore, flat_metrics

__all__ = ["SCHEMA_VERSION", "ResultStore", "flat_metrics"]
