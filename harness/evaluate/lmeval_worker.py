"""Worker: lm-eval on a cell, one task at a time, in the serving environment; started by the lm-eval
evaluator plugin (harness/evaluate/lmeval.py).

`LMEvalJob` in: how to score (the serving plugin's `Scoring`: `local-completions` against a running
OpenAI-compatible server, or an in-process model over the same artefact), the tasks with limit/few-shot, each
task's prompt format (`formats`: chat template or not, multi-turn few-shot, system message; lm-eval applies them
per call, so each task is its own `simple_evaluate` call), lm-eval's include path, the offline leaves to redirect
to packaged data, the evaluation spec's knobs, and, for a
matrix with `decide:`, the sequential evaluation of its measured tasks (`sequential`, scored item by item until
the question is decided by harness/evaluate/sequential.py; the record's `decision`). The lm-eval model is built
once per cell (`build_lm`) and serves every task and batch: an in-process model loads once.
Started ahead of its job (harness/worker_ahead.py, while a vLLM server starts), the worker also builds its
tasks from the parent's hint (`LMEvalWarm`, `warm`): lm-eval's task manager, the sequentially measured tasks'
objects and documents, and the objects that `simple_evaluate` would build for each task scored once, their
evaluation splits already processed (harness/evaluate/lmeval_quick.docs_once): 3-10 s per cell on a 2-core
host that otherwise ran after the server was up. The job uses them only when its own `LMEvalWarm` equals the
hint; otherwise it builds them as without.
`LMEvalRecord` back: per task, what becomes the result's `quality.tasks[name]` (harness/result.TaskScore:
metrics with stderr, sample counts, a group's subtasks, the prompt format with the sha256 of the chat template
text used) plus lm-eval's own detail (its task version and hash,
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.decide.question import SequentialSpec
from harness.evaluate.catalog import Leaf
from harness.evaluate.lmeval_scores import GenKwargs, LMEvalTaskScore, sample_rows, task_score, write_prompt_example
from harness.jobs import Job, Record
from harness.result import Decision, PromptFormat
from harness.serve.scoring import Scoring
from harness.spec.chat import ChatFormat
from harness.spec.evaluation import TaskSpec


class LMEvalRecord(Record):
    tasks: dict[str, LMEvalTaskScore] = Field(default_factory=dict)
    lm_eval_version: str | None = None
    decision: Decision | None = None  # the sequential evaluation's answer (a job with `sequential`)


class LMEvalJob(Job[LMEvalRecord]):
    worker = "harness.evaluate.lmeval_worker:work"
    # started ahead of its job (harness/worker_ahead.py): lm-eval, and the torch and transformers its model's
    # tokenizer pulls in, are most of the worker's first seconds
    warm_with = "harness.evaluate.lmeval_worker:warm"  # the measured tasks, from an `LMEvalWarm` hint
    warm_imports = (
        "harness.evaluate.lmeval_worker",
        "lm_eval.evaluator",
        "lm_eval.api.registry",
        "harness.evaluate.api_lm",
        "transformers.models.auto.tokenization_auto",
    )

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
    # each task's prompt format (LMEvalSpec.chat_format: its own settings over the evaluation's); a task not
    # named is plain. lm-eval applies a format per call, so tasks of different formats are scored apart.
    formats: dict[str, ChatFormat] = Field(default_factory=dict)
    gen_kwargs: GenKwargs = Field(default_factory=dict)
    # the matrix's opt-in to executing model-written code: lm-eval's confirm_run_unsafe_code, and the `allowed` of
    # every sandboxed program the humaneval metric runs (harness/evaluate/code_metric.py)
    allow_code_execution: bool = False
    # the matrix's `decide:` question: its measured tasks are scored sequentially (harness/evaluate/sequential.py),
    # the others once with their limit as without it
    sequential: SequentialSpec | None = None

    def format_of(self, task: str) -> ChatFormat:
        return self.formats.get(task) or ChatFormat()

    def templated(self) -> list[str]:
        """The tasks scored with the chat template."""
        return [t.name for t in self.tasks if self.format_of(t.name).apply_chat_template]


class LMEvalWarm(BaseModel):
    """The part of an `LMEvalJob` that builds its tasks: known before the cell's server is up, unlike the job's
    scoring. The parent sends it as the hint of the worker it starts ahead
    (harness/evaluate/lmeval.py `start_ahead`); the worker's `warm` builds from it; `work` takes what was built
    only when `LMEvalWarm.of(job)` equals it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include_path: str
    offline_leaves: dict[str, Leaf]
    data_dir: str
    index_cache: str | None
    samples_dir: str
    measured: list[TaskSpec]  # the measured tasks, in the job's order
    fixed: list[TaskSpec] = Field(default_factory=list)  # the tasks scored once (`simple_evaluate`), in order
    gen_kwargs: GenKwargs
    seed: int
    allow_code_execution: bool

    @classmethod
    def of(cls, job: LMEvalJob) -> LMEvalWarm | None:
        """What a worker started ahead could build for `job`; None when nothing: no task, or a long-context task
        (its tasks folder is made with the cell's tokenizer, harmless to build twice but part of the task
        manager's include path)."""
        from harness.spec.context_lengths import split_length_task

        seq = job.sequential
        measure = seq.measure if seq is not None else []
        if not job.tasks or any(split_length_task(name)[1] is not None for t in job.tasks for name in _keys(t)):
            return None
        return cls(
            include_path=job.include_path,
            offline_leaves=job.offline_leaves,
            data_dir=job.data_dir,
            index_cache=job.index_cache,
            samples_dir=job.samples_dir,
            measured=[t for t in job.tasks if t.name in measure],
            fixed=[t for t in job.tasks if t.name not in measure],
            gen_kwargs=job.gen_kwargs,
            seed=job.seed,
            allow_code_execution=job.allow_code_execution,
        )


