"""`harness` command line: the typer `app` (the `harness` console script and `python -m harness`) and its
commands, one module per command group: validate and plan (plan.py), status (status.py), run (run.py),
tasks, prepare, report, sensitivity, doctor, gc (each its own module), db rebuild (db.py). The consoles and the
error exit live in console.py, reading a matrix file into its plan in matrix_plan.py. Each command imports
what it runs inside its body, so importing this package loads nothing heavy.

Every command starts alike (`_entry`: SIGINT restored, the hub token held away from children).
Every DQError becomes one clear message and its exit code (2 bad spec, 3 unplannable, 1 failed
cells, 130 interrupted); no traceback for user mistakes.
"""

from __future__ import annotations

import sys

import typer

from harness.cli import db, doctor, gc, plan, prepare, report, run, sensitivity, status, tasks
from harness.cli.console import err
from harness.errors import DQError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="dqbench harness: compress, serve, load-test and score LLM cells; results in DuckDB.",
)
# registered in the order `harness --help` lists them
app.command()(plan.validate)
app.command()(plan.plan)
app.command()(status.status)
app.command()(run.run)
app.command()(tasks.tasks)
app.command()(prepare.prepare)
app.command()(report.report)
app.command()(sensitivity.sensitivity)
app.command()(doctor.doctor)
app.command()(gc.gc)
app.add_typer(db.db_app, name="db")


@app.callback()
def _entry() -> None:
    # before any command (the `harness` console script calls `app` itself, `python -m harness` calls main):
    # Ctrl-C and `kill -INT` work however the process was launched, and the hub token leaves this process's
    # environment so that only the download step's worker gets it (harness/entry.py, harness/credentials.py)
    from harness.credentials import hold_credentials
    from harness.entry import restore_sigint

    restore_sigint()
    hold_credentials()


def main() -> None:  # python -m harness
    from harness.proc import sigterm_as_interrupt

    try:
        # every command, not only `run`: prepare, sensitivity and the rest start stages and servers too
        # (their `finally` blocks stop them; click turns the KeyboardInterrupt into "Aborted!")
        with sigterm_as_interrupt():
            app()
    except DQError as exc:  # pragma: no cover - commands catch their own
        err.print(f"error: {exc}")
        sys.exit(exc.exit_code)
