"""Flips and paired CIs against the reference read the reference's items from its stored result."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.evaluate import reference
from harness.evaluate.items import task_items
from harness.evaluate.shift import load_dump, save_dump
from harness.plan.cell import CellPlan
from harness.result import CellResult, Quality
from harness.settings import load_settings
from harness.store.results import ResultStore
from tests.conftest import REPO

REF = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
HOST = REF["host"]


def _child_quality(wrong_every: int) -> dict:
    q = copy.deepcopy(REF["quality"])
    for t in q["tasks"].values():
        for item in t["items"][::wrong_every]:
            item["scores"] = dict.fromkeys(item["scores"], 0.0)
    return q


def _flip_count(q: Quality, ref: Quality, task: str, metric: str) -> int:
    a, b = ref.items(task, metric), q.items(task, metric)
    return sum(1 for i in a if a[i] > b.get(i, a[i]))


def test_item_flips_compare_the_items_of_two_results():
    ref = Quality.model_validate(REF["quality"])
    cell = Quality.model_validate(_child_quality(5))
    out = reference.item_flips(ref, cell, iters=200)
    assert set(out["tasks"]) == {"dq_arc_easy", "dq_hellaswag", "dq_lambada"}  # the ppl task has no items
    arc = out["tasks"]["dq_arc_easy"]["acc"]
    assert arc["n"] == 200 and arc["ref_correct_cell_wrong"] == _flip_count(cell, ref, "dq_arc_easy", "acc") > 0
    assert arc["ref_wrong_cell_correct"] == 0 and arc["drop_abs"] > 0
    agg = out["aggregate"]
    assert agg["metric"] == "avg_acc" and agg["tasks"] == ["dq_arc_easy", "dq_hellaswag", "dq_lambada"]
    assert agg["n_items"] == 200 + 100 + 200 and agg["drop_ci95"][0] <= agg["drop_abs"] <= agg["drop_ci95"][1]
    assert reference.item_flips(ref, ref, iters=100)["aggregate"]["drop_abs"] == 0.0


@pytest.fixture
def shifted(tmp_path, monkeypatch):
    """compare_with_reference with the model calls replaced: windows and logprob dumps are made up."""
    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    settings = load_settings()
    monkeypatch.setattr(reference, "this_host", lambda s: HOST)
    monkeypatch.setattr(reference, "token_prompts", lambda *a, **k: [[1, 2, 3]] * 2)

    def dump(scoring, windows, k, out, log, settings):
        n = 4
        save_dump(out, np.arange(n), np.full(n, -1.0), np.tile(np.arange(k), (n, 1)), np.full((n, k), -3.0))

    monkeypatch.setattr(reference, "dump_logprobs", dump)
    store = ResultStore(settings.results_dir)
    plan = CellPlan.model_validate(dict(REF["plan"], cell_id="c0ffee000001", parent_id=REF["cell_id"]))
    parent_dump = (
        store.work_dir(REF["cell_id"]) / HOST["host_id"] / "shift" / "20260101T000000Z-1-aaaaaa" / "logprobs.npz"
    )
    dump(None, None, plan.evaluation.shift.top_k, parent_dump, None, None)
    store.write(dict(REF, shift={"dump": str(parent_dump)}))  # the reference's stored result: items, its dump
    return settings, store, plan, tmp_path / "child"


def test_each_attempt_dumps_into_its_own_folder_and_the_reference_is_the_dump_its_result_names(shifted):
    settings, store, plan, work = shifted
    first = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4))
    again = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4))
    assert first["dump"] != again["dump"] and Path(first["dump"]).is_file() and Path(again["dump"]).is_file()
    assert Path(first["dump"]).parent.parent == work / "shift"
    # a later attempt of the parent that failed wrote another dump: its done result still names the first one
    recorded = Path(store.read(REF["cell_id"], HOST["host_id"]).shift["dump"])
    later = recorded.parent.parent / "20260102T000000Z-2-bbbbbb" / "logprobs.npz"
    n, k = 4, plan.evaluation.shift.top_k
    save_dump(later, np.arange(n), np.full(n, -9.0), np.tile(np.arange(k), (n, 1)), np.full((n, k), -0.1))
    out = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4))
    assert out["metrics"]["kld_mean"] == pytest.approx(0.0, abs=1e-9)  # against the recorded dump, not `later`
    recorded.unlink()  # the named dump gone: no comparison, and why (never another attempt's dump)
    out = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4))
    assert out["metrics"] is None and f"its dump {recorded} is gone" in out["note"]


def test_the_reference_items_come_from_its_stored_result_not_its_work_folder(shifted):
    settings, store, plan, work = shifted
    shutil.rmtree(store.work_dir(REF["cell_id"]) / HOST["host_id"] / "samples", ignore_errors=True)  # none there
    mine = _child_quality(4)
    out = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "shift.log", quality=mine)
    assert out["reference"] == REF["cell_id"] and out["metrics"]["kld_mean"] == pytest.approx(0.0, abs=1e-9)
    ref_q, cell_q = Quality.model_validate(REF["quality"]), Quality.model_validate(mine)
    got = out["flips"]["tasks"]["dq_hellaswag"]["acc_norm"]["ref_correct_cell_wrong"]
    assert got == _flip_count(cell_q, ref_q, "dq_hellaswag", "acc_norm") > 0
    assert "flips_note" not in out


def test_without_its_quality_the_cell_items_are_read_from_its_fresh_samples(shifted):
    settings, store, plan, work = shifted
    mine = _child_quality(3)
    (work / "samples").mkdir(parents=True)
    for task, t in mine["tasks"].items():
        (work / "samples" / f"{task}.jsonl").write_text(
            "".join(json.dumps({"doc_id": i["doc_id"], **i["scores"]}) + "\n" for i in t["items"])
        )
    out = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "shift.log")
    items = task_items(work / "samples", "dq_arc_easy")  # what lmeval.evaluate() puts into the result
    assert [i.model_dump() for i in items] == mine["tasks"]["dq_arc_easy"]["items"]
    with_quality = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "shift.log", quality=mine)
    assert out["flips"] == with_quality["flips"] and out["flips"]["tasks"]


def test_a_reference_without_items_says_why_there_are_no_flips(shifted):
    settings, store, plan, work = shifted
    old = dict(json.loads((REPO / "tests" / "fixtures" / "result-v2.json").read_text()))
    p = store.path(REF["cell_id"], HOST["host_id"])
    p.write_text(json.dumps(old))  # a schema-2 reference whose samples are gone
    assert store.read(REF["cell_id"], HOST["host_id"]).upgraded_from == 2
    out = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4))
    assert out["flips"]["tasks"] == {} and "aggregate" not in out["flips"]
    assert "upgraded from schema 2 without its work/ samples" in out["flips_note"]
    assert isinstance(store.read(REF["cell_id"], HOST["host_id"]), CellResult)


def test_a_moved_results_folder_still_finds_the_dump_its_result_names(shifted):
    settings, store, plan, work = shifted
    recorded = Path(store.read(REF["cell_id"], HOST["host_id"]).shift["dump"])
    elsewhere = Path("/nonexistent/old-results") / recorded.relative_to(store.root)  # where it was written
    store.write(dict(REF, shift={"dump": str(elsewhere)}))
    out = reference.compare_with_reference(plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4))
    assert out["metrics"]["kld_mean"] == pytest.approx(0.0, abs=1e-9)


def test_a_dump_the_cell_would_equal_is_linked_in_and_no_worker_runs(shifted, monkeypatch):
    settings, store, plan, work = shifted
    theirs = work.parent / "target" / "logprobs.npz"
    n, k = 4, plan.evaluation.shift.top_k
    save_dump(theirs, np.arange(n), np.full(n, -2.0), np.tile(np.arange(k), (n, 1)), np.full((n, k), -3.0))

    def no_worker(*a, **kw):
        raise AssertionError("no logprob worker may run for a dump taken from elsewhere")

    monkeypatch.setattr(reference, "dump_logprobs", no_worker)
    out = reference.compare_with_reference(
        plan, {}, "tok", settings, work, work / "s.log", quality=_child_quality(4), same_dump=(theirs, "the same")
    )
    mine = Path(out["dump"])
    assert mine.parent.parent == work / "shift" and mine != theirs  # this attempt's own file
    assert mine.read_bytes() == theirs.read_bytes() and out["dump_from"] == {"path": str(theirs), "why": "the same"}
    assert out["metrics"]["ppl_ratio"] == pytest.approx(np.exp(1.0))  # vs the reference's dump (token lp -1 vs -2)
    assert out["flips"]["tasks"]  # the cell's own items, as always
    theirs.unlink()  # the source going away (its cell's attempt removed) leaves this attempt's dump whole
    assert len(load_dump(mine)["tokens"]) == n
