"""Sequential evaluation, inside the lm-eval worker (harness/evaluate/lmeval_worker.py): the measure's items are
scored in a seeded random sequence (harness/decide/order.py: a task drawn at random, its next document in its own
seeded order), a batch at a time, paired with the reference's items on the same documents, until the drop's
interval (`decide.method`) decides the question (harness/decide/sequential.py), a group-sequential look finds a
verdict by the budget unlikely, the budget is spent, or the items run out.

- lm-eval is driven below `simple_evaluate`: each measured task's objects are built once per cell
  (`TaskManager.load`, then the overrides `simple_evaluate` applies: generation kwargs, few-shot count and
  seed; its documents read once), and each batch calls `lm_eval.evaluator.evaluate(lm, task_dict,
  samples={task: [doc indices]})` on the one LM instance of the cell, every measured task's requests together.
  lm-eval 0.4.13 maps a batch's positions back to document indices by the order of `samples` while it walks the
  documents in index order (lm_eval/api/task.py `doc_iterator`), so indices are passed sorted; every scored row
  is checked against what was asked.
- Few-shot examples drawn at random are seeded per document (the evaluation's seed and the document's
  content), not by the position in a batch: a document's prompt is then the same for a cell and its reference
  however their batches fell, and in any later run that continues the journal.
- Every scored item is appended to the cell's item journal (harness/decide/journal.py) as its batch finishes;
  items found there are never scored again.
- Each task's metrics are computed by lm-eval's own aggregation (`lm_eval.evaluator_utils._process_results`:
  each metric's aggregate and stderr, a group's size-weighted mean) over the task's items the verdict used, so
  the quality block and the verdict describe the same items.

The reference cell (no reference of its own) scores its whole budget for its cells to pair with; a cell whose
reference has no usable items scores its own budget the same way and says so (a later run pairs them without
scoring again). Imported only inside the worker (it imports lm-eval in its functions).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.decide.journal import Journal, JournalHeader, read_journal, row_key, row_metrics
from harness.decide.order import ItemKey, Step, item_sequence, task_order
from harness.decide.question import SequentialSpec, method_text
from harness.decide.sequential import Design, Stop, look_schedule, paired_items, scored_items
from harness.evaluate.lmeval_worker import prompt_format
from harness.result import Decision, DecisionLook
from harness.spec.chat import ChatFormat

if TYPE_CHECKING:
    from harness.evaluate.lmeval_worker import LMEvalJob
    from harness.spec.evaluation import TaskSpec

FEWSHOT_RULE = "per-document seed: sha256(evaluation seed, document JSON)"  # part of the journal's pin
FINAL_BOOTSTRAP = 1000  # as the fixed-n path asks of simple_evaluate


def load_measured(tm: Any, spec: TaskSpec, gen_kwargs: dict[str, Any], seed: int) -> dict:
    """A measured task's lm-eval objects (`TaskManager.load`: the task, or a group's subtasks), each configured
    for scoring: what `MeasuredTask` takes. Called by `run_sequential`, or earlier by the evaluate worker started
    ahead of its job (harness/evaluate/lmeval_worker.py `warm`), while the cell's server starts."""
    loaded = tm.load([spec.name])
    for obj in loaded["tasks"].values():
        configure(obj, spec, gen_kwargs, seed)
    return loaded


def configure(task_obj: Any, spec: TaskSpec, gen_kwargs: dict[str, Any], seed: int) -> None:
    """What `simple_evaluate` does to a loaded task before scoring (lm-eval 0.4.13, evaluator.py): generation
    overrides, the few-shot count (a config that fixes 0 keeps it), the few-shot seed; then the documents read
    once and per-document few-shot seeding (see the module docstring)."""
    if task_obj.get_config("output_type") == "generate_until" and gen_kwargs:
        task_obj.set_config(key="generation_kwargs", value=dict(gen_kwargs), update=True)
    if spec.num_fewshot is not None:
        if task_obj.get_config("num_fewshot") != 0:
            task_obj.set_config(key="num_fewshot", value=spec.num_fewshot)
    elif task_obj.get_config("num_fewshot") is None:
        task_obj.set_config(key="num_fewshot", value=0)
    task_obj.set_fewshot_seed(seed=seed)
    # lm-eval 0.4.13 re-runs a task's process_docs on every `eval_docs` access, several times per evaluate()
    # call (hellaswag: ~3 s each on a 2-core host); the documents are the same every time, so read them once
    docs = list(task_obj.eval_docs)
    if task_obj.has_test_docs():
        task_obj.test_docs = lambda: docs
    else:
        task_obj.validation_docs = lambda: docs
    plain = task_obj.fewshot_context

    def fewshot_context(doc, *args, **kwargs):
        blob = json.dumps(doc, sort_keys=True, default=str)
        task_obj.set_fewshot_seed(seed=int(hashlib.sha256(f"{seed}|{blob}".encode()).hexdigest()[:12], 16))
        return plain(doc, *args, **kwargs)

    task_obj.fewshot_context = fewshot_context


