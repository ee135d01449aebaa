"""Run a function right after a module's own code, the first time a process imports it.

For dqbench's vLLM general plugins (harness/serve/prompt_tail.py, harness/serve/vllm_ranks.py): vLLM calls
their hook in each of its processes, and each changes a module only the model's worker imports, so that the API
server and the engine core import nothing more and pay nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any


class OnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when module `name` is about to load, it wraps that module's loader so that `after`
    runs right after the module's own code."""

    def __init__(self, name: str, after: Callable[[], None]) -> None:
        self.name, self.after = name, after

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # once: the real finders find the module
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        own, after = loader.exec_module, self.after

        def exec_module(module: Any) -> None:
            own(module)
            after()

        loader.exec_module = exec_module  # this module's loader instance only
        return spec


def when_imported(name: str, after: Callable[[], None]) -> None:
    """`after()` at once if module `name` is already imported, else right after it is (one waiting finder per
    module: a hook that vLLM calls again adds none)."""
    if name in sys.modules:
        after()
    elif not any(isinstance(f, OnImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, OnImport(name, after))
