"""harness/cell/: a cell is `done` only when every step produced what it promised; the step loop (order,
skipped steps, failures, the server watch, interrupts, the result contract) over fake steps."""

import os
import sys
from types import SimpleNamespace

import pytest

from harness.cell import unkept_promise
from harness.result import Perf, Quality, Serve
from harness.spec.evaluation import LMEvalSpec
from harness.spec.loadtest import LoadSpec

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


def test_a_long_context_task_is_done_with_a_score_at_every_length():
    ev = LMEvalSpec(tasks=[{"name": "dq_niah", "context_lengths": [1024, 4096]}], max_length=4096, shift=None)
    cell = SimpleNamespace(load=LOAD, evaluation=ev)
    doc = _doc()
    doc["quality"]["tasks"] = {f"dq_niah@{n}": {"metrics": {"acc": {"value": 0.5}}} for n in (1024, 4096)}
    assert unkept_promise(cell, doc) is None
    del doc["quality"]["tasks"]["dq_niah@4096"]
    assert unkept_promise(cell, doc) == ("evaluate", "task dq_niah@4096 produced no score")


def test_the_evaluate_steps_quality_object_is_read_like_its_json():
    from harness.result import Quality

    doc = _doc()
    assert unkept_promise(_cell(), {**doc, "quality": Quality.model_validate(doc["quality"])}) is None
    doc["quality"]["tasks"]["dq_arc_easy"]["metrics"]["acc"]["value"] = None
    got = unkept_promise(_cell(), {**doc, "quality": Quality.model_validate(doc["quality"])})
    assert got == ("evaluate", "task dq_arc_easy produced no score")


def test_shift_is_promised_only_when_the_matrix_asks_for_it():
    assert unkept_promise(_cell(), _doc(shift=None))[0] == "shift"
    assert unkept_promise(_cell(shift=False), _doc(shift=None)) is None


# ---------------------------------------------------------------- the step loop (harness/cell/run.py)


class _Plan(SimpleNamespace):
    def model_dump(self, mode="json"):
        return {"cell_id": self.cell_id}


def _run(tmp_path, shift=False):
    from harness.cell.context import CellRun
    from harness.progress import Progress
    from harness.spec.matrix import Limits
    from harness.workspace import CellPaths

    cell = _Plan(cell_id="c0", matrix="m", label="tiny", limits=Limits(), student=None, **vars(_cell(shift)))
    return CellRun(
        cell=cell,
        settings=None,
        progress=Progress(quiet=True),
        paths=CellPaths.in_folder(tmp_path, "c0"),
        host={"host_id": "h1"},
        started_at="2026-01-01T00:00:00+00:00",
        t0=0.0,
    )


def _good_blocks(run):
    d = _doc()
    for lv in d["perf"]["levels"]:
        lv.update(requests=lv["completed"], failed=0)
    run.perf, run.quality = Perf.model_validate(d["perf"]), Quality.model_validate(d["quality"])


class _Handle:
    def __init__(self, dead=None):
        self.dead, self.stopped = dead, 0

    def health_problem(self, http=False, settle=0.0):
        return self.dead

    def failure_tail(self):
        return "engine log tail"

    def stop(self):
        self.stopped += 1


def test_steps_run_in_order_and_a_complete_run_is_a_done_cell_result(tmp_path):
    from harness.cell import STEPS, Step, run_steps
    from harness.result import CellResult

    assert [s.name for s in STEPS] == [
        "prepare",
        "distill",
        "compress",
        "draft",
        "serve",
        "measure",
        "evaluate",
        "shift",
        "speculative",
    ]
    seen = []
    steps = [Step("a", lambda r: seen.append("a")), Step("b", lambda r: (seen.append("b"), _good_blocks(r)))]
    run = _run(tmp_path)
    res = run_steps(run, steps)
    assert isinstance(res, CellResult) and res.status == "done" and seen == ["a", "b"]
    assert set(res.timings) == {"a", "b"} and res.host_id == "h1" and res.logs["dir"] == str(tmp_path / "logs")
    assert res.model_dump(mode="json")["perf"]["levels"][0]["profile"] == "synchronous"  # what the store writes


