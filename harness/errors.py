"""Error types the CLI turns into one clear message (never a traceback) and a distinct exit code."""

from __future__ import annotations


class DQError(Exception):
    """Base for errors that carry a user-facing message naming what is wrong and how to fix it."""

    exit_code = 1


class SpecError(DQError):
    """A matrix file is malformed: carries field path, bad value, what is allowed."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        if len(problems) == 1:
            msg = f"{head}{problems[0]}"
        else:
            msg = f"{head}{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(msg)


class PlanError(DQError):
    """The matrix parsed but cannot be planned (unknown plugin, unresolvable model)."""

    exit_code = 3


class StageError(DQError):
    """A stage of one cell failed; the runner stores the cell as failed and goes on."""

    def __init__(self, stage: str, message: str, log_tail: str = "") -> None:
        self.stage = stage
        self.log_tail = log_tail
        super().__init__(f"{stage}: {message}")