class MeasuredTask:
    """One task of the measure: its lm-eval objects (built once and configured: `load_measured`), its order, its
    journal."""

    def __init__(
        self,
        spec: TaskSpec,
        loaded: dict,
        job: LMEvalJob,
        seq: SequentialSpec,
        version: str | None,
        template_sha: str | None = None,
    ):
        self.name, self.spec = spec.name, spec
        self.format = job.format_of(spec.name)
        self.prompt_format = prompt_format(job, spec.name, template_sha)
        self.tasks: dict[str, Any] = dict(loaded["tasks"])
        self.groups: dict[str, Any] = dict(loaded.get("groups") or {})
        leaves = [(leaf, len(obj.eval_docs)) for leaf, obj in sorted(self.tasks.items())]
        self.order: list[ItemKey] = task_order(self.name, leaves, seq.seed, spec.limit)
        self.header = JournalHeader.of(
            self.name,
            version,
            {
                "task_hash": seq.task_hashes.get(self.name),
                "num_fewshot": {leaf: obj.get_config("num_fewshot") for leaf, obj in sorted(self.tasks.items())},
                "gen_kwargs": job.gen_kwargs,
                **self.format.model_dump(),  # this task's own: keys and values as before per-task formats
                "max_length": job.max_length,
                "seed": job.seed,
                "fewshot": FEWSHOT_RULE,
                # the template text, where one renders the prompts: a reference scored under another template
                # has no usable items for this cell (its journal's pin differs), so they are never paired
                **({"chat_template_sha256": template_sha} if self.format.apply_chat_template else {}),
            },
        )
        # `header` pins what makes a reference's items pairable with this cell's (read_journal below); the
        # cell's own journal also pins how its engine computed them: a GGUF cell's loglikelihoods with the
        # context evaluated once (dq-llamacpp's `context_once`) can differ in the last bits from a whole-prompt
        # pass, so a resumed journal never mixes items scored the two ways
        own = self.header
        if job.scoring.model_args.get("context_once"):
            own = JournalHeader.of(self.name, version, {**self.header.settings, "llamacpp_context_once": True})
        self.journal = Journal(Path(seq.journal_dir), own)
        self.reused = len(self.journal.rows)

    def leaf_of(self, key: ItemKey) -> str:
        return self.name if key[0] is None else key[0]

    def scores(self, rows: dict[ItemKey, dict], metric: str) -> dict[ItemKey, float]:
        return {k: float(r[metric]) for k, r in rows.items() if isinstance(r.get(metric), int | float)}


def _score_batch(lm: Any, measured: dict[str, MeasuredTask], steps: list[Step], job: LMEvalJob) -> int:
    """Score the items of `steps` that no journal holds, in one lm-eval call per prompt format (lm-eval applies
    the chat template per call; tasks of one format have their requests batched together); returns how many.
    Each (task, subtask) is keyed `<task>::<subtask>` in a call, so a subtask that two measured tasks share
    (`arc_easy` and `ai2_arc`) is two entries."""
    import lm_eval.evaluator

    from harness.evaluate.lmeval_scores import sample_rows, write_prompt_example

    samples: dict[str, list[int]] = {}
    parts: dict[str, tuple[MeasuredTask, str]] = {}
    asked = 0
    for task, key in steps:
        m = measured[task]
        if key not in m.journal.rows:
            name = f"{m.name}::{m.leaf_of(key)}"
            samples.setdefault(name, []).append(key[1])
            parts[name] = (m, m.leaf_of(key))
            asked += 1
    if not samples:
        return 0
    samples = {name: sorted(docs) for name, docs in samples.items()}  # sorted: see the module docstring
    got: dict[str, list] = {}
    for fmt, names in format_groups({name: m.format for name, (m, _leaf) in parts.items()}):
        res = lm_eval.evaluator.evaluate(
            lm=lm,
            task_dict={"tasks": {name: parts[name][0].tasks[parts[name][1]] for name in names}, "groups": {}},
            samples={name: samples[name] for name in names},
            bootstrap_iters=0,
            log_samples=True,
            system_instruction=fmt.system_instruction,
            apply_chat_template=fmt.apply_chat_template,
            fewshot_as_multiturn=fmt.fewshot_as_multiturn,
            confirm_run_unsafe_code=job.allow_code_execution,  # the matrix's opt-in (code tasks: humaneval)
        )
        got.update((res or {}).get("samples") or {})
    for m in measured.values():
        mine = {leaf: got.get(name, []) for name, (owner, leaf) in parts.items() if owner is m}
        if not mine:
            continue
        wanted = {(leaf if leaf != m.name else None, doc) for leaf in mine for doc in samples[f"{m.name}::{leaf}"]}
        rows = sample_rows(mine, m.name)
        write_prompt_example(mine, m.name, job.samples_dir)
        wrong = [row_key(r) for r in rows if row_key(r) not in wanted]
        if wrong:  # lm-eval scored documents that were not asked for: its index mapping changed
            raise RuntimeError(
                f"{m.name}: lm-eval {lm_eval.__version__} returned documents that were not asked for "
                f"({wrong[:3]}): the samples= mapping (lm_eval/api/task.py doc_iterator) is not what this "
                f"worker was written against"
            )
        m.journal.append(rows)
        missing = sorted(wanted - set(m.journal.rows), key=str)
        if missing:
            raise RuntimeError(f"{m.name}: lm-eval returned no score for {len(missing)} item(s), e.g. {missing[:3]}")
    return asked


