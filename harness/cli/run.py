"""`harness run`: plan and run a matrix (hub models prepared first, then the runner), and what a finished run
prints (the status table, the advisor's pick, the dashboard command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from harness.cli.console import err, fail, out, say
from harness.cli.grants import ALLOW_ENGINE_ARG, TRUST_REMOTE_CODE, grant_of
from harness.cli.matrix_plan import load_plan, nothing_runs
from harness.cli.status import print_status, status_rows
from harness.errors import DQError


def _answer(file: Path, settings) -> None:
    """What a finished run prints: the results table, the advisor's pick for a default constraint on this
    host, and the command that opens the dashboard. The advisor runs as its own program: it reads the
    store, and the harness depends on it only as a command, never as a package."""
    import subprocess

    from harness.hw.probe import host_caps

    rows, p, host = status_rows(file)
    print_status(rows, p.matrix, host)
    caps = host_caps(settings)
    device, mem = ("gpu", caps.gpu_memory_gib) if caps.device == "cuda" else ("cpu", caps.cpu.memory_gib)
    decide = next((c.decide for c in p.cells if c.decide is not None), None)
    if decide is not None:  # the matrix's own question: the advisor reads the same `decide:` block
        args = ["--matrix", str(file), "--device", device, "--db", str(settings.db_path), "--top", "3"]
        mem_words = f"{decide.memory_gib:g} GiB" if decide.memory_gib is not None else "any memory"
        head = f"the matrix's question: {mem_words}, drop <= {decide.max_drop}, best {decide.objective}"
        shown = args[:4]
    else:
        args = ["--vram", f"{int(mem or 24)}", "--max-drop", "5%", "--device", device]
        args += ["--db", str(settings.db_path), "--top", "3"]
        head = f"{device} memory {int(mem or 24)} GiB, quality drop <= 5% of the reference"
        shown = args[:6]
    out.print(f"\nadvisor ({head}): ./dq advisor {' '.join(shown)}", highlight=False, markup=False)
    r = subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True, text=True, timeout=120)
    out.print((r.stdout or r.stderr).rstrip(), highlight=False, markup=False, soft_wrap=True)
    out.print(
        "\nbrowse, filter and compare: ./dq dashboard   (streamlit on http://127.0.0.1:8501)",
        highlight=False,
        markup=False,
    )


def run(
    file: Path = typer.Argument(..., help="matrix YAML"),
    force: bool = typer.Option(False, "--force", help="re-run cells that are already done"),
    cell: list[str] = typer.Option(None, "--cell", help="run only these cell ids (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    executor: str = typer.Option("local", "--executor", help="local (one cell after another) or ray"),
    address: str = typer.Option(
        None, "--address", help="ray: cluster address (auto, ray://host:10001); default starts a local Ray instance"
    ),
    retries: int = typer.Option(2, "--retries", help="ray: retries of a cell whose worker died"),
    shared_dir: str = typer.Option(
        None, "--shared-dir", help="ray: a path mounted on every node that holds the results folder (optional)"
    ),
    until_decided: bool = typer.Option(
        False,
        "--until-decided",
        help="with the matrix's `decide:` block: measure the most promising cells first, skip what cannot change "
        "the answer, stop when it is settled; prints what it saved against the full grid",
    ),
    allow_engine_arg: list[str] = ALLOW_ENGINE_ARG,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Plan and run a matrix: compress, serve, load-test, evaluate, store. Resumes finished cells."""
    from harness.progress import Progress
    from harness.runner import Runner

    try:
        settings, matrix, p = load_plan(file, grant=grant_of(allow_engine_arg, trust_remote_code))
        nothing = nothing_runs(file, p)
        if nothing is not None:
            raise nothing
        unknown = set(cell or []) - set(p.by_id())
        if unknown:
            raise DQError(f"--cell: {sorted(unknown)} not in the plan of {file} (see `harness plan {file}`)")
        from harness.registry import executors

        if executor not in executors:
            raise DQError(f"--executor: {executors.unknown_message(executor)}")
        opts = {"address": address, "retries": retries, "shared_dir": shared_dir} if executor == "ray" else {}
        for w in p.warnings:  # as `harness plan` shows them: a run may take hours, read them before it starts
            err.print(f"warning: {w}", highlight=False, markup=False, soft_wrap=True)
        for g in p.grants:  # what the command line allowed beyond measuring (harness/plan/trust.py)
            err.print(f"allowed: {g}", highlight=False, markup=False, soft_wrap=True)
        # hub models are downloaded here, once, with progress, before any cell (and far from vLLM's start-up)
        from harness.models.sources import hub_models, prepare_hub_models

        todo = [c for c in p.cells if c.status != "infeasible" and (not cell or c.cell_id in cell)]
        prepare_hub_models(hub_models(todo), settings, None if quiet else say)
        runner = Runner(settings, Progress(quiet=quiet), executor=executor, executor_options=opts)
        extra = {"until_decided": True} if until_decided else {}
        outcome = runner.run(p, force=force, only=set(cell) if cell else None, **extra)
    except DQError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted: servers stopped; finished cells are kept, the interrupted one was not stored")
        raise typer.Exit(130) from None
    counts: dict[str, int] = {}
    for s in outcome.values():
        counts[s] = counts.get(s, 0) + 1
    summary = getattr(runner, "summary", None)
    if summary is not None:  # --until-decided: the answer and what it saved
        for line in summary.lines():
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    err.print(
        f"results: {settings.results_dir} (DuckDB {settings.db_path}); "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        highlight=False,
    )
    if not quiet:
        try:
            _answer(file, settings)
        except (DQError, OSError, subprocess.SubprocessError) as exc:  # the run's results stand regardless
            err.print(f"(no summary: {exc})", highlight=False, markup=False)
    if counts.get("failed"):
        raise typer.Exit(1)
