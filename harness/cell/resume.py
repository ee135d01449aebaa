"""Re-running only a done cell's evaluation (the runner's `CellPlan.evaluate_only`): when the matrix's `decide:`
question is not settled by what the cell stored (a larger budget, a stricter limit, a reference with more
items, an evaluation `--until-decided` skipped; harness/decide/settled.py).

What the cell measured before stands: its perf, memory and serve blocks and their timings are carried over from
its stored result. The server must start again (the evaluation scores through it); prepare, distill and
compress find their caches. The evaluate step continues from the item journal (nothing scored is scored again);
the shift's logprob comparison stands, and its flips are recomputed from the new items against the parent's.
A cell with no done result on this host runs every step.
"""

from __future__ import annotations

from harness.cell.context import CellRun, Step
from harness.cell.steps import STEPS, serve
from harness.evaluate.reference import item_flips
from harness.result import CellResult
from harness.store.results import ResultStore

CARRIED = ("perf", "memory", "serve", "shift")  # the stored blocks a resumed evaluation keeps


def serve_again(run: CellRun) -> None:
    """The server for the evaluation; the stored serve block (the server the load test measured) and memory
    stand, so this server's memory is not sampled into the result."""
    kept, memory = run.serve, run.memory
    serve(run)
    run.memory_sampler = None  # it stops with the attempt; its figures are not this result's
    run.serve, run.memory = kept or run.serve, memory


def reshift(run: CellRun) -> None:
    """The stored shift block, with its flips against the parent recomputed from the cell's new items."""
    spec = run.cell.evaluation.shift
    if not run.shift or spec is None or run.quality is None or run.cell.parent_id is None:
        return
    parent = ResultStore(run.settings.results_dir).read(run.cell.parent_id, run.paths.measured.name)
    if parent is None or parent.quality is None:
        return
    run.shift = {**run.shift, "flips": item_flips(parent.quality, run.quality, spec.bootstrap_iters)}


def resume_steps(run: CellRun, stored: CellResult | None) -> list[Step]:
    """The steps of an evaluation-only attempt over `stored` (every step when there is no done result)."""
    if stored is None or not stored.done:
        run.warnings.append("asked to re-run the evaluation only, but no done result is stored here: ran every step")
        return STEPS
    for k in CARRIED:
        setattr(run, k, getattr(stored, k))
    run.timings.update(stored.timings)
    run.warnings.append(
        f"evaluation re-run over the result of {stored.finished_at}: its perf, memory and serve blocks are "
        f"carried over, the evaluation continued from its item journal"
    )
    by_name = {s.name: s for s in STEPS}
    return [
        by_name["prepare"],
        by_name["distill"],
        by_name["compress"],
        Step("serve", serve_again),
        by_name["evaluate"],
        Step("shift", reshift, uses_server=False),
    ]
