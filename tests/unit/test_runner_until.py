"""`harness run --until-decided` (harness/runner_until.py) through the real Runner with a fake executor whose
cells report set throughputs and drops: references first, cells over memory never run, a cell that cannot beat
the answer keeps its load test but skips its evaluation (the real gate, harness/cell/decide.skip_reason), the
answer is the one the full grid gives, and the summary counts what was saved. A plain run re-runs only the
evaluation of a done cell whose question is not settled."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.cell.decide import skip_reason, skipped_quality
from harness.plan import plan_matrix
from harness.result import CellResult, Level, Memory, Perf, Quality
from harness.runner import Runner
from harness.spec import parse_matrix
from harness.store.hosts import this_host
from tests.fakes.decisions import decision

# precision/method -> (sync tok/s, relative drop interval); the reference first
FIGURES = {
    "bf16/none": (20.0, None),
    "int8/w8a8": (30.0, (-0.01, 0.04)),  # within 5 %
    "int4/w4a16": (45.0, (0.10, 0.30)),  # fastest, but beyond
    "int4/gguf": (15.0, (-0.02, 0.03)),  # slower than the reference itself: cannot change the answer
}


class FakeExecutor:
    def __init__(self):
        self.ran: list[tuple[str, bool, float | None]] = []  # (label, evaluate_only, bar)

    def preflight(self, cells):
        return None

    def run(self, cells, finished, progress):
        for c in cells:
            self.ran.append((c.label, c.evaluate_only, c.must_beat.value if c.must_beat else None))
            finished(c, self.result(c))

    def result(self, c):
        tok_s, ci = FIGURES[f"{c.precision}/{c.method}"]
        perf = Perf(
            levels=[Level(profile="synchronous", level=1, requests=3, completed=3, failed=0, output_tok_s=tok_s)]
        )
        run = SimpleNamespace(cell=c, perf=perf, memory=None, memory_sampler=None)
        skip = skip_reason(run)
        if skip:
            quality = skipped_quality(run, skip)
        else:
            lo, hi = ci or (None, None)
            verdict = None if ci is None else "within" if hi <= 0.05 else "beyond" if lo > 0.05 else "undecided"
            quality = Quality(
                decision=decision(
                    tasks={"dq_lambada": "acc", "dq_arc_easy": "acc", "dq_hellaswag": "acc_norm"},
                    reference=c.parent_id,
                    verdict=verdict,
                    stop=verdict or "reference",
                    items_used=20 if ci is None else 10,
                    scored=20 if ci is None else 10,
                    item_s=0.1,
                    lo=lo,
                    hi=hi,
                    point=None if ci is None else (lo + hi) / 2,
                )
            )
        return CellResult(
            cell_id=c.cell_id,
            matrix=c.matrix,
            label=c.label,
            status="done",
            plan=c.model_dump(mode="json"),
            host=this_host(self.settings),
            perf=perf,
            memory=Memory(peak_gib=3.0),
            quality=quality,
            timings={"serve": 5.0, "measure": 5.0, "evaluate": 4.0},
            wall_s=14.0,
        )


@pytest.fixture
def setup(base_matrix, settings, monkeypatch):
    monkeypatch.setenv("DQBENCH_HOST_CAPS", "cpu-avx512")
    monkeypatch.setenv("DQBENCH_HOST_CAPS_RUN", "1")
    base_matrix["decide"] = {"max_drop": "5%", "max_items": 20, "batch_items": 10, "memory_gib": 24}
    p = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    runner = Runner(settings)
    runner.executor = FakeExecutor()
    runner.executor.settings = settings
    return p, runner


def test_until_decided_runs_what_can_change_the_answer_and_says_what_it_saved(setup):
    p, runner = setup
    runnable = [c for c in p.cells if c.status != "infeasible"]
    assert {f"{c.precision}/{c.method}" for c in runnable} == set(FIGURES)
    runner.run(p, until_decided=True)
    ran = runner.executor.ran
    assert ran[0][0].endswith("bf16/none/none") and ran[0][2] is None  # the reference first, ungated
    s = runner.summary
    assert s is not None and s.answer is not None and s.answer.label.endswith("int8/w8a8/none")
    assert not s.excluded  # every cell fits 24 GiB (tests/unit/decide/test_priority.py excludes some)
    gguf = next(c for c in runnable if c.method == "gguf")
    assert gguf.cell_id in s.skipped_eval and "cannot beat" in s.skipped_eval[gguf.cell_id]
    stored = runner.store.read(gguf.cell_id, this_host(runner.settings)["host_id"])
    assert stored.done and stored.perf.levels and stored.quality.decision.stop == "skipped"  # load test kept
    text = "\n".join(s.lines())
    assert "answer: " in text and "evaluation(s) not run" in text and "min saved" in text
    assert s.full_items == 4 * 20 and s.items_used < s.full_items


def test_the_answer_is_the_full_grids(setup):
    p, runner = setup
    runner.run(p)  # the full grid: every cell, every evaluation
    assert all(b is None for _, _, b in runner.executor.ran)
    from harness.decide.priority import winner

    cells = [c for c in p.cells if c.status != "infeasible"]
    hid = this_host(runner.settings)["host_id"]
    full = winner(cells, {c.cell_id: runner.store.read(c.cell_id, hid) for c in cells}, cells[0].decide)
    assert full is not None and full.label.endswith("int8/w8a8/none")


def test_a_plain_run_re_runs_only_the_evaluation_a_done_cell_owes(setup, base_matrix, settings):
    p, runner = setup
    runner.run(p, until_decided=True)
    runner.executor.ran.clear()
    runner.run(p)  # the skipped evaluation is owed now; the decided cells stand
    assert [(label.split("/", 1)[1], only) for label, only, _ in runner.executor.ran] == [("int4/gguf/none", True)]
    runner.executor.ran.clear()
    base_matrix["decide"]["max_items"] = 40  # a larger budget: the reference scores on, its cells may too
    bigger = plan_matrix(parse_matrix(base_matrix), settings, host="cpu-avx512")
    runner.run(bigger)
    assert ("bf16/none/none", True) in [(lb.split("/", 1)[1], o) for lb, o, _ in runner.executor.ran]
