"""`harness` command line: validate, plan, run, status, prepare, db rebuild.

Every DQError becomes one clear message and its exit code (2 bad spec, 3 unplannable, 1 failed
cells, 130 interrupted); no traceback for user mistakes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import DQError, PlanError

if TYPE_CHECKING:
    from harness.plan.cell import Plan
    from harness.plan.power import TaskPower

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="dqbench harness: compress, serve, load-test and score LLM cells; results in DuckDB.",
)
# rich wraps at 80 columns on a pipe; tables of cells need more
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _fail(exc: DQError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _load(path: Path, memory_gib: float | None = None):
    from harness.plan import plan_matrix
    from harness.settings import load_settings
    from harness.spec import load_matrix

    settings = load_settings()
    matrix = load_matrix(path)
    if memory_gib is not None:  # `harness plan --hardware-memory`: the budget of another device
        matrix = matrix.model_copy(update={"hardware": matrix.hardware.model_copy(update={"memory_gib": memory_gib})})
    return settings, matrix, plan_matrix(matrix, settings)


def _say(msg: str) -> None:
    err.print(msg, highlight=False, markup=False, soft_wrap=True)


def _nothing_runs(file: Path, p) -> PlanError | None:
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


@app.command()
def validate(file: Path = typer.Argument(..., help="matrix YAML")) -> None:
    """Check a matrix file: types, allowed values, references, plugins and tasks, and that this host can run
    at least one of its cells. Loads nothing."""
    try:
        _, m, p = _load(file)
    except DQError as exc:
        _fail(exc)
    runnable = sum(c.status != "infeasible" for c in p.cells)
    nothing = _nothing_runs(file, p)
    out.print(
        f"{file}: {'valid' if nothing is None else 'parsed'} ({len(m.models)} model(s); axes "
        f"precision={m.axes.precision} method={m.axes.method} distill={m.axes.distill}); on this host "
        f"{runnable} of {len(p.cells)} cell(s) can run",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if nothing is not None:
        _fail(nothing)


def _status_rows(file: Path, memory_gib: float | None = None) -> tuple[list[dict], Plan, dict]:
    """(one row per planned cell with THIS host's result, the plan, this host's block). Results are per
    (cell id, host id): another host's result of a cell is not this host's (it is named in `reason`)."""
    from harness.result_facts import cell_status, flat_metrics
    from harness.store.hosts import this_host
    from harness.store.results import ResultStore

    settings, matrix, plan = _load(file, memory_gib)
    store = ResultStore(settings.results_dir)
    host = this_host(settings)
    rows = []
    for c in plan.cells:
        result = store.read(c.cell_id, host["host_id"])
        elsewhere = None
        if result is None and c.status != "infeasible":
            elsewhere = {h: str((r.host or {}).get("label")) for h, r in store.hosts_of(c.cell_id).items() if r.done}
        status, reason = cell_status(c.status, c.reason, result, elsewhere)
        rows.append(
            {
                "cell_id": c.cell_id,
                "host_id": host["host_id"],
                "host_label": host.get("label"),
                "model": c.model.name,
                "precision": c.precision,
                "method": c.method,
                "distill": c.distill,
                "engine": c.serving.kind,
                "device": c.device,
                "status": status,
                "reason": reason,
                "reasons": c.reasons if status == "infeasible" else [r for r in [reason] if r],
                "parent_id": c.parent_id,
                "estimate": c.estimate.model_dump() if c.estimate else None,
                "train_estimate": c.train_estimate.model_dump() if c.train_estimate else None,
                "metrics": flat_metrics(result),
            }
        )
    return rows, plan, host


def _host_line(host: dict) -> str:
    src = host.get("source") or ""
    return (
        f"host: {host.get('label')} [{host['host_id']}]"
        + (f" ({src})" if src.startswith("override") else "")
        + (f"; probe failed: {host['error']}" if host.get("error") else "")
    )


@app.command()
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
) -> None:
    """Expand the grid into cells: id, status, estimated memory (served, and training for a student), and why
    a cell cannot run here."""
    if host_preset:
        import os

        from harness.hw.probe import OVERRIDE_ENV

        os.environ[OVERRIDE_ENV] = host_preset  # this process only: the plan and its host block both read it
    try:
        rows, p, host = _status_rows(file, memory_gib)
    except DQError as exc:
        _fail(exc)
    power = _power(p, host)
    if as_json:
        doc = {"matrix": p.matrix, "host": host, "cells": rows, "skipped": p.skipped, "warnings": p.warnings}
        doc["power"] = [r.model_dump(mode="json") for r in power]
        print(json.dumps(doc, indent=2, default=str))
        return
    out.print(_host_line(host), highlight=False, markup=False, soft_wrap=True)
    t = Table(title=f"plan: {p.matrix} ({len(rows)} cells)")
    cols = ("cell_id", "model", "precision", "method", "distill", "engine", "status", "est. GiB", "train GiB", "parent")
    for col in cols:
        t.add_column(col, no_wrap=True)
    for r in rows:
        est = r["estimate"]["total_gib"] if r["estimate"] else None
        train = r["train_estimate"]["total_gib"] if r["train_estimate"] else None
        t.add_row(
            r["cell_id"],
            r["model"],
            r["precision"],
            r["method"],
            r["distill"],
            r["engine"],
            r["status"],
            f"{est:.2f}" if est is not None else "?",
            f"{train:.2f}" if train is not None else "",
            r["parent_id"] or "",
        )
    out.print(t)
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
    _print_power(power)


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


@app.command()
def status(
    file: Path = typer.Argument(..., help="matrix YAML"),
    as_json: bool = typer.Option(False, "--json", help="print cells with flat metrics as JSON"),
) -> None:
    """Status of every cell of a matrix, with headline metrics of finished ones."""
    try:
        rows, p, host = _status_rows(file)
    except DQError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    _print_status(rows, p.matrix, host)


def _print_status(rows: list[dict], matrix: str, host: dict) -> None:
    out.print(_host_line(host), highlight=False, markup=False, soft_wrap=True)
    t = Table(title=f"status: {matrix}")
    for col in ("cell_id", "host", "cell", "status", "tok/s", "TTFT p50 ms", "TPOT p50 ms", "peak GiB", "quality"):
        t.add_column(col, overflow="fold")
    for r in rows:
        m = r["metrics"]

        def f(k: str, fmt: str = ".1f", m: dict = m) -> str:
            return format(m[k], fmt) if m.get(k) is not None else ""

        q = "; ".join(
            f"{task}: " + ", ".join(f"{k}={v:.3g}" for k, v in ms.items() if v is not None)
            for task, ms in (m.get("quality") or {}).items()
        )
        t.add_row(
            r["cell_id"],
            r["host_id"],
            f"{r['model']}/{r['precision']}/{r['method']}/{r['distill']}",
            r["status"],
            f("output_tok_s"),
            f("ttft_ms_p50", ".0f"),
            f("tpot_ms_p50"),
            f("peak_mem_gib", ".2f"),
            q or (r["reason"] or "")[:120],
        )
    out.print(t)


def _answer(file: Path, settings) -> None:
    """What a finished run prints: the results table, the advisor's pick for a default constraint on this
    host, and the command that opens the dashboard. The advisor runs as its own program: it reads the
    store, and the harness depends on it only as a command, never as a package."""
    import subprocess

    from harness.hw.probe import host_caps

    rows, p, host = _status_rows(file)
    _print_status(rows, p.matrix, host)
    caps = host_caps(settings)
    device, mem = ("gpu", caps.gpu_memory_gib) if caps.device == "cuda" else ("cpu", caps.cpu.memory_gib)
    args = [
        "--vram",
        f"{int(mem or 24)}",
        "--max-drop",
        "5%",
        "--device",
        device,
        "--db",
        str(settings.db_path),
        "--top",
        "3",
    ]
    out.print(
        f"\nadvisor ({device} memory {int(mem or 24)} GiB, quality drop <= 5% of the reference): "
        f"./dq advisor {' '.join(args[:6])}",
        highlight=False,
        markup=False,
    )
    r = subprocess.run([sys.executable, "-m", "advisor.cli", *args], capture_output=True, text=True, timeout=120)
    out.print((r.stdout or r.stderr).rstrip(), highlight=False, markup=False, soft_wrap=True)
    out.print(
        "\nbrowse, filter and compare: ./dq dashboard   (streamlit on http://127.0.0.1:8501)",
        highlight=False,
        markup=False,
    )


@app.command()
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
) -> None:
    """Plan and run a matrix: compress, serve, load-test, evaluate, store. Resumes finished cells."""
    from harness.progress import Progress
    from harness.runner import Runner

    try:
        settings, matrix, p = _load(file)
        nothing = _nothing_runs(file, p)
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
        # hub models are downloaded here, once, with progress, before any cell (and far from vLLM's start-up)
        from harness.models.sources import hub_models, prepare_hub_models

        todo = [c for c in p.cells if c.status != "infeasible" and (not cell or c.cell_id in cell)]
        prepare_hub_models(hub_models(todo), settings, None if quiet else _say)
        runner = Runner(settings, Progress(quiet=quiet), executor=executor, executor_options=opts)
        outcome = runner.run(p, force=force, only=set(cell) if cell else None)
    except DQError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted: servers stopped; finished cells are kept, the interrupted one was not stored")
        raise typer.Exit(130) from None
    counts: dict[str, int] = {}
    for s in outcome.values():
        counts[s] = counts.get(s, 0) + 1
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


@app.command()
def tasks(
    match: str = typer.Argument(None, help="only names containing this"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
) -> None:
    """The evaluation tasks that run offline: dqbench's dq_* tasks and lm-eval's own tasks whose documents are
    packaged on PyPI, with their documents, default few-shot count and whether k-shot works offline. Any other
    lm-eval task runs by name with hub access."""
    from harness.evaluate import catalog

    rows: list[dict] = [
        {"task": n, "kind": "dqbench", "docs": d, "shots": 0, "fewshot_offline": False, "leaves": 1, "output": "-"}
        for n, d in sorted(catalog.DQ_DOCS.items())
    ]
    for n in catalog.offline_names():
        ls = catalog.leaves(n) or []
        rows.append(
            {
                "task": n,
                "kind": "group" if len(ls) > 1 or n not in catalog._catalog()["leaves"] else "lm-eval",
                "docs": catalog.doc_count(n),
                "shots": sorted({lf.num_fewshot for lf in ls}),
                "fewshot_offline": all(lf.fewshot_offline for lf in ls),
                "leaves": len(ls),
                "output": ",".join(sorted({lf.output_type for lf in ls})),
            }
        )
    rows = [r for r in rows if not match or match in r["task"]]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table(title=f"offline evaluation tasks ({len(rows)}); lm-eval {catalog._catalog().get('lm_eval_version')}")
    for col in ("task", "kind", "docs", "default shots", "k-shot offline", "subtasks", "requests"):
        t.add_column(col)
    for r in rows:
        shots = r["shots"] if isinstance(r["shots"], int) else ",".join(map(str, r["shots"]))
        t.add_row(
            str(r["task"]),
            str(r["kind"]),
            str(r["docs"]),
            str(shots),
            "yes" if r["fewshot_offline"] else "no",
            str(r["leaves"]),
            str(r["output"]),
        )
    out.print(t)
    out.print("k-shot offline 'no': shots come from a train split no registry package carries; use num_fewshot: 0")


@app.command()
def prepare(file: Path = typer.Argument(Path("matrices/smollm2-cpu.yaml"), help="matrix YAML")) -> None:
    """Prepare the matrix's models (hub models: downloaded at their revision, with progress, resumable) and
    evaluation data (what `run` would do first)."""
    from harness.models.sources import prepare_hub_models, source_for
    from harness.registry import evaluators

    try:
        settings, matrix, _ = _load(file)
        log = settings.results_dir / "logs" / "prepare.log"
        prepare_hub_models(list(matrix.models), settings, _say)
        for m in matrix.models:
            src = source_for(m, settings)
            src.prepare(log)
            out.print(f"model {m.name}: {src.resolve()}", highlight=False)
        evaluators.get(matrix.evaluation.kind)(matrix.evaluation, settings).prepare(log)
        out.print(f"evaluation data: {settings.data_dir}", highlight=False)
    except DQError as exc:
        _fail(exc)


@app.command()
def report(
    file: Path = typer.Argument(..., help="matrix YAML"),
    out_dir: Path = typer.Option(None, "--out", help="folder (default results/reports/MATRIX)"),
) -> None:
    """Write the matrix's Pareto plots (PNG), summary CSV and a self-contained HTML page (by `advisor report`:
    the advisor reads the store; the harness runs it as a command and never imports it)."""
    try:
        settings, matrix, p = _load(file)
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
        _fail(exc)
    out.print(f"report: {r.stdout.strip()} (+ PNGs and summary.csv in {target})", highlight=False)


@app.command()
def sensitivity(
    file: Path = typer.Argument(..., help="matrix YAML"),
    method: str = typer.Option(..., "--method", help="a name under `methods:` (its grid is measured)"),
    precision: str = typer.Option(None, "--precision", help="default: the method's first precision"),
    model: str = typer.Option(None, "--model", help="default: the matrix's first model"),
    windows: int = typer.Option(8, "--windows"),
    tokens: int = typer.Option(256, "--tokens"),
    top: int = typer.Option(2, "--top", help="layers to keep in bf16 in the suggestion"),
) -> None:
    """Per-layer quantization sensitivity (KL when only that layer is quantized): a mixed-precision helper."""
    from harness.plan.sensitivity import scan

    try:
        settings, matrix, _ = _load(file)
        doc = scan(matrix, method, settings, precision=precision, model=model, windows=windows, tokens=tokens, top=top)
    except DQError as exc:
        _fail(exc)
    t = Table(
        title=f"{doc['model']} / {doc['method']} ({doc['precision']}): one layer quantized at a time, "
        f"{doc['windows']} x {doc['tokens']} tokens"
    )
    for col in ("rank", "layer", "KLD mean", "top-1 agree", "ppl ratio", "params"):
        t.add_column(col)
    by = {r["layer"]: r for r in doc["layers"]}
    for i, layer in enumerate(doc["ranked"]):
        r = by[layer]
        t.add_row(
            str(i + 1),
            str(layer),
            f"{r['kld_mean']:.5f}",
            f"{r['top1_agreement']:.1%}",
            f"{r['ppl_ratio']:.4f}",
            f"{r['params']:,}",
        )
    out.print(t)
    a = doc["all_layers"]
    out.print(
        f"every layer quantized: KLD {a['kld_mean']:.4f}, top-1 {a['top1_agreement']:.1%}, "
        f"ppl ratio {a['ppl_ratio']:.3f}; stored {settings.results_dir / 'sensitivity' / doc['scan_id']}.json",
        highlight=False,
        markup=False,
    )
    out.print(
        f"mixed precision, the {top} most sensitive layers in bf16:\n  ignore: "
        + json.dumps(doc["suggested"]["ignore"]),
        highlight=False,
        markup=False,
    )


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="print the probe as JSON"),
    refresh: bool = typer.Option(False, "--refresh", help="probe again instead of reading the cache"),
) -> None:
    """What this host and its engine builds can run: CPU/ISA, GPUs, vLLM's kernels, llama.cpp, fast dtype."""
    from harness.hw.probe import host_caps
    from harness.hw.report import render_caps
    from harness.settings import load_settings

    try:
        caps = host_caps(load_settings(), refresh=refresh)
    except DQError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps({**caps.model_dump(mode="json"), "host": caps.host_block()}, indent=2))
        return
    out.print(render_caps(caps), highlight=False, markup=False, soft_wrap=True)


db_app = typer.Typer(help="The DuckDB index of results.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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
        _fail(exc)
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
