"""A spec-decoded cell's own work (issue #28): its draft, its evaluation, its speed-up and its equal-output check.

- `build_draft`: the draft the server loads. A student draft is its student cell (the plan's `draft.cell`) run
  through that cell's own prepare, distill and compress steps, in that cell's work folder (so the grid's cell of
  the same id and the draft are one artefact; the student comes from the student cache), its logs under the spec
  cell's `draft/`; a hub/local draft is prepared by its model source. Their tokenizers' vocabularies must be the
  target's (compared where both folders have a tokenizer.json).
- `target_work`: the target's work folder, where the spec cell's compress finds (or makes) the target's artefact.
- `evaluate_spec`: lm-eval on the cell. A draft changes only what the server generates, so tasks scored without
  the server (llama.cpp cells score loglikelihoods in-process on the same GGUF file) cannot differ from the
  target's: they are taken from the target's result on this host, said so in `equal_output.inherited`; every
  task the server answers is scored again.
- `target_dump`: the shift step's logprob dump, taken from the target the same way (the flips are the cell's own).
- `with_speedups`: each level's output tok/s over the same level of the target's result on this host.
- `speculative_block`: the draft, the prediction (harness/plan/speculative.py), acceptance over the levels, the
  speed-up at c1 and at the top concurrency, and `equal_output` against the target. Any difference in greedy
  output is flagged as an engine fault (the target verifies every drafted token), never read as a quality drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import StageError
from harness.plan.speculative import prediction, vocab_fingerprint
from harness.result import CellResult, Level, Perf, Quality, TaskScore, is_item_metric
from harness.result_engine import EqualOutput, Speculative
from harness.serve.speculative import DraftModel
from harness.store.results import ResultStore
from harness.workspace import CellPaths

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness.cell.context import CellRun

    StepFn = Callable[[CellRun], None]
    from harness.spec.evaluation import TaskSpec

# relative difference of a task's aggregate metric read as "the same" (a perplexity summed in another order)
METRIC_RTOL = 1e-6
EXAMPLES = 5


def _store(run: CellRun) -> ResultStore:
    return ResultStore(run.settings.results_dir)


def target_result(run: CellRun) -> CellResult | None:
    """The target's done result on this host (None: not run here, or failed)."""
    draft = run.need(run.cell.draft, "the cell's draft")
    res = _store(run).read(draft.target_id, run.host["host_id"])
    return res if res is not None and res.done else None


def target_work(run: CellRun) -> CellPaths:
    """The spec cell's paths with the target's work folder: its compress reuses (or makes) the target's artefact."""
    draft = run.need(run.cell.draft, "the cell's draft")
    return CellPaths(
        cell_id=run.paths.cell_id,
        logs=run.paths.logs,
        work=_store(run).work_dir(draft.target_id),
        measured=run.paths.measured,
    )


def build_draft(run: CellRun, distill: StepFn, compress: StepFn) -> DraftModel:
    """The draft model the server loads (module docstring). A student draft is made by the grid's own `distill`
    and `compress` steps (harness/cell/steps.py hands them in: this module never imports the steps)."""
    from harness.cell.context import CellRun as Run
    from harness.models.sources import source_for

    cell = run.cell
    draft = run.need(cell.draft, "the cell's draft")
    if draft.cell is not None:
        dc = draft.cell
        store = _store(run)
        work = store.work_dir(dc.cell_id)
        paths = CellPaths(cell_id=dc.cell_id, logs=run.paths.logs / "draft", work=work, measured=work / "draft")
        sub = Run(
            cell=dc,
            settings=run.settings,
            progress=run.progress,
            paths=paths.create(),
            host=run.host,
            started_at=run.started_at,
            t0=run.t0,
        )
        run.progress.note(f"draft {draft.name}: {dc.label} [{dc.cell_id}]{' (a grid cell)' if draft.in_grid else ''}")
        sub.source = source = source_for(dc.model, run.settings)
        source.prepare(paths.log("prepare"))
        sub.model_src = source.resolve()
        if dc.student is not None:
            distill(sub)
        compress(sub)
        art = run.need(sub.artefact, "the draft's artefact")
        model, quant, tokenizer = art.model, art.quantization, art.tokenizer_src
    else:
        src = run.need(draft.source, "the draft's source")
        source = source_for(src, run.settings)
        source.prepare(run.paths.log("draft"))
        model, quant, tokenizer = source.resolve(), None, None
        if not model.endswith(".gguf"):
            tokenizer = model
    target_tok = run.need(run.artefact, "the artefact").tokenizer_src
    mine, theirs = vocab_fingerprint(target_tok), vocab_fingerprint(tokenizer)
    if mine and theirs and mine != theirs:
        raise StageError(
            "draft",
            f"draft {draft.name}: its tokenizer ({tokenizer}) has another vocabulary than the target's ({target_tok}); "
            "a draft must share the target's tokenizer",
        )
    return DraftModel(
        name=draft.name,
        model=str(model),
        tokens=draft.tokens,
        min_tokens=draft.min_tokens,
        quantization=quant if cell.serving.kind == "vllm" else None,
        tokenizer=tokenizer,
    )


