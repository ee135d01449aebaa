"""Matrix spec: the typed, frozen description of an experiment grid (see models.py, load.py)."""

from harness.spec.load import load_matrix, parse_matrix
from harness.spec.models import Matrix

__all__ = ["Matrix", "load_matrix", "parse_matrix"]
