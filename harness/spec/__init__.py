"""Matrix spec: the typed, frozen description of an experiment grid, one module per section (sources, methods,
students, serving, loadtest, evaluation, matrix) on a shared base; read.py turns YAML into a Matrix."""

from harness.spec.matrix import Matrix
from harness.spec.read import load_matrix, parse_matrix

__all__ = ["Matrix", "load_matrix", "parse_matrix"]