def _keys(t: TaskSpec) -> list[str]:
    """The result keys a task spec expands to (`dq_niah@4096` per context length)."""
    from harness.spec.context_lengths import expand

    return [key for key, _ in expand(t)]


@dataclass
class Prepared:
    """What `warm` built: lm-eval's task manager, the measured tasks' configured objects, and what
    `simple_evaluate` takes for each task scored once (`prebuild`), by name."""

    hint: LMEvalWarm
    tm: Any
    loaded: dict[str, dict]
    fixed: dict[str, list] = field(default_factory=dict)


_PREPARED: list[Prepared] = []  # at most one: this process's job-to-come


def prebuild(tm: Any, name: str, seed: int) -> list:
    """The objects lm-eval's `TaskManager.load` builds for the task, group or tag `name`, with every leaf's
    evaluation split read (processed once and kept: lmeval_quick.docs_once); `simple_evaluate(tasks=...)` takes
    them in place of the name and configures them as it would have (lm-eval 0.4.13 `TaskManager.load` passes a
    Task or Group through as it is). The global generators are seeded first, as `simple_evaluate` seeds them
    before it builds: a task whose process_docs draws from them (gpqa shuffles its choices) gets the documents
    it would get built there."""
    import random
    import sys

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    loaded = tm.load([name])
    for task in loaded["tasks"].values():
        _ = task.eval_docs  # the split processed now, while the server starts
    return [loaded["groups"][name]] if name in loaded["groups"] else list(loaded["tasks"].values())


def warm(hint: dict[str, Any]) -> None:
    """Build the tasks of the job to come (a worker started ahead, harness/worker_ahead.py)."""
    from harness.evaluate import code_metric, lmeval_quick
    from harness.evaluate.sequential import load_measured
    from harness.evaluate.task_index import task_manager

    w = LMEvalWarm.model_validate(hint)
    code_metric.allow(w.allow_code_execution)  # as `work` sets it before any task is built
    lmeval_quick.install()
    include = [w.include_path, render_offline(w, Path(w.samples_dir).parent)]
    tm = task_manager([p for p in include if p], Path(w.index_cache) if w.index_cache else None)
    loaded = {t.name: load_measured(tm, t, w.gen_kwargs, w.seed) for t in w.measured}
    fixed = {t.name: prebuild(tm, t.name, w.seed) for t in w.fixed}
    _PREPARED[:] = [Prepared(hint=w, tm=tm, loaded=loaded, fixed=fixed)]


def take_prepared(job: LMEvalJob) -> Prepared | None:
    """What `warm` built, when it was built for this job (taken once)."""
    ready, _PREPARED[:] = list(_PREPARED), []
    if not ready:
        return None
    if ready[0].hint != LMEvalWarm.of(job):
        print("the tasks prepared ahead were for another job: building them again", flush=True)
        return None
    return ready[0]


def template_sha256(lm: Any, job: LMEvalJob) -> str | None:
    """sha256 of the chat template text the cell's LM renders prompts with (None: no task asks for it). The
    text is lm-eval's own choice (`LM.chat_template(True)`: the tokenizer's template, its `default` of several),
    which is what our models' `apply_chat_template` renders with (the tokenizer's default template); a tokenizer
    without one is refused here, before any task is scored, rather than each prompt failing in transformers."""
    import hashlib

    tasks = job.templated()
    if not tasks:
        return None
    text = lm.chat_template(True)
    if not text:
        raise RuntimeError(
            f"evaluation: {', '.join(tasks)} ask(s) for the chat template, and the tokenizer of this cell "
            f"({job.scoring.model_args.get('tokenizer')}) has none (no chat_template in tokenizer_config.json, no "
            f"chat_template.jinja): set `apply_chat_template: false` for them, or score a model that has one"
        )
    return hashlib.sha256(str(text).encode()).hexdigest()


