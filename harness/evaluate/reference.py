"""A cell against its reference: distribution shift on fixed token windows and per-item flips.

The reference is the cell's parent (the uncompressed model; for a student, its teacher). Every cell
dumps its own top-k prompt logprobs once per attempt (`work/<cell>/<host>/shift/<attempt>/logprobs.npz`), so a
child compares with its parent's dump; the root also dumps a second time and compares with itself, a
determinism check that must read KL 0 and agreement 100%. The dump stays a file under work/: it is an artefact
the next cell's comparison reads, not a score (the figures computed from it are stored in the result's
`shift`, with the dump's path). Each attempt writes its own folder and a child reads exactly the file its
parent's stored result names: a later attempt of the parent that fails (its `done` result stays) can no longer
overwrite the dump that result was computed from. `harness gc` removes the attempts no result names.

Flips and paired CIs compare per-item scores, which live in the results (`quality.tasks[*].items`): the
parent's come from its stored result (ResultStore), the cell's from its own evaluate step; no sample file
under work/ is read for them.

The reference must have been measured on the same host (results are per (cell id, host id),
harness/store/results.py): logprobs and items from another ISA differ in the last digits, which would
read as a drop. A parent whose only results come from other hosts is not compared against.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from harness.evaluate.items import read_sample_items
from harness.evaluate.logprobs_worker import LogprobsDump, LogprobsJob
from harness.evaluate.shift import flips, load_dump, paired_bootstrap, shift_metrics
from harness.measure.prompts import token_prompts
from harness.plan.cell import CellPlan
from harness.proc import run_worker
from harness.result import PromptFormat, Quality, TaskScore
from harness.result_facts import primary_metric
from harness.serve.scoring import Scoring
from harness.settings import Settings
from harness.spec.metrics import AGGREGATE
from harness.store.hosts import this_host
from harness.store.results import ResultStore


def dump_logprobs(
    scoring: Scoring, windows: list[list[int]], k: int, out: Path, log: Path, settings: Settings
) -> LogprobsDump:
    job = LogprobsJob(scoring=scoring, windows=windows, k=k, out=str(out))
    return run_worker(job, log, settings, stage="shift", env=scoring.env)


def attempt_folder(work: Path) -> Path:
    """A new folder for this attempt's dumps under `work`/shift: its UTC time, pid and a random part, so two
    attempts never share one (a Ray retry on another node included)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return work / "shift" / f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _here(recorded: Path, store: ResultStore) -> Path:
    """A path a stored result names, or the same place under this results folder when the folder was moved."""
    if recorded.is_file() or "work" not in recorded.parts:
        return recorded
    i = len(recorded.parts) - 1 - recorded.parts[::-1].index("work")
    moved = store.root.joinpath(*recorded.parts[i:])
    return moved if moved.is_file() else recorded