def _generative(task: str) -> bool | None:
    """Whether lm-eval generates for `task` (None: not known offline, so it is scored again)."""
    from harness.evaluate import catalog

    if catalog.is_dq(task):
        return False  # dqbench's own tasks: multiple choice, loglikelihood, rolling (harness/evaluate/tasks/)
    leaves = catalog.leaves(task)
    if not leaves:
        return None
    return any(lf.output_type == "generate_until" for lf in leaves)


def inheritable(run: CellRun, target: CellResult | None) -> dict[str, str]:
    """task -> why the spec cell takes it from its target rather than scoring it again (module docstring)."""
    from harness.plan.rules import SCORED_BY_SERVER

    cell = run.cell
    if target is None or target.quality is None or SCORED_BY_SERVER.get(cell.serving.kind, True):
        return {}
    draft = run.need(cell.draft, "the cell's draft")
    return {
        t.name: f"scored in-process on the target's artefact without the server (no decoding, no draft): taken "
        f"from the target {draft.target_id}'s result on this host"
        for t in cell.evaluation.tasks
        if _generative(t.name) is False and t.name in target.quality.tasks
    }


# the shift spec's fields the logprob dump depends on (bootstrap_iters only shapes the flips' intervals)
DUMP_FIELDS = ("windows", "tokens", "top_k", "corpus", "seed")


def target_dump(run: CellRun) -> tuple[Path, str] | None:
    """The target's stored logprob dump, and why, when the spec cell's own would be the same file: both are
    computed in-process on the same artefact with no server and no draft (as `inheritable` takes their tasks),
    on this host, for the same windows. None: the spec cell dumps its own."""
    from harness.plan.rules import SCORED_BY_SERVER

    cell = run.cell
    spec = getattr(cell.evaluation, "shift", None)
    if spec is None or SCORED_BY_SERVER.get(cell.serving.kind, True):
        return None
    target = target_result(run)
    if target is None or not target.shift or target.artefact is None:
        return None
    theirs = ((target.plan.get("evaluation") or {}).get("shift")) or {}
    if any(theirs.get(f) != getattr(spec, f) for f in DUMP_FIELDS):
        return None
    if target.artefact.model != run.need(run.artefact, "the artefact").model:
        return None
    dump = Path(str(target.shift.get("dump") or ""))
    if not dump.name or not dump.is_file():
        return None
    draft = run.need(cell.draft, "the cell's draft")
    why = (
        f"dumped in-process on the target's artefact without the server (no decoding, no draft): the target "
        f"{draft.target_id}'s dump on this host"
    )
    return dump, why


def evaluate_spec(run: CellRun) -> Quality:
    """The spec cell's quality block: tasks the server answers scored again, the rest taken from the target."""
    from harness.registry import evaluators

    cell = run.cell
    handle, artefact = run.need(run.handle, "the server"), run.need(run.artefact, "the artefact")
    scoring = run.need(run.server, "the server plugin").scoring(handle, artefact)
    target = target_result(run)
    taken = inheritable(run, target)
    again = [t for t in cell.evaluation.tasks if t.name not in taken]
    scored = Quality()
    if again:
        spec = cell.evaluation.model_copy(update={"tasks": again})
        evaluator = evaluators.get(cell.evaluation.kind)(spec, run.settings)
        scored = evaluator.evaluate(scoring, run.paths.measured, run.paths.log("evaluate"))
    if not taken:
        return scored
    assert target is not None and target.quality is not None
    return with_inherited(cell.evaluation.tasks, scored, target.quality, taken)