def format_groups(formats: dict[str, ChatFormat]) -> list[tuple[ChatFormat, list[str]]]:
    """The names of one lm-eval call per distinct format, in the order each format first appears."""
    groups: dict[ChatFormat, list[str]] = {}
    for name, fmt in formats.items():
        groups.setdefault(fmt, []).append(name)
    return list(groups.items())


def _task_result(m: MeasuredTask, rows: list[dict], wall_s: float, job: LMEvalJob):
    """lm-eval's own aggregation over `rows` (the items the verdict used) as one task's LMEvalTaskScore."""
    from collections import defaultdict

    from lm_eval.evaluator_utils import _process_results

    from harness.evaluate.lmeval_scores import task_score

    acc: dict[str, dict] = {}
    for r in rows:
        leaf = r.get("task") or m.name
        a = acc.setdefault(leaf, {"task": m.tasks[leaf], "raw_metrics": defaultdict(list), "logged_samples": []})
        for key, value in row_metrics(r).items():
            metric, _, flt = key.partition(",")
            a["raw_metrics"][(metric, flt or "none")].append(value)
    res = _process_results(acc, m.groups, FINAL_BOOTSTRAP)._to_eval_results(samples={leaf: [] for leaf in acc})
    score = task_score(res, m.name, m.spec, rows, wall_s, job, leaves=sorted(m.tasks), fmt=m.prompt_format)
    # every document of the task is in its population, not only the subtasks the used items reached
    return score.model_copy(update={"n_total": sum(len(obj.eval_docs) for obj in m.tasks.values())})


