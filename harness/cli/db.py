"""`harness db ...`: the sub-app for the DuckDB index of results (`db rebuild`: the index recreated from the
per-cell JSON files)."""

from __future__ import annotations

import json

import typer

from harness.cli.console import err, fail, out
from harness.errors import DQError

db_app = typer.Typer(help="The DuckDB index of results.", no_args_is_help=True)


@db_app.command("rebuild")
def db_rebuild() -> None:
    """Recreate the DuckDB index from the per-cell JSON files alone (the source of truth: per-item scores
    included, nothing under results/work/ is read), keeping the old index's planned and infeasible rows.
    Files this dqbench cannot read are named and left out. Refused while a `harness run` writes the
    results folder."""
    from harness.runner import writer_lock
    from harness.settings import load_settings
    from harness.store import db
    from harness.store.results import ResultStore

    settings = load_settings()
    try:
        # under the writer lock: a run's ingest between our read of the JSONs and the swap would be lost
        with writer_lock(settings.results_dir):
            scans = [
                json.loads(p.read_text())
                for p in sorted((settings.results_dir / "sensitivity").glob("*.json"))
                if not p.name.endswith((".raw.json", ".in.json"))
            ]
            results, refused = ResultStore(settings.results_dir).scan()
            r = db.rebuild(settings.db_path, results, scans)
    except DQError as exc:
        fail(exc)
    for f in refused:  # kept on disk, left out of the index: a person decides what they are
        err.print(f"refused: {f.why}", highlight=False, markup=False, soft_wrap=True)
    out.print(
        f"{settings.db_path}: rebuilt from {r.results} result file(s), kept {r.carried} planned/infeasible "
        f"row(s) of the old index",
        highlight=False,
        markup=False,
    )
    if r.note:
        err.print(f"note: {r.note}", highlight=False, markup=False, soft_wrap=True)