def test_the_evaluate_step_leaves_the_evaluators_quality_and_the_result_stores_it(tmp_path):
    from harness.cell import Step, run_steps
    from harness.cell.steps import evaluate
    from harness.result import Artefact, Metric, Quality, TaskScore

    quality = Quality(
        tasks={t: TaskScore(metrics={"acc": Metric(value=0.5, stderr=0.1)}) for t in ("dq_lambada", "dq_arc_easy")},
        scored_by="fake",
    )

    class Evaluator:
        def evaluate(self, scoring, workdir, log):
            return quality

    def serve(r):
        r.handle, r.artefact = _Handle(), Artefact(model="/m")
        r.server = SimpleNamespace(scoring=lambda handle, artefact: None)
        r.evaluator = Evaluator()

    def measure(r):
        _good_blocks(r)
        r.quality = None

    run = _run(tmp_path)
    res = run_steps(run, [Step("serve", serve), Step("measure", measure), Step("evaluate", evaluate)])
    assert run.quality is quality and res.status == "done"
    assert res.quality == quality and res.model_dump(mode="json")["quality"]["scored_by"] == "fake"


def test_a_step_that_does_not_apply_is_skipped_and_untimed(tmp_path):
    from harness.cell import Step, run_steps

    steps = [Step("distill", lambda r: 1 / 0, applies=lambda c: c.student is not None), Step("b", _good_blocks)]
    res = run_steps(_run(tmp_path), steps)
    assert res.status == "done" and "distill" not in res.timings


def test_a_failing_step_keeps_the_blocks_before_it_and_stops_the_server(tmp_path):
    from harness.cell import Step, run_steps
    from harness.errors import StageError

    handle = _Handle()

    def serve(r):
        r.handle = handle
        r.serve = Serve(engine="fake", port=1)

    def evaluate(r):
        raise StageError("evaluate", "lm-eval exited with 1", "tail")

    res = run_steps(_run(tmp_path), [Step("serve", serve), Step("measure", _good_blocks), Step("evaluate", evaluate)])
    assert (res.status, res.failed_stage, res.log_tail) == ("failed", "evaluate", "tail")
    assert res.serve.engine == "fake" and res.perf.levels and handle.stopped == 1


def test_a_bug_in_a_step_fails_that_step_with_its_traceback(tmp_path):
    from harness.cell import Step, run_steps

    res = run_steps(_run(tmp_path), [Step("compress", lambda r: {}["nope"])])
    assert res.failed_stage == "compress" and res.reason.startswith("KeyError") and "Traceback" in res.log_tail


def test_a_dead_server_is_the_root_cause_of_a_step_that_uses_it(tmp_path):
    from harness.cell import Step, run_steps

    def serve(r):
        r.handle = _Handle(dead="fake engine exited with code 1; root cause: OOM")

    def measure(r):
        raise ConnectionError("connection refused")  # the symptom

    res = run_steps(_run(tmp_path), [Step("serve", serve), Step("measure", measure, uses_server=True)])
    assert res.failed_stage == "measure" and "root cause: OOM" in res.reason and res.log_tail == "engine log tail"
    assert res.reason.startswith("measure: ")


def test_an_unkept_promise_fails_the_cell(tmp_path):
    from harness.cell import Step, run_steps

    res = run_steps(_run(tmp_path), [Step("measure", lambda r: None)])
    assert (res.status, res.failed_stage) == ("failed", "measure") and "planned load levels" in res.reason


def test_interrupt_propagates_after_the_server_is_stopped(tmp_path):
    import pytest

    from harness.cell import Step, run_steps

    handle = _Handle()

    def serve(r):
        r.handle = handle

    def measure(r):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_steps(_run(tmp_path), [Step("serve", serve), Step("measure", measure)])
    assert handle.stopped == 1


def test_a_block_against_the_result_contract_fails_the_step_that_made_it_and_keeps_the_rest(tmp_path):
    from harness.cell import Step, run_steps

    def serve(r):
        r.serve = Serve.model_construct(engine="fake", port="not a port")  # a plugin that skipped validation

    res = run_steps(_run(tmp_path), [Step("serve", serve), Step("measure", _good_blocks)])
    assert (res.status, res.failed_stage) == ("failed", "serve") and "serve" in res.reason
    assert res.serve is None and res.perf is not None


