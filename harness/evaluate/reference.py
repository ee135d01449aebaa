"""A cell against its reference: distribution shift on fixed token windows and per-item flips.

The reference is the cell's parent (the uncompressed model; for a student, its teacher). Every cell
dumps its own top-k prompt logprobs (`work/<cell>/shift/logprobs.npz`) once, so a child compares with
its parent's dump; the root also dumps a second time and compares with itself, a determinism check
that must read KL 0 and agreement 100%. Flips compare the per-item lm-eval samples of both cells.

The reference must have been measured on the same host (results are per (cell id, host id),
harness/store/results.py): logprobs and items from another ISA differ in the last digits, which would
read as a drop. A parent whose only results come from other hosts is not compared against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.evaluate.shift import flips, load_dump, paired_bootstrap, read_items, shift_metrics
from harness.measure.prompts import token_prompts
from harness.plan.models import CellPlan
from harness.proc import run_worker, write_json_atomic
from harness.settings import Settings
from harness.spec.metrics import PRIMARY
from harness.store.hosts import this_host
from harness.store.results import ResultStore


def dump_logprobs(scoring: dict, windows: list[list[int]], k: int, out: Path, log: Path, settings: Settings) -> None:
    cfg = {"lm": scoring["model"], "model_args": scoring["model_args"], "windows": windows, "k": k, "out": str(out)}
    cfg_path = out.with_suffix(".in.json")
    write_json_atomic(cfg_path, cfg)
    run_worker(
        "harness.workers.logprobs", ["--config", str(cfg_path)], log, settings, stage="shift", env=scoring.get("env")
    )


def item_flips(ref_samples: Path, cell_samples: Path, iters: int, aggregate: list[str] | None = None) -> dict:
    """Flips per task and metric, and the aggregate drop (mean of each task's primary metric) with a
    paired bootstrap CI stratified by task."""
    out: dict = {"tasks": {}}
    agg_ref, agg_cell, strata = [], [], []
    for path in sorted(cell_samples.glob("*.jsonl")):
        task = path.stem
        ref_path = ref_samples / path.name
        if not ref_path.is_file():
            continue
        per_metric = {}
        for metric in ("acc", "acc_norm"):
            a, b = read_items(ref_path, metric), read_items(path, metric)
            if a and b:
                per_metric[metric] = flips(a, b, iters)
                if PRIMARY.get(task) == metric and (aggregate is None or task in aggregate):
                    ids = sorted(set(a) & set(b))
                    agg_ref += [a[i] for i in ids]
                    agg_cell += [b[i] for i in ids]
                    strata += [task] * len(ids)
        if per_metric:
            out["tasks"][task] = per_metric
    if agg_ref:
        ra, ca, st = np.array(agg_ref), np.array(agg_cell), np.array(strata)
        drops = [ra[st == t].mean() - ca[st == t].mean() for t in np.unique(st)]
        lo, hi = paired_bootstrap(ra, ca, iters, strata=st)
        out["aggregate"] = {
            "metric": "avg_acc",
            "tasks": sorted(set(strata)),
            "drop_abs": float(np.mean(drops)),
            "drop_ci95": [lo, hi],
            "n_items": int(len(ra)),
            "ci": f"paired bootstrap over the same items, stratified by task, {iters} resamples",
        }
    return out


def compare_with_reference(
    cell: CellPlan, scoring: dict, tokenizer_src: str, settings: Settings, work: Path, log: Path
) -> dict | None:
    spec = getattr(cell.evaluation, "shift", None)
    if spec is None:
        return None
    store = ResultStore(settings.results_dir)
    windows = token_prompts(tokenizer_src, spec.corpus, spec.windows, spec.tokens + 1, spec.seed)
    mine = work / "shift" / "logprobs.npz"
    dump_logprobs(scoring, windows, spec.top_k, mine, log, settings)
    result: dict = {
        "dump": str(mine),
        "windows": spec.windows,
        "tokens_per_window": spec.tokens,
        "corpus": spec.corpus,
        "seed": spec.seed,
    }
    if cell.parent_id is None:
        again = work / "shift" / "logprobs-repeat.npz"
        dump_logprobs(scoring, windows, spec.top_k, again, log, settings)
        result["reference"] = "itself (a second pass: determinism check)"
        result["metrics"] = shift_metrics(load_dump(mine), load_dump(again))
        return result
    result["reference"] = cell.parent_id
    host = this_host(settings)
    runs = store.hosts_of(cell.parent_id)  # the parent's results, every host's, read once
    parent_doc = runs.get(host["host_id"])
    elsewhere = sorted(set(runs) - {host["host_id"]})
    if parent_doc is None and elsewhere:
        result["metrics"] = None
        result["note"] = (
            f"the reference {cell.parent_id} has results only from other hosts ({', '.join(elsewhere)}), "
            f"not from this one ({host['host_id']}): a reference must be measured on the same host; "
            f"run the parent here to compare"
        )
        return result
    recorded = ((parent_doc or {}).get("shift") or {}).get("dump")
    # the parent's own record says where its dump lies; the default folder for a parent still running (Ray)
    # (harness/cell.py keeps what a host measured under work/<cell>/<host_id>/)
    parent_work = Path(recorded).parent.parent if recorded else store.work_dir(cell.parent_id) / host["host_id"]
    ref_dump = parent_work / "shift" / "logprobs.npz"
    if ref_dump.is_file():
        result["metrics"] = shift_metrics(load_dump(ref_dump), load_dump(mine))
    else:
        result["metrics"] = None
        result["note"] = f"the reference {cell.parent_id} has no logprob dump (run it again to compare)"
    result["flips"] = item_flips(parent_work / "samples", work / "samples", spec.bootstrap_iters)
    return result
