"""`harness prepare`: fetch a matrix's models (hub models at their revision) and its evaluation data ahead of
a run."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.console import fail, out, say
from harness.cli.grants import ALLOW_ENGINE_ARG, TRUST_REMOTE_CODE, grant_of
from harness.cli.matrix_plan import load_plan
from harness.errors import DQError


def prepare(
    file: Path = typer.Argument(Path("matrices/smollm2-cpu.yaml"), help="matrix YAML"),
    allow_engine_arg: list[str] = ALLOW_ENGINE_ARG,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Prepare the matrix's models (hub models: downloaded at their revision, with progress, resumable) and
    evaluation data (what `run` would do first)."""
    from harness.models.sources import prepare_hub_models, source_for
    from harness.registry import evaluators

    try:
        settings, matrix, _ = load_plan(file, grant=grant_of(allow_engine_arg, trust_remote_code))
        log = settings.results_dir / "logs" / "prepare.log"
        prepare_hub_models(list(matrix.models), settings, say)
        for m in matrix.models:
            src = source_for(m, settings)
            src.prepare(log)
            out.print(f"model {m.name}: {src.resolve()}", highlight=False)
        evaluators.get(matrix.evaluation.kind)(matrix.evaluation, settings).prepare(log)
        out.print(f"evaluation data: {settings.data_dir}", highlight=False)
    except DQError as exc:
        fail(exc)
