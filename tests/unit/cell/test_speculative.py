"""A spec-decoded cell's own work (harness/cell/speculative.py) over stored results: the speed-up per level, the
equal-output check (equal, an engine fault, nothing to compare), what is inherited from the target, and a cell
that drafted nothing failing rather than passing for speculative decoding."""

import copy
import json

import pytest

from harness.cell.context import CellRun
from harness.cell.speculative import equal_output, inheritable, speculative_block, with_speedups
from harness.errors import StageError
from harness.plan import plan_matrix
from harness.progress import Progress
from harness.result import CellResult, Level, Perf, Quality
from harness.result_engine import LevelSpeculative
from harness.spec import parse_matrix
from harness.store.results import ResultStore
from harness.workspace import CellPaths

HOST = {"host_id": "h1", "label": "test host"}


@pytest.fixture
def spec_cell(base_matrix, settings):
    m = copy.deepcopy(base_matrix)
    m["students"] = [{"name": "kd", "kind": "untrained", "student": {"kind": "prune", "keep_every": 2}, "methods": []}]
    m["axes"]["distill"] = ["none", "kd"]
    m["axes"]["draft"] = ["none", "d"]
    m["drafts"] = {"d": {"student": "kd", "method": "gguf", "targets": ["gguf"]}}
    m["evaluation"]["tasks"].append({"name": "gsm8k", "num_fewshot": 0, "limit": 2})
    p = plan_matrix(parse_matrix(m), settings, host="cpu-avx512")
    return next(c for c in p.cells if c.draft is not None)


def _level(profile, level, tok_s, spec=None):
    return Level(
        profile=profile,
        level=level,
        requests=4,
        completed=4,
        failed=0,
        duration_s=1.0,
        output_tok_s=tok_s,
        speculative=spec,
    )


def _quality(acc_items, gsm_items):
    return Quality.model_validate(
        {
            "tasks": {
                "dq_arc_easy": {
                    "metrics": {"acc": {"value": sum(acc_items) / len(acc_items)}},
                    "items": [{"doc_id": i, "scores": {"acc": v}} for i, v in enumerate(acc_items)],
                },
                "gsm8k": {
                    "metrics": {"exact_match,strict-match": {"value": sum(gsm_items) / len(gsm_items)}},
                    "items": [
                        {"doc_id": i, "scores": {"exact_match,strict-match": v}} for i, v in enumerate(gsm_items)
                    ],
                },
            }
        }
    )


def _result(cell_id, quality=None, levels=None, shift=None):
    return CellResult.model_validate(
        {
            "cell_id": cell_id,
            "matrix": "m",
            "label": "x",
            "status": "done",
            "plan": {},
            "host": HOST,
            "quality": quality.model_dump(mode="json") if quality else None,
            "perf": {"levels": [lv.model_dump(mode="json") for lv in levels or []]},
            "shift": shift,
        }
    )


