"""harness/cell.py: a cell is `done` only when every stage produced what it promised."""

from types import SimpleNamespace

from harness.cell import unkept_promise
from harness.spec.models import LMEvalSpec, LoadSpec

LOAD = LoadSpec(
    profiles=[{"kind": "synchronous", "requests": 2}, {"kind": "concurrency", "levels": [2, 8], "requests": 4}]
)


def _cell(shift: bool = True):
    ev = LMEvalSpec(tasks=[{"name": "dq_lambada"}, {"name": "dq_arc_easy"}], **({} if shift else {"shift": None}))
    return SimpleNamespace(load=LOAD, evaluation=ev)


def _doc(**over):
    levels = [
        {"profile": "synchronous", "level": 1, "completed": 2},
        {"profile": "concurrency", "level": 2, "completed": 4},
        {"profile": "concurrency", "level": 8, "completed": 4},
    ]
    tasks = {"dq_lambada": {"metrics": {"acc": {"value": 0.4}}}, "dq_arc_easy": {"metrics": {"acc": {"value": 0.5}}}}
    return {"perf": {"levels": levels}, "quality": {"tasks": tasks}, "shift": {"metrics": {}}, **over}


def test_a_complete_cell_keeps_its_promises():
    assert unkept_promise(_cell(), _doc()) is None


def test_a_missing_load_level_is_not_done():
    doc = _doc()
    doc["perf"]["levels"].pop()
    assert unkept_promise(_cell(), doc) == ("measure", "2 of 3 planned load levels were measured")


def test_a_level_where_every_request_failed_is_not_done():
    doc = _doc()
    doc["perf"]["levels"][1]["completed"] = 0
    stage, why = unkept_promise(_cell(), doc)
    assert stage == "measure" and "concurrency 2" in why


def test_a_task_without_a_score_is_not_done():
    doc = _doc()
    doc["quality"]["tasks"]["dq_arc_easy"]["metrics"]["acc"]["value"] = None
    assert unkept_promise(_cell(), doc) == ("evaluate", "task dq_arc_easy produced no score")
    del doc["quality"]["tasks"]["dq_arc_easy"]
    assert unkept_promise(_cell(), doc)[0] == "evaluate"


def test_shift_is_promised_only_when_the_matrix_asks_for_it():
    assert unkept_promise(_cell(), _doc(shift=None))[0] == "shift"
    assert unkept_promise(_cell(shift=False), _doc(shift=None)) is None
