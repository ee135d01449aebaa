"""`harness report`: a matrix's plots, summary CSV and HTML page, written by `advisor report`, which the
harness runs as a command and never imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from harness.cli.console import fail, out
from harness.cli.matrix_plan import load_plan
from harness.errors import DQError


def report(
    file: Path = typer.Argument(..., help="matrix YAML"),
    out_dir: Path = typer.Option(None, "--out", help="folder (default results/reports/MATRIX)"),
) -> None:
    """Write the matrix's Pareto plots (PNG), summary CSV and a self-contained HTML page (by `advisor report`:
    the advisor reads the store; the harness runs it as a command and never imports it)."""
    try:
        settings, matrix, p = load_plan(file)
        if not settings.db_path.is_file():
            raise DQError(f"no results database at {settings.db_path}; run `harness run {file}` first")
        target = out_dir or settings.results_dir / "reports" / matrix.name
        args = ["report", "--out", str(target), "--title", f"dqbench: {matrix.name}", "--db", str(settings.db_path)]
        for c in p.cells:
            args += ["--cell", c.cell_id]
        r = subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise DQError(f"advisor report: {(r.stderr or r.stdout).strip()[-2000:]}")
    except DQError as exc:
        fail(exc)
    out.print(f"report: {r.stdout.strip()} (+ PNGs and summary.csv in {target})", highlight=False)