def _link_or_copy(src: Path, dst: Path) -> None:
    """`dst` with `src`'s bytes: a hard link where both lie on one file system (no space), else a copy."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def format_mismatch(ref: TaskScore, cell: TaskScore) -> str | None:
    """Why a task's items in the cell and in its reference were not scored on the same prompts (None: they
    were): a different chat template, multi-turn setting, system message or template text. A result from before
    formats were recorded counts as plain; it pairs with a plain score, never with a chat-templated one."""
    mine, theirs = cell.prompt_format or PromptFormat(), ref.prompt_format or PromptFormat()
    if (cell.prompt_format is None) != (ref.prompt_format is None) and (mine.template_sha256 or theirs.template_sha256):
        side = "reference's" if ref.prompt_format is None else "cell's"
        return f"the {side} prompt format is not recorded, the other's applies a chat template"
    return theirs.mismatch(mine)


def item_flips(ref: Quality, cell: Quality, iters: int, aggregate: list[str] | None = None) -> dict:
    """Flips per task and metric between the reference's and the cell's per-item scores, and the aggregate
    drop (mean of each task's primary metric) with a paired bootstrap CI stratified by task. A task whose
    prompts were formatted differently on the two sides (`format_mismatch`) is not paired: it is listed under
    `refused` with the reason, and left out of the aggregate."""
    out: dict = {"tasks": {}}
    agg_ref: list[float] = []  # item keys are doc ids, or "<subtask>:<doc_id>" in a group
    agg_cell: list[float] = []
    strata: list[str] = []
    for task in sorted(cell.tasks):
        if task not in ref.tasks:
            continue
        why = format_mismatch(ref.tasks[task], cell.tasks[task])
        if why:
            out.setdefault("refused", {})[task] = why
            continue
        per_metric = {}
        for metric in cell.tasks[task].item_metrics():
            a, b = ref.items(task, metric), cell.items(task, metric)
            if a and b:
                per_metric[metric] = flips(a, b, iters)
                if primary_metric(task) == metric and (aggregate is None or task in aggregate):
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
            "metric": AGGREGATE,
            "tasks": sorted(set(strata)),
            "drop_abs": float(np.mean(drops)),
            "drop_ci95": [lo, hi],
            "n_items": len(ra),
            "ci": f"paired bootstrap over the same items, stratified by task, {iters} resamples",
        }
    return out


def _fresh_quality(samples: Path) -> Quality:
    """The per-item scores a cell's evaluate step just wrote, for a caller that does not pass its quality."""
    return Quality(tasks={p.stem: TaskScore(items=read_sample_items(p)) for p in sorted(samples.glob("*.jsonl"))})


def compare_with_reference(
    cell: CellPlan,
    scoring: Scoring,
    tokenizer_src: str,
    settings: Settings,
    work: Path,
    log: Path,
    quality: Quality | dict | None = None,
    same_dump: tuple[Path, str] | None = None,
) -> dict | None:
    """The `shift` block of the cell's result (None when the evaluation has no shift spec). `quality`: the
    cell's own quality block with its items (else they are read from the samples its evaluate step just
    wrote under `work`/samples). `same_dump`: a dump the cell's own would equal byte for byte, and why (a
    spec-decoded cell scored in-process on its target's artefact, harness/cell/speculative.py): it becomes this
    attempt's dump (a hard link, else a copy: the attempt owns its file) and no worker runs."""
    spec = getattr(cell.evaluation, "shift", None)
    if spec is None:
        return None
    store = ResultStore(settings.results_dir)
    mine = attempt_folder(work) / "logprobs.npz"
    if same_dump is not None:
        _link_or_copy(same_dump[0], mine)
    else:
        windows = token_prompts(tokenizer_src, spec.corpus, spec.windows, spec.tokens + 1, spec.seed)
        dump_logprobs(scoring, windows, spec.top_k, mine, log, settings)
    result: dict = {
        "dump": str(mine),
        "windows": spec.windows,
        "tokens_per_window": spec.tokens,
        "corpus": spec.corpus,
        "seed": spec.seed,
    }
    if same_dump is not None:
        result["dump_from"] = {"path": str(same_dump[0]), "why": same_dump[1]}
    if cell.parent_id is None:
        again = mine.with_name("logprobs-repeat.npz")
        dump_logprobs(scoring, windows, spec.top_k, again, log, settings)
        result["reference"] = "itself (a second pass: determinism check)"
        result["metrics"] = shift_metrics(load_dump(mine), load_dump(again))
        return result
    result["reference"] = cell.parent_id
    host = this_host(settings)
    runs = store.hosts_of(cell.parent_id)  # the parent's results, every host's, read once
    parent = runs.get(host["host_id"])
    elsewhere = sorted(set(runs) - {host["host_id"]})
    if parent is None and elsewhere:
        result["metrics"] = None
        result["note"] = (
            f"the reference {cell.parent_id} has results only from other hosts ({', '.join(elsewhere)}), "
            f"not from this one ({host['host_id']}): a reference must be measured on the same host; "
            f"run the parent here to compare"
        )
        return result
    recorded = ((parent.shift if parent else None) or {}).get("dump")
    # exactly the dump the parent's stored result was computed from (no other attempt's, see the docstring),
    # where the results folder is now if it was moved or copied since
    ref_dump = _here(Path(recorded), store) if recorded else None
    if ref_dump is not None and ref_dump.is_file():
        result["metrics"] = shift_metrics(load_dump(ref_dump), load_dump(mine))
    else:
        result["metrics"] = None
        why = (
            "no stored result on this host"
            if parent is None
            else f"its dump {ref_dump} is gone"
            if ref_dump
            else "none"
        )
        result["note"] = f"the reference {cell.parent_id} has no logprob dump ({why}; run it again to compare)"
    mine_q = Quality.model_validate(quality) if quality is not None else _fresh_quality(work / "samples")
    ref_q = parent.quality if parent is not None and parent.quality is not None else Quality()
    result["flips"] = item_flips(ref_q, mine_q, spec.bootstrap_iters)
    if not any(t.items for t in ref_q.tasks.values()):
        why = (
            f"its result was upgraded from schema {parent.upgraded_from} without its work/ samples"
            if parent is not None and parent.upgraded_from
            else "it has no stored result on this host yet"
            if parent is None
            else "its result holds none"
        )
        result["flips_note"] = f"the reference {cell.parent_id} has no per-item scores ({why}): no flips"
    return result