def with_inherited(tasks_in_order: list[TaskSpec], scored: Quality, target: Quality, taken: dict[str, str]) -> Quality:
    """The spec cell's quality: the tasks it scored again and those `taken` from its target's quality. The target's
    sequential decision stands for this cell when every task it measured is taken (the same scores): the advisor
    then judges both by the same anytime-valid interval, not this cell by a fixed-n bootstrap of the target's items."""
    tasks: dict[str, TaskScore] = {}
    for t in tasks_in_order:
        got = scored.tasks.get(t.name) if t.name not in taken else target.tasks.get(t.name)
        if got is not None:
            tasks[t.name] = got
    how = "; ".join(x for x in [scored.scored_by, f"{', '.join(taken)} taken from the target (no draft involved)"] if x)
    decision = target.decision
    if decision is not None and not set(decision.tasks) <= set(taken):
        decision = None
    # `inherited` is an extra field of the block (harness/result.Block keeps what a step adds)
    return Quality.model_validate(
        {
            "tasks": tasks,
            "lm_eval_version": scored.lm_eval_version or target.lm_eval_version,
            "scored_by": how,
            "inherited": taken,
            "decision": decision,
        }
    )


def _match(levels: list[Level], lv: Level) -> Level | None:
    return next((t for t in levels if t.profile == lv.profile and t.level == lv.level), None)


def with_speedups(perf: Perf, target: CellResult | None) -> Perf:
    """`perf` with each level's target tok/s and speed-up (the same profile and level of the target's result)."""
    if target is None or target.perf is None:
        return perf
    levels = []
    for lv in perf.levels:
        tl = _match(target.perf.levels, lv)
        if lv.speculative is not None and tl is not None and tl.output_tok_s:
            spec = lv.speculative.model_copy(
                update={"target_output_tok_s": tl.output_tok_s, "speedup": lv.output_tok_s / tl.output_tok_s}
            )
            lv = lv.model_copy(update={"speculative": spec})
        levels.append(lv)
    return perf.model_copy(update={"levels": levels})


def _samples(folder: Path, task: str) -> dict[Any, dict[str, Any]]:
    """(subtask, doc_id) -> the sample row of a task's samples JSONL ({} without the file)."""
    path = folder / f"{task}.jsonl"
    if not path.is_file():
        return {}
    rows: dict[Any, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(row.get("task"), row.get("doc_id"))] = row
    return rows


def _answer(row: dict[str, Any]) -> Any:
    """A generated answer as compared: its raw text where the samples keep it, else every filter's response."""
    return row["resps"] if row.get("resps") is not None else row.get("filtered_resps")


def equal_output(
    mine: Quality | None,
    target: CellResult | None,
    my_samples: Path,
    target_samples: Path,
    inherited: dict[str, str],
) -> EqualOutput:
    """The spec cell's scores, per-item scores and generated answers against its target's (module docstring)."""
    if target is None or target.quality is None or mine is None:
        return EqualOutput(
            verdict="unchecked",
            inherited=inherited,
            note="the target has no done result with scores on this host: nothing to compare with (run it first)",
        )
    out = EqualOutput(verdict="equal", inherited=inherited)
    examples: list[dict[str, Any]] = []
    for task, mt in mine.tasks.items():
        tt = target.quality.tasks.get(task)
        if tt is None or task in inherited:
            continue
        out.tasks_compared.append(task)
        for metric, mv in mt.metrics.items():
            tv = tt.metrics[metric].value if metric in tt.metrics else None
            a, b = mv.value, tv
            same = a == b or (a is not None and b is not None and abs(a - b) <= METRIC_RTOL * max(abs(a), abs(b)))
            if not same:
                out.scores_differing.setdefault(task, {})[metric] = [a, b]
        for metric in (m for m in mt.item_metrics() if is_item_metric(m)):
            a_items, b_items = mt.item_scores(metric), tt.item_scores(metric)
            both = sorted(set(a_items) & set(b_items), key=str)
            out.items_compared += len(both)
            diff = [k for k in both if a_items[k] != b_items[k]]
            out.items_differing += len(diff)
            examples += [
                {"task": task, "item": k, "metric": metric, "cell": a_items[k], "target": b_items[k]} for k in diff
            ]
        a_rows, b_rows = _samples(my_samples, task), _samples(target_samples, task)
        for key in sorted(set(a_rows) & set(b_rows), key=str):
            a_ans, b_ans = _answer(a_rows[key]), _answer(b_rows[key])
            if a_rows[key].get("resps") is None and b_rows[key].get("resps") is not None:
                b_ans = b_rows[key].get("filtered_resps")  # compare like with like
            elif b_rows[key].get("resps") is None and a_rows[key].get("resps") is not None:
                a_ans = a_rows[key].get("filtered_resps")
            if not _is_generation(a_rows[key]):
                continue
            out.generations_compared += 1
            if a_ans != b_ans:
                out.generations_differing += 1
                examples.append({"task": task, "item": key[1], "cell": a_ans, "target": b_ans})
    out.examples = examples[:EXAMPLES]
    if out.items_differing or out.generations_differing or out.scores_differing:
        out.verdict = "differs"
        out.note = (
            f"engine fault: greedy output of the spec-decoded cell differs from its target's on "
            f"{out.items_differing} of {out.items_compared} scored items and {out.generations_differing} of "
            f"{out.generations_compared} generated answers; speculative decoding must not change greedy output, so "
            "this is the engine's (batched verification's numerics, or a bug), not a quality drop"
        )
    elif not out.items_compared and not out.generations_compared:
        out.verdict = "unchecked"
        out.note = "no task was scored again with per-item scores or generated answers to compare"
    else:
        out.note = (
            f"{out.items_compared} scored items and {out.generations_compared} generated answers "
            f"({'raw text' if out.generations_compared else 'none'}) identical to the target's"
        )
    return out


