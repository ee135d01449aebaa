"""`harness validate` and `harness plan`: what a matrix file expands to on a host (cells, their status and
estimated memory, why a cell cannot run), with the students' training memory and the tasks' power."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.console import fail, out
from harness.cli.grants import ALLOW_ENGINE_ARG, TRUST_REMOTE_CODE, grant_of
from harness.cli.matrix_plan import load_plan, nothing_runs
from harness.cli.status import cell_words, host_line, status_rows
from harness.errors import DQError

if TYPE_CHECKING:
    from harness.plan.cell import Plan
    from harness.plan.power import TaskPower


def validate(
    file: Path = typer.Argument(..., help="matrix YAML"),
    allow_engine_arg: list[str] = ALLOW_ENGINE_ARG,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Check a matrix file: types, allowed values, references, plugins and tasks, what it needs allowed on the
    command line, and that this host can run at least one of its cells. Loads nothing."""
    try:
        _, m, p = load_plan(file, grant=grant_of(allow_engine_arg, trust_remote_code))
    except DQError as exc:
        fail(exc)
    runnable = sum(c.status != "infeasible" for c in p.cells)
    nothing = nothing_runs(file, p)
    out.print(
        f"{file}: {'valid' if nothing is None else 'parsed'} ({len(m.models)} model(s); axes "
        f"precision={m.axes.precision} method={m.axes.method} distill={m.axes.distill}"
        + (f" draft={m.axes.draft}" if m.axes.draft != ["none"] else "")
        + "); on this host "
        f"{runnable} of {len(p.cells)} cell(s) can run",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if nothing is not None:
        fail(nothing)


def plan(
    file: Path = typer.Argument(..., help="matrix YAML"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
    host_preset: str | None = typer.Option(
        None,
        "--host",
        help="plan for a host preset (harness/hw/presets: cpu-avx2, cpu-avx512, cuda-a100, cuda-h100) or a "
        "`harness doctor --json` file instead of this host (as DQBENCH_HOST_CAPS)",
    ),
    memory_gib: float | None = typer.Option(
        None, "--hardware-memory", min=0.001, help="GiB to check cells against, instead of hardware.memory_gib"
    ),
    allow_engine_arg: list[str] = ALLOW_ENGINE_ARG,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
) -> None:
    """Expand the grid into cells: id, status, estimated memory (served, and training for a student), and why
    a cell cannot run here."""
    if host_preset:
        import os

        from harness.hw.probe import OVERRIDE_ENV

        os.environ[OVERRIDE_ENV] = host_preset  # this process only: the plan and its host block both read it
    try:
        rows, p, host = status_rows(file, memory_gib, grant_of(allow_engine_arg, trust_remote_code))
    except DQError as exc:
        fail(exc)
    power = _power(p, host)
    decide = next((c.decide for c in p.cells if c.decide is not None), None)
    budgets = _budgets(p)
    predicted = _predictions(p)
    drafts = _draft_predictions(p, host)
    for r in rows:
        pred = predicted.get(r["cell_id"])
        r["prediction"] = pred.model_dump(mode="json") if pred is not None else None
        if r["cell_id"] in drafts:  # a spec-decoded cell: its accepted length, predicted and measured (issue #28)
            r["speculative"] = drafts[r["cell_id"]]
    if as_json:
        doc = {
            "matrix": p.matrix,
            "host": host,
            "cells": rows,
            "skipped": p.skipped,
            "warnings": p.warnings,
            "grants": p.grants,
        }
        if decide is not None:
            doc["decide"] = {**decide.model_dump(mode="json"), "items": budgets}
        doc["power"] = [r.model_dump(mode="json") for r in power]
        print(json.dumps(doc, indent=2, default=str))
        return
    out.print(host_line(host), highlight=False, markup=False, soft_wrap=True)
    t = Table(title=f"plan: {p.matrix} ({len(rows)} cells)")
    cols = ("cell_id", "model", "precision", "method", "distill", "engine", "status", "est. GiB", "train GiB", "parent")
    for col in cols:
        t.add_column(col, no_wrap=True)
    if decide is not None:
        t.add_column("items", no_wrap=True)
    for r in rows:
        est = r["estimate"]["total_gib"] if r["estimate"] else None
        train = r["train_estimate"]["total_gib"] if r["train_estimate"] else None
        t.add_row(
            r["cell_id"],
            r["model"],
            r["precision"],
            # axes.kv_cache: shown beside the method where it is not the engine's default
            r["method"] + (f" kv:{r['kv_cache']}" if r.get("kv_cache", "auto") != "auto" else ""),
            r["distill"] + (f"+{r['draft']}" if r.get("draft") else ""),
            r["engine"],
            r["status"],
            f"{est:.2f}" if est is not None else "?",
            f"{train:.2f}" if train is not None else "",
            r["parent_id"] or "",
            *([budgets.get(r["cell_id"], "")] if decide is not None else []),
        )
    out.print(t)
    if decide is not None:
        from harness.decide.question import question_lines

        for line in question_lines(p.cells[0].evaluation, decide):
            out.print(line, highlight=False, markup=False, soft_wrap=True)
    _print_training(p)
    for r in rows:
        if r["status"] in ("infeasible", "failed") and r["reason"]:
            out.print(f"{r['cell_id']} {r['status']}:", highlight=False)
            for part in r["reasons"]:
                out.print(f"  - {part}", highlight=False, soft_wrap=True, markup=False)
    if p.skipped:
        out.print(
            f"{len(p.skipped)} grid point(s) are not cells: "
            + "; ".join(p.skipped[:5])
            + (" ..." if len(p.skipped) > 5 else ""),
            highlight=False,
            markup=False,
        )
    for g in p.grants:
        out.print(f"allowed: {g}", highlight=False, markup=False, soft_wrap=True)
    _print_power(power)
    _print_predictions(rows)
    _print_drafts(rows)


def _draft_predictions(p: Plan, host: dict) -> dict[str, dict]:
    """cell id -> the accepted length predicted for each spec-decoded cell (harness/plan/speculative.py) from its
    draft's measured top-1 agreement on this host, beside what its own result measured (if any)."""
    from harness.plan.speculative import prediction
    from harness.settings import load_settings
    from harness.store.results import ResultStore

    spec = [c for c in p.cells if c.draft is not None]
    if not spec:
        return {}
    store = ResultStore(load_settings().results_dir)
    out = {}
    for c in spec:
        assert c.draft is not None
        alpha = store.read(c.draft.alpha_from, host["host_id"]) if c.draft.alpha_from else None
        mine = store.read(c.cell_id, host["host_id"])
        measured = mine.speculative if mine is not None and mine.speculative is not None else None
        out[c.cell_id] = {
            "draft": c.draft.name,
            "target_id": c.draft.target_id,
            "draft_cell": c.draft.cell.cell_id if c.draft.cell else None,
            "predicted": prediction(c, alpha).model_dump(mode="json"),
            "measured_accepted_len": measured.mean_accepted_len if measured else None,
            "measured_acceptance": measured.acceptance_rate if measured else None,
            "speedup_c1": measured.speedup_c1 if measured else None,
            "equal_output": measured.equal_output.verdict if measured and measured.equal_output else None,
        }
    return out


def _print_drafts(rows: list[dict]) -> None:
    shown = [r for r in rows if r.get("speculative")]
    if not shown:
        return
    t = Table(title="speculative decoding: mean accepted length (tokens per target step), predicted and measured")
    for col in ("cell_id", "cell", "target", "gamma", "alpha", "predicted", "measured", "acceptance", "speed-up c1"):
        t.add_column(col, no_wrap=col != "cell")

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in shown:
        s = r["speculative"]
        pr = s["predicted"]
        t.add_row(
            r["cell_id"],
            escape(cell_words(r)),
            s["target_id"],
            str(pr["gamma"]),
            f(pr["alpha"], ".3f"),
            f(pr["mean_accepted_len"], ".2f"),
            f(s["measured_accepted_len"], ".2f"),
            f(s["measured_acceptance"], ".1%"),
            f(s["speedup_c1"], ".2f"),
        )
    out.print(t)
    notes = {r["speculative"]["predicted"].get("source") or r["speculative"]["predicted"].get("note") for r in shown}
    for n in sorted(x for x in notes if x):
        out.print(f"alpha: {n}", highlight=False, markup=False, soft_wrap=True)
    out.print(
        "predicted = (1 - alpha^(gamma+1)) / (1 - alpha) (Leviathan et al. 2023), alpha = the draft's measured top-1 "
        "agreement with the teacher; measured = 1 + accepted / drafts from the engine's counters",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _predictions(p: Plan) -> dict:
    """Each planned cell's prediction (harness/predict): {} when there is nothing to predict from, and never
    an error that stops the plan."""
    from harness.predict.context import plan_predictions
    from harness.settings import load_settings

    try:
        # a spec-decoded cell's speed is its draft's story (_draft_predictions), not its target's configuration's
        runnable = [c for c in p.cells if c.status != "infeasible" and c.draft is None]
        return plan_predictions(runnable, load_settings())
    except Exception as exc:  # noqa: BLE001 - a prediction is an addition to the plan, never its failure
        out.print(f"no predictions: {type(exc).__name__}: {exc}", highlight=False, markup=False, soft_wrap=True)
        return {}


def _print_predictions(rows: list[dict]) -> None:
    def iv(e: dict | None, scale: float = 1.0) -> str:
        if not e:
            return "-"
        if e["label"] == "measured":
            return f"{e['value'] * scale:.3g} measured"
        return f"{e['value'] * scale:.3g} [{e['lo'] * scale:.3g}–{e['hi'] * scale:.3g}]"

    shown = [r for r in rows if r.get("prediction")]
    if not shown:
        return
    t = Table(title="predicted before running (90 % intervals; harness/predict, `advisor predict` for more)")
    for col in ("cell_id", "cell", "conc.", "GiB", "tok/s", "TTFT ms", "drop %", "regime"):
        t.add_column(col, no_wrap=col != "cell")
    for r in shown:
        pr = r["prediction"]
        t.add_row(
            r["cell_id"],
            escape(cell_words(r)),
            f"{pr['concurrency']:g}",
            iv(pr["memory_gib"]),
            iv(pr["decode_tok_s"]),
            iv(pr["ttft_ms"]),
            iv(pr["drop"], 100),
            (pr.get("limits") or {}).get("decode_regime", "-"),
        )
    out.print(t)
    errs = next((r["prediction"]["decode_tok_s"] or {}).get("error") for r in shown if r["prediction"]["decode_tok_s"])
    if errs:
        out.print(f"tok/s error: {errs}", highlight=False, markup=False, soft_wrap=True)


def _budgets(p: Plan) -> dict[str, str]:
    """Per cell of a `decide:` plan: its item budget and what it pairs with (harness/decide/question.py)."""
    from harness.decide.question import cell_budget

    return {c.cell_id: cell_budget(c, c.decide) for c in p.cells if c.decide is not None and c.status != "infeasible"}


def _print_training(p: Plan) -> None:
    """Each trained student's training-memory estimate, once (every cell of the student carries it), and the
    plan's warnings."""
    seen: set[str] = set()
    for c in p.cells:
        e = c.train_estimate
        if e is None or c.distill in seen:
            continue
        seen.add(c.distill)
        fits = (
            ""
            if e.budget_gib is None
            else f" ({'fits' if e.total_gib <= e.budget_gib else 'exceeds'} {e.budget_gib:g})"
        )
        out.print(
            f"training {c.distill}: {e.total_gib:.1f} GiB{fits}: {e.basis}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    for w in p.warnings:
        out.print(f"warning: {w}", highlight=False, markup=False, soft_wrap=True)


def _power(p: Plan, host: dict) -> list[TaskPower]:
    """The plan's power figures (harness/plan/power.py), from this store's done results of the plan's cells."""
    from harness.plan.power import plan_power
    from harness.settings import load_settings
    from harness.store.results import ResultStore

    if not p.cells:
        return []
    store = ResultStore(load_settings().results_dir)
    return plan_power(
        p,
        p.cells[0].evaluation,
        lambda cid: {h: r for h, r in store.hosts_of(cid).items() if r.done},
        host["host_id"],
    )


def _print_power(power: list[TaskPower]) -> None:
    if not power:
        return
    drop = next((r.resolve_drop for r in power if r.resolve_drop), None)
    t = Table(
        title="smallest paired drop each task can detect (95% two-sided, 80% power)"
        + (f"; resolve_drop {drop}" if drop else "")
    )
    for col in ("task", "metric", "items", "MDE pt", "estimate"):
        t.add_column(col, no_wrap=col != "estimate")
    if drop:
        t.add_column("resolves", no_wrap=True)
    for r in power:
        items = f"{r.items:,}" if r.items is not None else "?"
        mde = f"{r.mde_pt:.1f}" if r.mde_pt is not None else "-"
        basis = r.note or ((f"{r.model} [{r.reference}]: " if r.reference else "") + (r.basis_note or ""))
        cells = [r.task, r.metric or "-", items, mde, basis]
        if drop:
            cells.append("-" if r.resolved is None else "yes" if r.resolved else f"no: {r.items_needed:,} items")
        t.add_row(*(escape(c) for c in cells))
    out.print(t)
    for r in power:
        if r.warning:
            out.print(f"warning: {r.warning}", highlight=False, markup=False, soft_wrap=True)
