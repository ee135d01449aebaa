"""A matrix file as the commands read it: settings, the validated matrix and its plan on this host, and the
error for a plan of which nothing can run."""

from __future__ import annotations

from pathlib import Path

from harness.errors import PlanError
from harness.plan.trust import Grant


def load_plan(path: Path, memory_gib: float | None = None, grant: Grant | None = None):
    """(settings, matrix, plan). `grant`: the command line's opt-ins (harness/cli/grants.py); None for a
    command that only reads results (status, report): nothing runs, so nothing needs allowing."""
    from harness.plan import plan_matrix
    from harness.settings import load_settings
    from harness.spec import load_matrix

    settings = load_settings()
    matrix = load_matrix(path)
    if memory_gib is not None:  # `harness plan --hardware-memory`: the budget of another device
        matrix = matrix.model_copy(update={"hardware": matrix.hardware.model_copy(update={"memory_gib": memory_gib})})
    return settings, matrix, plan_matrix(matrix, settings, grant=grant or Grant.reading())


def nothing_runs(file: Path, p) -> PlanError | None:
    """The error for a plan of which no cell can run on this host (every reason, per cell); None if one can.
    A run of it would do nothing and exit 0, which reads as success."""
    if any(c.status != "infeasible" for c in p.cells):
        return None
    host = (p.host or {}).get("label") or "this host"
    if not p.cells:
        return PlanError(
            f"{file}: no grid point of {p.matrix} is a cell: " + "; ".join(p.skipped) + " (see docs/matrix.md, `axes`)"
        )
    return PlanError(
        f"{file}: no cell of {p.matrix} can run on {host}; every cell is infeasible:\n"
        + "\n".join(f"  - {c.label} [{c.cell_id}]: {c.reason}" for c in p.cells)
        + f"\n(`harness plan {file}` shows the plan; fix the reasons above or run it on a host that has "
        "what they name)"
    )
