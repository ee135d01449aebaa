"""Worker: lm-eval on a cell, one task at a time, in the serving environment; started by the lm-eval
evaluator plugin (harness/evaluate/lmeval.py).

`LMEvalJob` in: how to score (the serving plugin's `Scoring`: `local-completions` against a running
OpenAI-compatible server, or an in-process model over the same artefact), the tasks with limit/few-shot,
lm-eval's include path, the offline leaves to redirect to packaged data, the evaluation spec's knobs, and, for a
matrix with `decide:`, the sequential evaluation of its measured tasks (`sequential`, scored item by item until
the question is decided by harness/evaluate/sequential.py; the record's `decision`). The lm-eval model is built
once per cell (`build_lm`) and serves every task and batch: an in-process model loads once.
`LMEvalRecord` back: per task, what becomes the result's `quality.tasks[name]` (harness/result.TaskScore:
metrics with stderr, sample counts, a group's subtasks) plus lm-eval's own detail (its task version and hash,
the wall time); per-item samples go to `<samples_dir>/<task>.jsonl` (for flip analysis). Loglikelihood
through a server needs its prompt logprobs (`echo` + `logprobs`), which vLLM returns.

Progress: `_watch_requests` reports requests done/total per task and request type (harness/proc.py
WorkerProgress). lm-eval has no progress callback; the hook wraps the LM instance that simple_evaluate
hands to `lm_eval.evaluator.evaluate`: each request-type method gives the total (len(requests)), and the
LM's `cache_hook.add_partial`, which lm-eval's models (TemplateAPI, our llama.cpp LM) call once per
answered request, gives the count. If a later lm-eval moves either, only the live line is lost.

Importable without lm-eval (the parent builds the job with it): lm_eval is imported inside `work`.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from harness.decide.question import SequentialSpec
from harness.evaluate.catalog import Leaf
from harness.jobs import Job, Record
from harness.result import Decision, Metric, TaskScore
from harness.serve.scoring import Scoring
from harness.spec.evaluation import TaskSpec

GenKwargs = dict[str, str | int | float | bool]  # lm-eval's `--gen_kwargs` (LMEvalSpec.gen_kwargs)


class LMEvalTaskScore(TaskScore):
    """One task as lm-eval scored it: the result's TaskScore fields (the parent adds task_hash, data_source
    and the items), and lm-eval's own detail, kept in the result as the task's extra fields."""

    model_config = ConfigDict(extra="forbid")

    version: int | float | str | None = None  # lm-eval's version of the task's config
    lm_eval_task_hash: str | None = None
    gen_kwargs: GenKwargs | None = None  # the overrides it ran with (None: the task's own)
    wall_s: float = 0.0


class LMEvalRecord(Record):
    tasks: dict[str, LMEvalTaskScore] = Field(default_factory=dict)
    lm_eval_version: str | None = None
    decision: Decision | None = None  # the sequential evaluation's answer (a job with `sequential`)


class LMEvalJob(Job[LMEvalRecord]):
    worker = "harness.evaluate.lmeval_worker:work"

    scoring: Scoring  # the lm-eval model, its arguments, the module that registers it (in-process scoring)
    tasks: list[TaskSpec]
    include_path: str  # dqbench's dq_* task YAMLs (harness/evaluate/data.TaskData.task_dir)
    # lm-eval's own leaf tasks read from the packaged data (harness/evaluate/overrides.py), by name
    offline_leaves: dict[str, Leaf] = Field(default_factory=dict)
    data_dir: str  # the prepared data folder the offline leaves read
    index_cache: str | None = None  # lm-eval's task folder indexed once (harness/evaluate/task_index.py)
    samples_dir: str  # where `<task>.jsonl` per-item samples are written
    num_concurrent: int
    max_length: int
    batch_size: int
    seed: int
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None
    gen_kwargs: GenKwargs = Field(default_factory=dict)
    # the matrix's `decide:` question: its measured tasks are scored sequentially (harness/evaluate/sequential.py),
    # the others once with their limit as without it
    sequential: SequentialSpec | None = None


def _clean(v):
    if isinstance(v, float) and v != v:  # NaN -> None for JSON consumers
        return None
    return v


REQUEST_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")


def _watch_requests(evaluator_module, task: str) -> None:
    """Make `evaluator_module.evaluate` report this task's requests done/total (see the module docstring)."""
    from harness.proc import WorkerProgress

    orig = getattr(evaluator_module, "_dq_orig_evaluate", None) or evaluator_module.evaluate
    evaluator_module._dq_orig_evaluate = orig

    def evaluate(*args, **kwargs):
        lm = kwargs.get("lm", args[0] if args else None)
        try:
            _instrument(lm, task, WorkerProgress)
        except Exception as exc:  # noqa: BLE001 - progress is best-effort
            print(f"progress: lm-eval hook not installed ({type(exc).__name__}: {exc})", flush=True)
        return orig(*args, **kwargs)

    evaluator_module.evaluate = evaluate


