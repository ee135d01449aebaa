"""One cell's pipeline: `execute_cell()` runs the cell's steps in order over a CellRun and returns its
CellResult (harness/result.py). It stores nothing: the runner (local) or the driver (Ray) does, so a
worker that dies loses only its own cell. Module-level and picklable for remote executors.

- harness/cell/context.py: `CellRun` (what the steps share: the cell, settings, display, the cell's
  paths, host, the model source, evaluator, artefact, server handle and the result blocks so far) and
  `Step` (name, function, whether it uses the server, its deadline, whether the cell has it).
- harness/cell/steps.py: `STEPS = [prepare, distill, compress, draft, serve, measure, evaluate, shift,
  speculative]`, each a small `step(run) -> None`.
- harness/cell/distill.py: the distill step's work (the student, the served teacher's answers).
- harness/cell/speculative.py: a spec-decoded cell's draft, evaluation, speed-up and equal-output check.
- harness/cell/run.py: the loop (`run_steps`): timing, live progress, deadlines, the server watch, failure
  -> failed result, KeyboardInterrupt, stopping the server; `unkept_promise`; `failed_doc`.
"""

from harness.cell.context import CellRun, Step
from harness.cell.run import execute_cell, failed_doc, run_steps, unkept_promise
from harness.cell.steps import STEPS

__all__ = ["STEPS", "CellRun", "Step", "execute_cell", "failed_doc", "run_steps", "unkept_promise"]
