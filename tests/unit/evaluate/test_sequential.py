"""The sequential evaluation inside the lm-eval worker (harness/evaluate/sequential.py) on lm-eval's own tasks,
offline, with a deterministic fake model (tests/fakes/fake_lm.py): real task loading, prompts, request batching
and metrics; only the model is fake. A reference scores its budget; a cell pairs with it and stops at its verdict;
the item journal makes a second run score nothing twice (also after a crash mid-batch); what the worker decided
is what replaying its stored items through harness/decide/sequential.replay decides (replay == real)."""

from __future__ import annotations

import json
import os

import pytest

from harness.decide.journal import journal_path
from harness.decide.order import item_sequence, parse_item_key, task_order
from harness.decide.question import SequentialSpec, method_of
from harness.decide.sequential import paired_items, replay
from harness.evaluate.catalog import leaves
from harness.evaluate.data import TaskData
from harness.evaluate.items import read_sample_items
from harness.serve.scoring import Scoring
from harness.settings import load_settings
from harness.spec.evaluation import TaskSpec

pytestmark = pytest.mark.slow
pytest.importorskip("lm_eval")

MEASURE = {"arc_easy": "acc_norm", "gsm8k": "exact_match,strict-match", "ai2_arc": "acc_norm"}
TASKS = [
    TaskSpec(name="dq_pydoc_ppl", limit=1),  # outside the measure: scored once, as without decide
    TaskSpec(name="arc_easy", limit=300),
    TaskSpec(name="gsm8k", num_fewshot=0, limit=200),
    TaskSpec(name="ai2_arc", limit=150),  # a tag: two subtasks, keys carry the subtask
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    td = TaskData(load_settings())
    td.prepare(tmp_path_factory.mktemp("prep") / "prepare.log")
    return td


def job(
    data,
    tmp,
    cell: str,
    ref: str | None,
    *,
    skill=0.6,
    flip=0.0,
    items=180,
    limit=0.05,
    batch=30,
    method="group-sequential",
):
    from harness.evaluate.lmeval_worker import LMEvalJob

    names = ("arc_easy", "gsm8k", "ai2_arc")
    return LMEvalJob(
        scoring=Scoring(
            model="dq-fake-lm",
            register_module="tests.fakes.fake_lm",
            model_args={"salt": cell, "skill": skill, "flip": flip},
        ),
        include_path=str(data.task_dir()),
        offline_leaves={lf.name: lf for n in names for lf in leaves(n) or []},
        data_dir=str(data.dir),
        index_cache=str(load_settings().home / "lmeval-index"),
        num_concurrent=1,
        max_length=512,
        batch_size=1,
        seed=1234,
        samples_dir=str(tmp / cell / "samples"),
        tasks=TASKS,
        sequential=SequentialSpec(
            measure=MEASURE,
            measure_name="aggregate",
            max_drop=f"{limit * 100:g}%",
            relative=True,
            limit=limit,
            error_rate=0.05,
            method=method or "group-sequential",
            max_items=items,
            batch_items=batch,
            seed=0,
            journal_dir=str(tmp / cell / "items"),
            reference_dir=str(tmp / ref / "items") if ref else None,
            reference_id=ref,
            task_hashes=dict.fromkeys(MEASURE, "h"),
        ),
    )


def run(j):
    from harness.evaluate.lmeval_worker import work
    from tests.fakes.fake_lm import FakeLM

    FakeLM.calls.clear()
    return work(j), list(FakeLM.calls)


@pytest.fixture(scope="module")
def ref(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seq")
    rec, calls = run(job(data, tmp, "ref", None))
    return tmp, rec, calls


def test_the_reference_scores_its_budget_and_the_tasks_outside_the_measure_once(ref):
    tmp, rec, calls = ref
    d = rec.decision
    assert d.reference is None and d.verdict is None and d.stop == "reference" and d.items_used == 180
    assert d.scored == 180 and d.reused == 0 and sum(d.items.values()) == 180 and set(d.items) == set(MEASURE)
    assert min(d.items.values()) > 30  # each item's task drawn at random: about a third each
    assert d.looks == []  # a reference looks at nothing
    assert set(rec.tasks) == {t.name for t in TASKS} and rec.tasks["dq_pydoc_ppl"].n == 1
    for name in MEASURE:  # n = the items the verdict used; lm-eval's own aggregation over them
        t = rec.tasks[name]
        assert t.n == d.items[name] and t.metrics[MEASURE[name]].value is not None
    assert rec.tasks["arc_easy"].n_total == 2376 and rec.tasks["ai2_arc"].n_total == 2376 + 1172
    # items in the seeded order, not the first documents; the tag's keys carry their subtask
    arc = read_sample_items(tmp / "ref" / "samples" / "arc_easy.jsonl")
    assert max(i.doc_id for i in arc) > len(arc) and all(i.doc_id < 300 for i in arc)  # limit: the first 300
    tag = read_sample_items(tmp / "ref" / "samples" / "ai2_arc.jsonl")
    assert {i.task for i in tag} == {"arc_easy", "arc_challenge"} and all(i.doc_id < 150 for i in tag)
    # the perplexity task went through simple_evaluate once, on its first document
    assert sum(c.startswith("roll|") for c in calls) >= 1


def test_a_cell_pairs_with_its_reference_and_stops_at_its_verdict(data, ref):
    tmp, _, _ = ref
    rec, _ = run(job(data, tmp, "bad", "ref", skill=0.1))  # right on a sixth of what the reference gets right
    d = rec.decision
    assert d.reference == "ref" and d.verdict == "beyond" and d.stop == "beyond" and d.items_used < 180
    assert d.looks and d.looks[-1].items == d.items_used and d.lo > 0.05
    assert replayed(tmp, "bad", d) == ("beyond", d.items_used)  # replay == real


def test_a_cell_like_its_reference_is_not_beyond_and_says_how_many_items_would_decide_it(data, ref):
    tmp, _, _ = ref
    rec, _ = run(job(data, tmp, "same", "ref", flip=0.05))
    d = rec.decision
    assert d.verdict in ("undecided", "within") and d.items_used <= 180
    if d.verdict == "undecided":
        assert d.stop in ("budget", "futile") and (d.more_items is None or d.more_items > 0)
        assert d.items_used == 180 if d.stop == "budget" else d.items_used < 180
    assert replayed(tmp, "same", d) == (d.verdict, d.items_used)


def test_a_cell_no_budget_can_decide_stops_futile_early_and_the_replay_agrees(data, ref):
    tmp, _, _ = ref
    rec, _ = run(job(data, tmp, "futile", "ref", flip=0.05, limit=0.0001))  # a limit 0.01 % from a ~0 drop
    d = rec.decision
    assert d.verdict == "undecided" and d.stop == "futile" and d.items_used < 180
    assert "unlikely" in d.stop_reason and d.more_items is None or d.more_items > 0
    assert replayed(tmp, "futile", d) == ("undecided", d.items_used)


def replayed(tmp, cell: str, d) -> tuple[str, int]:
    """The decision recomputed from the samples files and the reference's journals alone, in the worker's
    sequence rebuilt from the tasks' sizes and limits (as bench/sequential.py does)."""
    sizes = {"arc_easy": [("arc_easy", 300)], "gsm8k": [("gsm8k", 200)]}
    sizes["ai2_arc"] = [("arc_challenge", 150), ("arc_easy", 150)]
    orders = {t: task_order(t, lv, 0) for t, lv in sizes.items()}
    sequence = item_sequence(orders, 0, 180)
    mine, theirs = {}, {}
    for task, metric in MEASURE.items():
        items = read_sample_items(tmp / cell / "samples" / f"{task}.jsonl")
        ref = {(r.get("task"), r["doc_id"]): r for r in _rows(journal_path(tmp / "ref" / "items", task))}
        mine[task] = {parse_item_key(i.key): i.scores[metric] for i in items}
        theirs[task] = {k: float(r[metric]) for k, r in ref.items()}
    dd, w = paired_items(sequence, mine, theirs, relative=True)
    out = replay(dd, w, d.error_rate, d.limit, d.batch_items, len(dd), method=method_of(d.method), planned=180)
    return out.verdict, out.items


def _rows(path):
    lines = path.read_text().splitlines()[1:]
    return [json.loads(x) for x in lines if x.strip()]


def test_a_second_run_scores_nothing_again_and_a_larger_budget_scores_only_the_new_items(data, ref):
    tmp, _, _ = ref
    first, _ = run(job(data, tmp, "again", "ref", flip=0.05, items=90, limit=0.5))
    again, calls2 = run(job(data, tmp, "again", "ref", flip=0.05, items=90, limit=0.5))
    assert first.decision.scored > 0 and again.decision.scored == 0
    assert again.decision.reused == first.decision.items_used
    assert not [c for c in calls2 if not c.startswith("roll|")]  # only the perplexity task ran again
    same = {"scored", "reused", "item_s"}
    assert again.decision.model_dump(exclude=same) == first.decision.model_dump(exclude=same)
    # a limit no data decides, on the confidence sequence (no futility stop): the whole larger budget is scored
    more, _ = run(job(data, tmp, "again", "ref", flip=0.05, items=150, limit=0.0001, method="confidence-sequence"))
    assert more.decision.items_used == 150 and more.decision.scored == 150 - first.decision.items_used


def test_a_crash_mid_batch_loses_only_that_batch_and_a_torn_line_is_dropped(data, ref, monkeypatch):
    import harness.evaluate.sequential as seq

    tmp, _, _ = ref
    real = seq._score_batch
    state = {"n": 0}

    def crash_on_second(lm, measured, steps, j):
        state["n"] += 1
        if state["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) while the second batch is being scored
        return real(lm, measured, steps, j)

    monkeypatch.setattr(seq, "_score_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(job(data, tmp, "crash", "ref", flip=0.05, items=120, limit=0.0001, method="confidence-sequence"))
    monkeypatch.setattr(seq, "_score_batch", real)
    journals = [journal_path(tmp / "crash" / "items", t) for t in MEASURE]
    assert sum(len(_rows(p)) for p in journals) == 30  # the first batch, whole
    with open(journals[0], "a") as f:  # and a line torn by a crash during a write
        f.write('{"doc_id": 5, "acc_no')
    rec, _ = run(job(data, tmp, "crash", "ref", flip=0.05, items=120, limit=0.0001, method="confidence-sequence"))
    assert rec.decision.items_used == 120 and rec.decision.scored == 90  # items 31-120 only
    assert sum(len(_rows(p)) for p in journals) == 120
    assert all(json.loads(x) for p in journals for x in p.read_text().splitlines())


def test_a_journal_scored_with_other_settings_is_set_aside(data, ref):
    tmp, _, _ = ref
    j = job(data, tmp, "pin", "ref", flip=0.05, items=30, limit=0.0001)
    run(j)
    other = j.model_copy(update={"max_length": 256})  # prompts truncate differently: not the same items
    rec, _ = run(other)
    assert rec.decision.scored == 30 and (tmp / "pin" / "items" / "arc_easy.discarded.jsonl").is_file()
    # and the reference's journal, pinned to max_length 512, is not paired with: scored alone, and said so
    assert rec.decision.stop == "reference_missing" and "other settings" in rec.decision.stop_reason


def test_a_gguf_cells_context_once_pins_its_own_journal_but_still_pairs_with_the_reference(data, ref):
    """dq-llamacpp's `context_once` changes a quantized GGUF's answers in the last bits: the cell's own journal pins
    it (a resume never mixes items scored both ways), while the reference's items, which it does not change, stay
    pairable."""
    tmp, _, _ = ref
    j = job(data, tmp, "once", "ref", flip=0.05, items=30, limit=0.0001)
    args = {**j.scoring.model_args, "context_once": True}
    once = j.model_copy(update={"scoring": j.scoring.model_copy(update={"model_args": args})})
    rec, _ = run(once)
    assert rec.decision.reference == "ref" and rec.decision.stop != "reference_missing" and rec.decision.scored == 30
    header = json.loads(journal_path(tmp / "once" / "items", "arc_easy").read_text().splitlines()[0])
    assert header["settings"]["llamacpp_context_once"] is True
    rec, _ = run(once)  # resumed the same way: nothing scored again
    assert rec.decision.scored == 0 and rec.decision.reused == 30
    rec, _ = run(j)  # the whole-prompt way: the journal is set aside, the items scored again
    assert rec.decision.scored == 30 and (tmp / "once" / "items" / "arc_easy.discarded.jsonl").is_file()


def test_tasks_prepared_ahead_score_as_tasks_built_in_the_job_and_a_stale_hint_is_not_used(
    data, ref, tmp_path, monkeypatch, capsys
):
    """The worker started ahead builds the measured tasks from its hint (lmeval_worker.warm); the job then
    builds none of them, and its record, items and requests are those of the same cell built cold. A hint that
    is not the job's (another seed) is set aside and the tasks are built in the job."""
    import shutil

    from harness.evaluate import lmeval_worker, sequential
    from harness.evaluate.lmeval_worker import LMEvalWarm, warm

    built: list[str] = []
    plain = sequential.load_measured

    def counted(tm, spec, *a):
        built.append(spec.name)
        return plain(tm, spec, *a)

    monkeypatch.setattr(sequential, "load_measured", counted)
    tmp, _, _ = ref
    shutil.copytree(tmp / "ref" / "items", tmp_path / "ref" / "items")  # the same reference, another folder
    cold, cold_calls = run(job(data, tmp, "twin", "ref", skill=0.3))
    assert sorted(built) == sorted(MEASURE)
    built.clear()
    j = job(data, tmp_path, "twin", "ref", skill=0.3)
    hint = LMEvalWarm.of(j)
    assert hint is not None and [t.name for t in hint.measured] == list(MEASURE)
    warm(hint.model_dump(mode="json"))  # JSON, as the worker reads it from the hint file
    assert sorted(built) == sorted(MEASURE)
    built.clear()
    hot, hot_calls = run(j)
    assert built == [] and lmeval_worker._PREPARED == []  # nothing built in the job; taken once
    assert hot_calls == cold_calls
    skip = {"item_s"}
    assert hot.decision is not None and cold.decision is not None
    assert hot.decision.model_dump(exclude=skip) == cold.decision.model_dump(exclude=skip)
    assert {n: {m: v.value for m, v in t.metrics.items()} for n, t in hot.tasks.items()} == {
        n: {m: v.value for m, v in t.metrics.items()} for n, t in cold.tasks.items()
    }
    for name in MEASURE:
        assert (tmp_path / "twin" / "samples" / f"{name}.jsonl").read_text() == (
            tmp / "twin" / "samples" / f"{name}.jsonl"
        ).read_text()
    # a stale hint: the tasks are built again in the job, and the log says why
    other = job(data, tmp_path, "other", "ref", skill=0.3)
    warm(hint.model_copy(update={"seed": 99}).model_dump(mode="json"))
    built.clear()
    capsys.readouterr()
    run(other)
    assert sorted(built) == sorted(MEASURE)
    assert "prepared ahead were for another job" in capsys.readouterr().out


def test_a_job_without_a_measure_hints_its_tasks_scored_once_and_a_long_context_one_nothing():
    from harness.evaluate.lmeval_worker import LMEvalJob, LMEvalWarm

    plain = LMEvalJob(
        scoring=Scoring(model="dq-fake-lm"),
        tasks=TASKS,
        include_path="/x",
        data_dir="/d",
        samples_dir="/s",
        num_concurrent=1,
        max_length=512,
        batch_size=1,
        seed=1,
    )
    hint = LMEvalWarm.of(plain)
    assert hint is not None and hint.measured == [] and hint.fixed == TASKS
    long = plain.model_copy(update={"tasks": [*TASKS, TaskSpec(name="dq_niah", context_lengths=[1024])]})
    assert LMEvalWarm.of(long) is None  # its tasks folder is made with the cell's tokenizer
    assert LMEvalWarm.of(plain.model_copy(update={"tasks": []})) is None