def prompt_format(job: LMEvalJob, task: str, sha: str | None) -> PromptFormat:
    """What the result records of `task`'s prompt format: its settings and, when templated, the template's hash."""
    fmt = job.format_of(task)
    return PromptFormat(**fmt.model_dump(), template_sha256=sha if fmt.apply_chat_template else None)


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


def render_offline(job: LMEvalJob | LMEvalWarm, workdir: Path) -> str | None:
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


def work(job: LMEvalJob) -> LMEvalRecord:
    import random

    import lm_eval
    import lm_eval.evaluator
    import numpy as np

    from harness.evaluate import code_metric, lmeval_quick
    from harness.evaluate.niah import prepare_length_tasks
    from harness.evaluate.task_index import task_manager

    code_metric.allow(job.allow_code_execution)  # before any task is built: its metric reads it per program
    quick = lmeval_quick.install()  # before any task is built; its docstring says what and why
    print(f"lm-eval: {', '.join(quick) or 'as installed'} (harness/evaluate/lmeval_quick.py)", flush=True)

    samples_dir = Path(job.samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    # a long-context task once per length (`dq_niah@4096`), its documents sized with the cell's tokenizer
    tasks, niah_dir = prepare_length_tasks(job, samples_dir.parent)
    prepared = take_prepared(job)  # built by this worker ahead of its job (`warm`), or None
    if prepared is not None:
        tm = prepared.tm
    else:
        include = [job.include_path, render_offline(job, samples_dir.parent), niah_dir]
        # lm-eval's own task folder indexed once, not in every cell (harness/evaluate/task_index.py)
        tm = task_manager([p for p in include if p], Path(job.index_cache) if job.index_cache else None)
    lm = build_lm(job)
    version = getattr(lm_eval, "__version__", None)
    out = LMEvalRecord(lm_eval_version=version)
    seq = job.sequential
    scores: dict[str, LMEvalTaskScore] = {}
    res: dict[str, Any] = {}
    sha = template_sha256(lm, job)
    if sha is not None:
        print(f"chat template sha256 {sha} for {', '.join(job.templated())}", flush=True)
    for name, t in tasks:
        if seq is not None and name in seq.measure:
            continue  # scored below, item by item
        t0 = time.monotonic()
        # one simple_evaluate per task: each call carries its task's own format (a length's: its task's)
        fmt = job.format_of(t.name)
        _watch_requests(lm_eval.evaluator, name)
        built = prepared.fixed.pop(name, None) if prepared is not None else None
        res = lm_eval.simple_evaluate(
            model=lm,
            tasks=built or [name],  # built ahead: the objects it would build from the name
            num_fewshot=t.num_fewshot,
            limit=t.limit,
            task_manager=tm,
            log_samples=True,
            random_seed=job.seed,
            numpy_random_seed=job.seed,
            torch_random_seed=job.seed,
            fewshot_random_seed=job.seed,
            apply_chat_template=fmt.apply_chat_template,
            fewshot_as_multiturn=fmt.fewshot_as_multiturn,  # explicit: simple_evaluate's own default is True
            system_instruction=fmt.system_instruction,
            gen_kwargs=job.gen_kwargs or None,
            confirm_run_unsafe_code=job.allow_code_execution,
            bootstrap_iters=1000,
        )
        rows = sample_rows(res.get("samples", {}), name)
        write_prompt_example(res.get("samples", {}), name, samples_dir)
        with open(samples_dir / f"{name}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
        scores[name] = task_score(res, name, t, rows, time.monotonic() - t0, job, fmt=prompt_format(job, t.name, sha))
        shown = {k: v.model_dump() for k, v in scores[name].metrics.items()}
        print(f"{name}: {json.dumps(shown)} ({time.monotonic() - t0:.1f} s)", flush=True)
    if seq is not None:
        from harness.evaluate.sequential import run_sequential

        random.seed(job.seed)  # as simple_evaluate seeds before scoring (a sampling model reads them)
        np.random.seed(job.seed)
        _watch_requests(lm_eval.evaluator, "+".join(seq.measure))
        loaded = prepared.loaded if prepared is not None else None
        measured, out.decision = run_sequential(job, lm, tm, samples_dir, version, sha, loaded)
        scores.update(measured)
        for name, score in measured.items():
            shown = {k: v.model_dump() for k, v in score.metrics.items()}
            print(f"{name}: {json.dumps(shown)} (sequential, {score.n} items)", flush=True)
    out.tasks = {name: scores[name] for name, _ in tasks if name in scores}
    out.lm_eval_version = out.lm_eval_version or res.get("config", {}).get("lm_eval_version")
    return out