def _is_generation(row: dict[str, Any]) -> bool:
    """A sample row of a generated answer (a loglikelihood row has no text responses)."""
    if row.get("resps") is not None:
        return True
    filtered = row.get("filtered_resps") or {}
    return any(isinstance(v, list) and any(isinstance(x, str) for x in v) for v in filtered.values())


def speculative_block(run: CellRun) -> Speculative:
    """The result's `speculative` block (module docstring); fails the cell when the engine drafted nothing."""
    cell = run.cell
    draft = run.need(cell.draft, "the cell's draft")
    perf = run.need(run.perf, "the load test")
    missing = [f"{lv.profile} {lv.level:g}" for lv in perf.levels if lv.speculative is None]
    if missing:
        raise StageError(
            "speculative",
            f"the engine reported no draft counters at level(s) {', '.join(missing)} (its /metrics had no "
            "spec_decode_* counters): acceptance cannot be measured",
        )
    drafts = sum(lv.speculative.drafts for lv in perf.levels if lv.speculative)
    drafted = sum(lv.speculative.draft_tokens for lv in perf.levels if lv.speculative)
    accepted = sum(lv.speculative.accepted_tokens for lv in perf.levels if lv.speculative)
    if drafts == 0:
        raise StageError(
            "speculative",
            f"the engine made no drafts over the load test: speculative decoding did not run with draft {draft.name} "
            "(a silent fallback to plain decoding is not this cell)",
        )
    store = _store(run)
    host_id = run.host["host_id"]
    target = target_result(run)
    alpha_result = store.read(draft.alpha_from, host_id) if draft.alpha_from else None
    conc = [lv for lv in perf.levels if lv.profile in ("synchronous", "concurrency") and lv.speculative]
    c1 = next((lv for lv in conc if lv.level == 1), None)
    top = max(conc, key=lambda lv: lv.level) if conc else None
    inherited = dict(getattr(run.quality, "inherited", None) or {}) if run.quality is not None else {}
    eq = equal_output(
        run.quality,
        target,
        run.paths.measured / "samples",
        store.work_dir(draft.target_id) / host_id / "samples",
        inherited,
    )
    if eq.verdict == "differs" and eq.note:
        run.warnings.append(eq.note)
    dm = run.draft_model
    return Speculative(
        draft=draft.name,
        draft_model=dm.model if dm else None,
        draft_quantization=dm.quantization if dm else None,
        draft_cell=draft.cell.cell_id if draft.cell else None,
        tokens=draft.tokens,
        target_id=draft.target_id,
        engine=cell.serving.kind,
        counters=f"{cell.serving.kind} /metrics spec_decode_* counters, read before and after each level",
        predicted=prediction(cell, alpha_result),
        acceptance_rate=accepted / drafted if drafted else None,
        mean_accepted_len=1.0 + accepted / drafts,
        speedup_c1=c1.speculative.speedup if c1 and c1.speculative else None,
        speedup_top=top.speculative.speedup if top and top.speculative else None,
        equal_output=eq,
        note=None
        if target is not None
        else f"the target {draft.target_id} has no done result on this host: no "
        "speed-up and no equal-output check (run it first)",
    )