def _samples(folder, task, answers):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"doc_id": i, "resps": [a], "filtered_resps": {"strict-match": ["x"]}} for i, a in enumerate(answers)]
    (folder / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(cell, settings):
    store = ResultStore(settings.results_dir)
    return CellRun(
        cell=cell,
        settings=settings,
        progress=Progress(quiet=True),
        paths=CellPaths.of(store, cell.cell_id, "h1").create(),
        host=HOST,
        started_at="2026-01-01T00:00:00+00:00",
        t0=0.0,
    )


def test_speedups_are_against_the_same_level_of_the_target():
    spec = LevelSpeculative(drafts=10, draft_tokens=40, accepted_tokens=20)
    mine = Perf(levels=[_level("synchronous", 1, 30.0, spec), _level("concurrency", 16, 60.0, spec)])
    target = _result("t", levels=[_level("synchronous", 1, 20.0), _level("concurrency", 16, 80.0)])
    got = with_speedups(mine, target).levels
    assert got[0].speculative.speedup == pytest.approx(1.5) and got[0].speculative.target_output_tok_s == 20.0
    assert got[1].speculative.speedup == pytest.approx(0.75)
    assert with_speedups(mine, None) is mine


def test_equal_outputs_are_equal(tmp_path):
    q = _quality([1, 0, 1], [0, 1])
    _samples(tmp_path / "a", "gsm8k", ["12", "7"])
    _samples(tmp_path / "b", "gsm8k", ["12", "7"])
    eq = equal_output(q, _result("t", q), tmp_path / "a", tmp_path / "b", {})
    assert eq.verdict == "equal" and eq.items_compared == 5 and eq.generations_compared == 2
    assert eq.tasks_compared == ["dq_arc_easy", "gsm8k"] and not eq.scores_differing


def test_a_different_greedy_answer_is_an_engine_fault_not_a_quality_drop(tmp_path):
    _samples(tmp_path / "a", "gsm8k", ["12", "8"])
    _samples(tmp_path / "b", "gsm8k", ["12", "7"])
    eq = equal_output(
        _quality([1, 0, 1], [0, 0]), _result("t", _quality([1, 0, 1], [0, 1])), tmp_path / "a", tmp_path / "b", {}
    )
    assert eq.verdict == "differs" and eq.items_differing == 1 and eq.generations_differing == 1
    assert eq.note.startswith("engine fault") and "not a quality drop" in eq.note
    assert eq.scores_differing == {"gsm8k": {"exact_match,strict-match": [0.0, 0.5]}}
    assert {"task": "gsm8k", "item": 1, "cell": ["8"], "target": ["7"]} in eq.examples


def test_inherited_tasks_are_not_compared_and_no_target_means_unchecked(tmp_path):
    q = _quality([1, 0, 1], [0, 1])
    eq = equal_output(q, _result("t", q), tmp_path / "a", tmp_path / "b", {"dq_arc_easy": "in-process", "gsm8k": "x"})
    assert eq.verdict == "unchecked" and eq.inherited and not eq.tasks_compared
    assert equal_output(q, None, tmp_path, tmp_path, {}).verdict == "unchecked"


def test_llamacpp_cells_inherit_only_what_they_score_without_the_server(spec_cell, settings):
    run = _run(spec_cell, settings)
    target = _result(spec_cell.draft.target_id, _quality([1], [1]))
    taken = inheritable(run, target)
    assert "dq_arc_easy" in taken and "gsm8k" not in taken  # gsm8k is generated by the served draft + target
    assert "in-process" in taken["dq_arc_easy"]
    assert inheritable(run, None) == {}
    from harness.spec.serving import VLLMServing

    vllm_cell = spec_cell.model_copy(update={"serving": VLLMServing()})
    assert inheritable(_run(vllm_cell, settings), target) == {}  # vLLM scores everything through the server


def test_the_block_reads_target_student_and_counters(spec_cell, settings):
    store = ResultStore(settings.results_dir)
    draft = spec_cell.draft
    q = _quality([1, 0], [1, 0])
    store.write(_result(draft.target_id, q, [_level("synchronous", 1, 20.0), _level("concurrency", 16, 80.0)]))
    store.write(_result(draft.alpha_from, shift={"metrics": {"top1_agreement": 0.5, "n_tokens": 1024}}))
    _samples(store.work_dir(draft.target_id) / "h1" / "samples", "gsm8k", ["1", "2"])
    run = _run(spec_cell, settings)
    _samples(run.paths.measured / "samples", "gsm8k", ["1", "2"])
    spec = LevelSpeculative(drafts=10, draft_tokens=40, accepted_tokens=10)
    run.perf = with_speedups(
        Perf(levels=[_level("synchronous", 1, 30.0, spec), _level("concurrency", 16, 40.0, spec)]),
        store.read(draft.target_id, "h1"),
    )
    run.quality = q
    block = speculative_block(run)
    assert block.acceptance_rate == pytest.approx(0.25) and block.mean_accepted_len == pytest.approx(2.0)
    assert block.speedup_c1 == pytest.approx(1.5) and block.speedup_top == pytest.approx(0.5)
    assert block.predicted.alpha == 0.5 and block.predicted.mean_accepted_len == pytest.approx(1.9375)
    assert block.equal_output.verdict == "equal" and block.target_id == draft.target_id


def test_a_cell_that_drafted_nothing_fails(spec_cell, settings):
    run = _run(spec_cell, settings)
    run.perf = Perf(
        levels=[_level("synchronous", 1, 30.0, LevelSpeculative(drafts=0, draft_tokens=0, accepted_tokens=0))]
    )
    with pytest.raises(StageError, match="made no drafts"):
        speculative_block(run)
    run.perf = Perf(levels=[_level("synchronous", 1, 30.0)])
    with pytest.raises(StageError, match="reported no draft counters"):
        speculative_block(run)


def test_the_target_s_decision_stands_for_the_spec_cell_only_when_its_measured_tasks_are_inherited():
    from harness.cell.speculative import with_inherited
    from harness.spec.evaluation import TaskSpec
    from tests.fakes.decisions import decision

    dec = decision(tasks={"dq_arc_easy": "acc"}, reference="r", stop="budget", verdict="undecided")
    target = _quality([1, 0, 1], [1, 0]).model_copy(update={"decision": dec})
    order = [TaskSpec(name="dq_arc_easy"), TaskSpec(name="gsm8k", num_fewshot=0)]
    scored = Quality.model_validate({"tasks": {"gsm8k": target.tasks["gsm8k"].model_dump()}})
    q = with_inherited(order, scored, target, {"dq_arc_easy": "in-process"})
    assert q.decision == dec and q.tasks["dq_arc_easy"] == target.tasks["dq_arc_easy"]
    # a measured task scored again (through the draft's server): the target's interval is not this cell's
    again = Quality.model_validate({"tasks": {k: v.model_dump() for k, v in target.tasks.items()}})
    assert with_inherited(order, again, target, {"gsm8k": "x"}).decision is None


def test_the_shift_dump_is_the_target_s_only_where_the_draft_cannot_change_it(spec_cell, settings, tmp_path):
    from harness.cell.speculative import target_dump
    from harness.result import Artefact
    from harness.spec.serving import VLLMServing

    store = ResultStore(settings.results_dir)
    draft = spec_cell.draft
    dump = store.work_dir(draft.target_id) / "h1" / "shift" / "20260101T000000Z-1-aaaaaa" / "logprobs.npz"
    dump.parent.mkdir(parents=True)
    dump.write_bytes(b"npz")
    gguf = str(store.work_dir(draft.target_id) / "model-Q4_K_M.gguf")
    shift_spec = spec_cell.evaluation.shift.model_dump(mode="json")

    def stored(shift=None, model=gguf):
        r = _result(draft.target_id, _quality([1], [1]), shift={"dump": str(dump)} if shift is None else shift)
        r = r.model_copy(update={"plan": {"evaluation": {"shift": shift_spec}}, "artefact": Artefact(model=model)})
        store.write(r)

    run = _run(spec_cell, settings)
    run.artefact = Artefact(model=gguf, tokenizer="tok")
    assert target_dump(run) is None  # no target result on this host yet: the cell dumps its own
    stored()
    got = target_dump(run)
    assert got is not None and got[0] == dump and draft.target_id in got[1] and "no draft" in got[1]
    assert target_dump(_run(spec_cell.model_copy(update={"serving": VLLMServing()}), settings)) is None
    stored(model=gguf + ".other")  # another artefact
    assert target_dump(run) is None
    shift_spec["windows"] += 1  # the target dumped other windows
    stored()
    assert target_dump(run) is None
    shift_spec["windows"] -= 1
    shift_spec["bootstrap_iters"] += 1  # only the flips' intervals: the dump is the same
    stored()
    assert target_dump(run) is not None
    dump.unlink()  # the file its result names is gone
    assert target_dump(run) is None
    stored(shift={})
    assert target_dump(run) is None