def test_the_compress_step_stores_the_artefact_it_made(tmp_path, monkeypatch):
    """The artefact serve loads is the result's `artefact` block, as it is (harness/cell/steps.compress)."""
    import harness.cell.steps as steps
    from harness.cell import Step, run_steps
    from harness.result import Artefact

    art = Artefact(model="/w/m", dtype="bfloat16", quantization="bitsandbytes", size_bytes=9, bits_per_weight=4.5)
    art.server_args["quantization"] = "bitsandbytes"

    class Compressor:
        def compress(self, cell, source, paths, settings):
            assert source == "/src"
            return art

    monkeypatch.setattr(steps, "compressors", SimpleNamespace(get=lambda kind: Compressor))
    run = _run(tmp_path)
    run.cell.method_spec, run.model_src = None, "/src"
    res = run_steps(run, [Step("compress", steps.compress), Step("measure", _good_blocks)])
    assert res.status == "done" and run.artefact is art and res.artefact == art
    assert res.model_dump(mode="json")["artefact"]["server_args"] == {"quantization": "bitsandbytes"}
    plain = art.model_copy(update={"server_args": {}})  # the usual case: no engine flags, no key stored
    assert "server_args" not in plain.model_dump(mode="json")


def test_failed_doc_is_a_cell_result():
    from harness.cell import failed_doc
    from harness.result import CellResult

    cell = _Plan(cell_id="c1", matrix="m", label="x")
    res = failed_doc(cell, "executor", "worker died")
    assert isinstance(res, CellResult) and (res.status, res.failed_stage, res.reason) == (
        "failed",
        "executor",
        "worker died",
    )


def test_a_steps_fixed_costs_join_its_timing_as_new_keys(tmp_path):
    from harness.cell import Step, run_steps

    class Server:
        def startup_phases(self, handle):
            return {"import": 1.5, "ready": 0.5}

    def serve(run):
        run.server, run.handle = Server(), _Handle()

    run = _run(tmp_path)
    res = run_steps(run, [Step("serve", serve), Step("b", _good_blocks)])
    assert res.status == "done"
    assert {"serve", "b", "serve.import", "serve.ready"} == set(res.timings) and res.timings["serve.import"] == 1.5


@pytest.mark.parametrize("slow", [True, False])
def test_the_evaluate_worker_starts_ahead_once_beside_a_slow_server_start_or_else_beside_compress(
    tmp_path, monkeypatch, slow
):
    """A vLLM start (30-40 s, mostly one core importing) gets the evaluate worker started beside it; llama-server's
    second or two does not, so a GGUF cell starts it beside its artefact's making (a conversion: mostly one Python
    process). Either way once, in the environment the engine's scoring will ask for (harness/worker_ahead.py)."""
    import contextlib

    import harness.cell.steps as steps
    from harness.cell import Step, run_steps
    from harness.result import Artefact

    started: list[tuple[str, str, dict]] = []
    step_now = {"name": ""}

    class Server:
        starts_slowly = slow

        def __init__(self, spec, python, device):
            pass

        def evaluate_env(self):
            return {"LIB": "/tools"}

        def start(self, artefact, served_name, log, trust_remote_code):
            h = SimpleNamespace(engine="e", command=["e"], startup_s=1.0, loaded={}, port=1, pid=os.getpid())
            h.stop = lambda: None
            return h

    class Compressor:
        def compress(self, cell, model_src, paths, settings):
            return Artefact(model="/m")

    def at(name, fn):
        def step(run):
            step_now["name"] = name
            fn(run)

        return Step(name, step)

    monkeypatch.setattr(steps, "servers", SimpleNamespace(get=lambda kind: Server))
    monkeypatch.setattr(steps, "compressors", SimpleNamespace(get=lambda kind: Compressor))
    monkeypatch.setattr(steps, "PeakSampler", lambda pid, gpu: contextlib.nullcontext())
    run = _run(tmp_path)
    run.cell.serving, run.cell.device, run.cell.kv_cache = SimpleNamespace(kind="fake"), "cpu", "auto"
    run.cell.model, run.cell.method_spec = SimpleNamespace(trust_remote_code=False), None
    run.settings = SimpleNamespace(python=sys.executable)
    run.model_src = "/m"
    run.evaluator = SimpleNamespace(
        start_ahead=lambda log, workdir, seq, env: started.append((step_now["name"], log.name, env))
    )
    run.handle = None
    res = run_steps(
        run,
        [at("compress", steps.compress), at("serve", steps.serve), Step("measure", _good_blocks)],
    )
    assert res.status == "done", res.reason
    assert started == [("serve" if slow else "compress", "evaluate.log", {"LIB": "/tools"})]