def run_sequential(
    job: LMEvalJob,
    lm: Any,
    tm: Any,
    samples_dir: Path,
    version: str | None,
    template_sha: str | None = None,
    loaded: dict[str, dict] | None = None,
) -> tuple[dict[str, Any], Decision]:
    """Score the measure's tasks sequentially; (task -> LMEvalTaskScore, the decision). Writes each measured
    task's samples file (`<samples_dir>/<task>.jsonl`: its items the verdict used, in scoring order). `loaded`:
    measured tasks already built by `load_measured` (by the worker started ahead), by name; the rest are built
    here."""
    seq = job.sequential
    assert seq is not None
    t0 = time.monotonic()
    ready = loaded or {}
    measured = {
        t.name: MeasuredTask(
            t, ready.get(t.name) or load_measured(tm, t, job.gen_kwargs, job.seed), job, seq, version, template_sha
        )
        for t in job.tasks
        if t.name in seq.measure
    }
    for m in measured.values():
        if m.journal.discarded:
            print(f"item journal: {m.journal.discarded}", flush=True)
    sequence = item_sequence({n: m.order for n, m in measured.items()}, seq.seed, seq.max_items)
    cap, exhausted = len(sequence), "budget" if len(sequence) >= seq.max_items else "population"
    ref_rows: dict[str, dict[ItemKey, dict]] | None = None
    why_no_ref = ""
    if seq.reference_dir is not None:
        ref_rows = {}
        for m in measured.values():
            rows, why = read_journal(Path(seq.reference_dir), m.name, m.header)
            ref_rows[m.name] = rows
            why_no_ref = why_no_ref or (why or "")
        ref_items = scored_items(sequence, ref_rows)
        if ref_items == 0:  # nothing to pair with: score like a reference, pair in a later run
            exhausted, ref_rows = "reference_missing", None
        elif ref_items < cap:
            cap, exhausted = ref_items, "reference_exhausted"
    relative, alpha, limit = seq.relative, seq.error_rate, seq.limit
    # the looks are planned for the budget or the measure's items, whichever is fewer (not for the reference's
    # items: a reference that scored fewer only ends the looks early, at a look the design allows for)
    design = Design(seq.method, alpha, limit, seq.batch_items, len(sequence))

    def scores(rows_of: dict[str, dict[ItemKey, dict]]) -> dict[str, dict[ItemKey, float]]:
        return {n: m.scores(rows_of[n], seq.measure[n]) for n, m in measured.items()}

    ref_scores = scores(ref_rows) if ref_rows is not None else None
    looks: list[DecisionLook] = []
    done: list[int] = []
    scored, lm_s, used, verdict, stop, ci = 0, 0.0, 0, None, exhausted, None
    for k in look_schedule(seq.batch_items, cap):
        tb = time.monotonic()
        n = _score_batch(lm, measured, sequence[:k], job)
        scored, lm_s, used = scored + n, lm_s + time.monotonic() - tb, k
        if ref_scores is None:
            print(f"items 1-{k}: {n} scored ({time.monotonic() - tb:.1f} s)", flush=True)
            continue
        d, w = paired_items(sequence, scores({x: m.journal.rows for x, m in measured.items()}), ref_scores, relative, k)
        done.append(k)
        ci, fut = design.at(d, w, done)
        looks.append(DecisionLook(items=k, point=ci.point, lo=ci.lo, hi=ci.hi))
        v = ci.verdict(limit)
        print(
            f"look at {k} items: drop {ci.point} in [{ci.lo}, {ci.hi}] vs limit {limit:g}: {v}"
            f"{' (futile: a verdict by the budget is unlikely)' if fut and v == 'undecided' else ''} "
            f"({n} scored, {time.monotonic() - tb:.1f} s)",
            flush=True,
        )
        if v != "undecided":
            verdict, stop = v, v
            break
        if fut:
            verdict, stop = "undecided", "futile"
            break
    if seq.reference_dir is None:
        stop = "reference"
    elif verdict is None:
        verdict = "undecided"
    more = None
    if verdict == "undecided" and ref_scores is not None:
        d, w = paired_items(
            sequence, scores({x: m.journal.rows for x, m in measured.items()}), ref_scores, relative, used
        )
        more = design.more_items(d, w)
    tasks, counts = {}, {}
    for name, m in measured.items():
        mine = [m.journal.rows[key] for t, key in sequence[:used] if t == name]
        counts[name] = len(mine)
        with open(samples_dir / f"{name}.jsonl", "w") as f:
            for row in mine:
                f.write(json.dumps(row, default=str) + "\n")
        if mine:  # a task the used items never drew has no score (its quality is then owed: unkept_promise)
            tasks[name] = _task_result(m, mine, time.monotonic() - t0, job)
    decision = Decision(
        method=method_text(seq.method),
        measure=seq.measure_name,
        tasks=dict(seq.measure),
        max_drop=seq.max_drop,
        relative=relative,
        limit=limit,
        error_rate=alpha,
        seed=seq.seed,
        batch_items=seq.batch_items,
        max_items=seq.max_items,
        reference=seq.reference_id,
        verdict=verdict,  # type: ignore[arg-type]
        stop=stop,
        stop_reason=stop_reason(stop, used, seq, why_no_ref),
        items_used=used,
        items=counts,
        scored=scored,
        reused=used - scored if used >= scored else 0,
        point=ci.point if ci else None,
        lo=ci.lo if ci else None,
        hi=ci.hi if ci else None,
        looks=looks,
        more_items=more,
        item_s=lm_s / scored if scored else None,
    )
    return tasks, decision


def stop_reason(stop: Stop | str, used: int, seq: SequentialSpec, why_no_ref: str) -> str:
    """The decision's stop in words."""
    lim = seq.max_drop
    what = "repeated confidence interval" if seq.method == "group-sequential" else "confidence sequence"
    return {
        "within": f"the {what} lies within the {lim} limit after {used} items",
        "beyond": f"the {what} lies beyond the {lim} limit after {used} items",
        "futile": f"after {used} items a verdict by the budget of {seq.max_items} had become unlikely (conditional "
        f"power < 10 %): stopped undecided",
        "budget": f"the budget of {seq.max_items} items (decide.max_items) was spent, still undecided",
        "population": f"a measured task has no more documents (its `limit` or size) after {used} items, still "
        f"undecided",
        "reference_exhausted": f"the reference has scored only {used} items to pair with; run it with a larger "
        f"decide.max_items to go on",
        "reference_missing": f"the reference {seq.reference_id} has no usable items on this host ({why_no_ref}); "
        f"this cell scored its own {used} items, which a later run pairs without scoring them again",
        "reference": f"the reference: {used} items scored for its cells to pair with",
    }.get(str(stop), str(stop))