def _instrument(lm, task: str, progress_cls) -> None:
    """Count `lm`'s requests for the live line, labelled `task`. An LM reused across tasks and batches (one per
    cell) is wrapped once; later calls only change the label."""
    known = getattr(lm, "_dq_progress", None)
    if known is not None:
        known["task"] = task
        return
    state: dict[str, Any] = {"reqtype": None, "done": 0, "report": None, "task": task}
    lm._dq_progress = state
    hook = lm.cache_hook

    class CountingHook:
        def __getattr__(self, name):
            return getattr(hook, name)

        def add_partial(self, attr, req, res):
            hook.add_partial(attr, req, res)
            # inner calls (a rolling request's windows go through loglikelihood) are not counted
            if attr == state["reqtype"] and state["report"] is not None:
                state["done"] += 1
                state["report"].update(min(state["done"], state["report"].total or state["done"]))

    lm.cache_hook = CountingHook()
    for rt in REQUEST_TYPES:
        method = getattr(lm, rt, None)
        if method is None:
            continue

        def wrapped(requests, *a, _rt=rt, _m=method, **kw):
            outer = state["reqtype"] is None
            if outer:
                state.update(
                    reqtype=_rt,
                    done=0,
                    report=progress_cls(f"lm-eval {state['task']} {_rt}", "requests", total=len(requests)),
                )
                state["report"].update(0, force=True)
            try:
                res = _m(requests, *a, **kw)
                if outer:
                    state["report"].update(len(requests), force=True)
                return res
            finally:
                if outer:
                    state["reqtype"] = None

        setattr(lm, rt, wrapped)


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


def render_offline(job: LMEvalJob, workdir: Path) -> str | None:
    """lm-eval's own configs of the offline tasks, data redirected (harness/evaluate/overrides.py)."""
    if not job.offline_leaves:
        return None
    import lm_eval

    from harness.evaluate.overrides import render

    root = Path(lm_eval.__file__).parent / "tasks"
    return str(render(job.offline_leaves, root, Path(job.data_dir), workdir / "lmeval-tasks"))


def build_lm(job: LMEvalJob) -> Any:
    """The cell's one lm-eval LM instance, as `simple_evaluate` would build it from the model name and arguments
    (lm-eval 0.4.13): reused for every task and batch, so an in-process model loads once per cell."""
    import lm_eval.api.registry

    if job.scoring.register_module:  # a dqbench lm-eval model (in-process scoring) registers itself on import
        importlib.import_module(job.scoring.register_module)
    # the serving plugin's arguments (where and how to score), then the evaluation spec's knobs
    model_args = {
        **job.scoring.model_args,
        "max_length": job.max_length,
        "batch_size": job.batch_size,
        "seed": job.seed,
        "num_concurrent": job.num_concurrent,
    }
    return lm_eval.api.registry.get_model(job.scoring.model).create_from_arg_obj(
        model_args, {"batch_size": None, "max_batch_size": None, "device": None}
    )


def task_score(
    res: dict[str, Any],
    name: str,
    t: TaskSpec,
    rows: list[dict],
    wall_s: float,
    job: LMEvalJob,
    leaves: list[str] | None = None,
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
    )


def work(job: LMEvalJob) -> LMEvalRecord:
    import random

    import lm_eval
    import lm_eval.evaluator
    import numpy as np

    from harness.evaluate.task_index import task_manager

    samples_dir = Path(job.samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    include = [job.include_path, render_offline(job, samples_dir.parent)]
    # lm-eval's own task folder indexed once, not in every cell (harness/evaluate/task_index.py)
    tm = task_manager([p for p in include if p], Path(job.index_cache) if job.index_cache else None)
    lm = build_lm(job)
    version = getattr(lm_eval, "__version__", None)
    out = LMEvalRecord(lm_eval_version=version)
    seq = job.sequential
    scores: dict[str, LMEvalTaskScore] = {}
    res: dict[str, Any] = {}
    for t in job.tasks:
        if seq is not None and t.name in seq.measure:
            continue  # scored below, item by item
        t0 = time.monotonic()
        name = t.name
        _watch_requests(lm_eval.evaluator, name)
        res = lm_eval.simple_evaluate(
            model=lm,
            tasks=[name],
            num_fewshot=t.num_fewshot,
            limit=t.limit,
            task_manager=tm,
            log_samples=True,
            random_seed=job.seed,
            numpy_random_seed=job.seed,
            torch_random_seed=job.seed,
            fewshot_random_seed=job.seed,
            apply_chat_template=job.apply_chat_template,
            fewshot_as_multiturn=job.fewshot_as_multiturn,
            system_instruction=job.system_instruction,
            gen_kwargs=job.gen_kwargs or None,
            bootstrap_iters=1000,
        )
        rows = sample_rows(res.get("samples", {}), name)
        with open(samples_dir / f"{name}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
        scores[name] = task_score(res, name, t, rows, time.monotonic() - t0, job)
        shown = {k: v.model_dump() for k, v in scores[name].metrics.items()}
        print(f"{name}: {json.dumps(shown)} ({time.monotonic() - t0:.1f} s)", flush=True)
    if seq is not None:
        from harness.evaluate.sequential import run_sequential

        random.seed(job.seed)  # as simple_evaluate seeds before scoring (a sampling model reads them)
        np.random.seed(job.seed)
        _watch_requests(lm_eval.evaluator, "+".join(seq.measure))
        measured, out.decision = run_sequential(job, lm, tm, samples_dir, version)
        scores.update(measured)
        for name, score in measured.items():
            shown = {k: v.model_dump() for k, v in score.metrics.items()}
            print(f"{name}: {json.dumps(shown)} (sequential, {score.n} items)", flush=True)
    out.tasks = {t.name: scores[t.name] for t in job.tasks if t.name in scores}
    out.lm_eval_version = out.lm_eval_version or res.get("config", {}).get("lm_eval_version")
    return out
