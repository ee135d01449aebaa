"""Shared fixtures. Markers (slow, e2e, gpu) are registered in pyproject.toml with --strict-markers."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MATRICES = REPO / "matrices"


def pytest_collection_modifyitems(config, items):
    has_gpu = Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture
def base_matrix() -> dict:
    """The shipped default matrix as a dict, to mutate in tests; without its students (they name methods
    that tests replace; tests/unit/plan/test_students.py plans the shipped file as it is)."""
    m = copy.deepcopy(yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text()))
    m.pop("students", None)
    m.pop("decide", None)  # the sequential evaluation's tests add their own (tests/unit/decide)
    m["axes"]["distill"] = ["none"]
    m.pop("drafts", None)  # the default's draft is its student (tests/unit/plan/test_speculative.py plans it)
    m["axes"].pop("draft", None)
    # dqbench's own four tasks, as the default had them before it named lm-eval's (issue #20): unit tests
    # about the plan and the chain keep their small fixed task set (tests/unit/evaluate covers the others)
    m["evaluation"].pop("gen_kwargs", None)
    m["evaluation"]["tasks"] = [
        {"name": "dq_pydoc_ppl", "limit": 1},
        {"name": "dq_lambada", "limit": 30},
        {"name": "dq_arc_easy", "limit": 30},
        {"name": "dq_hellaswag", "limit": 20},
    ]
    return m


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from harness.settings import load_settings

    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DQBENCH_HOME", os.environ.get("DQBENCH_HOME", str(Path.home() / ".cache" / "dqbench")))
    return load_settings()
