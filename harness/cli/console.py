"""The command line's two consoles (results on stdout, messages on stderr) and how a command fails: one
clear message and the DQError's exit code, no traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from harness.errors import DQError

# rich wraps at 80 columns on a pipe; tables of cells need more
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def fail(exc: DQError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def say(msg: str) -> None:
    err.print(msg, highlight=False, markup=False, soft_wrap=True)
