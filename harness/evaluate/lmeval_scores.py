"""What lm-eval's output becomes in a result: the per-item rows of its samples (`sample_rows`, journaled and kept for
flips and paired intervals) and one task's score from its results dict (`task_score`, the result's
`quality.tasks[name]`). Shared by the fixed-n path and the sequential one (harness/evaluate/lmeval_worker.py,
harness/evaluate/sequential.py); importable without lm-eval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict

from harness.result import Metric, PromptFormat, TaskScore
from harness.spec.evaluation import TaskSpec

if TYPE_CHECKING:
    from harness.evaluate.lmeval_worker import LMEvalJob

GenKwargs = dict[str, str | int | float | bool]  # lm-eval's `--gen_kwargs` (LMEvalSpec.gen_kwargs)


class LMEvalTaskScore(TaskScore):
    """One task as lm-eval scored it: the result's TaskScore fields (the parent adds task_hash, data_source
    and the items), and lm-eval's own detail, kept in the result as the task's extra fields."""

    model_config = ConfigDict(extra="forbid")

    version: int | float | str | None = None  # lm-eval's version of the task's config
    lm_eval_task_hash: str | None = None
    gen_kwargs: GenKwargs | None = None  # the overrides it ran with (None: the task's own)
    wall_s: float = 0.0


def _clean(v):
    if isinstance(v, float) and v != v:  # NaN -> None for JSON consumers
        return None
    return v


def _metric_key(metric: str, flt: str) -> str:
    # lm-eval's own key without its default filter: "acc", "exact_match,strict-match"
    return metric if flt == "none" else f"{metric},{flt}"


def task_metrics(raw: dict[str, Any]) -> dict[str, Metric]:
    """{metric key: its value and stderr} from one row of lm-eval's `results`."""
    metrics = {}
    for key, val in raw.items():
        if (
            key in ("alias", "name", "sample_len", "sample_count")
            or "_stderr," in key
            or isinstance(val, bool)
            or not isinstance(val, (int, float))
        ):
            continue  # lm-eval also reports the task name and sample counts here
        metric, _, flt = key.partition(",")
        stderr = raw.get(f"{metric}_stderr,{flt}")
        metrics[_metric_key(metric, flt or "none")] = Metric(
            value=_clean(val), stderr=_clean(stderr) if isinstance(stderr, (int, float)) else None
        )
    return metrics


def sample_rows(samples: dict[str, list], name: str) -> list[dict]:
    """One row per (subtask, document): its per-item metric values, each filter's under its own key. A
    task with several filters (gsm8k: strict-match, flexible-extract) logs each document once per filter."""
    rows: dict[tuple[str, int], dict] = {}
    for leaf, items in sorted(samples.items()):
        for s in items:
            flt = s.get("filter", "none")
            row = rows.setdefault(
                (leaf, s.get("doc_id")),
                {
                    **({"task": leaf} if leaf != name else {}),
                    "doc_id": s.get("doc_id"),
                    "target": s.get("target"),
                    "filtered_resps": {},
                },
            )
            row["filtered_resps"][flt] = s.get("filtered_resps")
            # a generated answer's raw text (before filters): what a spec-decoded cell's equal-output check
            # compares with its target's (harness/cell/speculative.py); loglikelihood responses are not text
            texts = [r for rr in s.get("resps") or [] for r in (rr if isinstance(rr, list) else [rr])]
            if texts and all(isinstance(t, str) for t in texts):
                row["resps"] = texts
            for m in s.get("metrics") or []:
                if m in s:
                    row[_metric_key(m, flt)] = s[m]
    return list(rows.values())


def write_prompt_example(samples: dict[str, list], name: str, samples_dir: str | Path) -> None:
    """`<samples_dir>/prompts/<task>.json`: the requests of the task's first logged document as the model got them
    (prompt text after any chat template, and a loglikelihood's continuation), so a reader sees the format that was
    applied. One document only: a task's prompts in full would be its size again. Written once per task."""
    out = Path(samples_dir) / "prompts" / f"{name}.json"
    if out.is_file():
        return
    first = min(
        ((leaf, s) for leaf, items in samples.items() for s in items if s.get("arguments")),
        key=lambda x: (x[0], int(x[1].get("doc_id") or 0)),
        default=None,
    )
    if first is None:
        return
    leaf, s = first
    requests = [[a if isinstance(a, str) else repr(a) for a in args] for args in s["arguments"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"task": leaf, "doc_id": s.get("doc_id"), "requests": requests}, indent=1) + "\n")


def _weighted(leaf_metrics: dict[str, dict[str, Metric]], counts: dict[str, int]) -> dict[str, Metric]:
    """A tag's metrics (lm-eval reports none for a tag): each metric's document-weighted mean over the
    subtasks that have it; no stderr (the subtasks' are not combined here)."""
    out = {}
    keys = {k for m in leaf_metrics.values() for k in m}
    for k in sorted(keys):
        pairs = [(m[k].value, counts.get(t, 0)) for t, m in leaf_metrics.items() if k in m]
        total = sum(n for v, n in pairs if v is not None)
        if total:
            out[k] = Metric(value=sum(v * n for v, n in pairs if v is not None) / total, stderr=None)
    return out


def task_score(
    res: dict[str, Any],
    name: str,
    t: TaskSpec,
    rows: list[dict],
    wall_s: float,
    job: LMEvalJob,
    leaves: list[str] | None = None,
    fmt: PromptFormat | None = None,
) -> LMEvalTaskScore:
    """One task's score from lm-eval's results dict (`simple_evaluate`'s, or the sequential path's aggregation
    over the items it used) and the task's sample rows."""
    samples = res.get("samples", {})
    leaves = leaves or sorted(samples) or [name]
    n_samples = res.get("n-samples", {})
    counts = {leaf: int((n_samples.get(leaf) or {}).get("effective") or 0) for leaf in leaves}
    leaf_metrics = {leaf: task_metrics(res["results"].get(leaf, {})) for leaf in leaves}
    # a group has its own aggregate row (mmlu: acc weighted by size); a tag has none
    metrics = task_metrics(res["results"][name]) if name in res["results"] else _weighted(leaf_metrics, counts)
    shots = {res.get("n-shot", {}).get(leaf) for leaf in leaves}
    return LMEvalTaskScore(
        metrics=metrics,
        n=sum(counts.values()),
        n_total=sum(int((n_samples.get(leaf) or {}).get("original") or 0) for leaf in leaves),
        limit=t.limit,
        num_fewshot=shots.pop() if len(shots) == 1 else None,  # the effective count lm-eval used
        version=res.get("versions", {}).get(name),
        lm_eval_task_hash=(res.get("task_hashes") or {}).get(name),
        subtasks={leaf: {k: v.value for k, v in m.items()} for leaf, m in leaf_metrics.items() if m}
        if leaves != [name]
        else {},
        gen_kwargs=job.gen_kwargs or None,
        wall_s=wall_s,
        prompt_format=fmt,
    )
