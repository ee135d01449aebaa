"""`harness status`, and the per-cell rows it shows (this host's result of each planned cell), which `plan`
and a finished `run` show too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from harness.cli.console import fail, out
from harness.cli.matrix_plan import load_plan
from harness.errors import DQError

if TYPE_CHECKING:
    from harness.plan.cell import Plan
    from harness.plan.trust import Grant


def status_rows(
    file: Path, memory_gib: float | None = None, grant: Grant | None = None
) -> tuple[list[dict], Plan, dict]:
    """(one row per planned cell with THIS host's result, the plan, this host's block). Results are per
    (cell id, host id): another host's result of a cell is not this host's (it is named in `reason`)."""
    from harness.result_facts import cell_status, flat_metrics
    from harness.store.hosts import this_host
    from harness.store.results import ResultStore
    from harness.store.rows import roofline_figures

    settings, matrix, plan = load_plan(file, memory_gib, grant)
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
                "kv_cache": c.kv_cache,  # axes.kv_cache (issue #27); auto: the engine's default
                "distill": c.distill,
                "draft": c.draft.name if c.draft else None,  # a spec-decoded cell's draft (issue #28)
                "draft_target_id": c.draft.target_id if c.draft else None,
                "engine": c.serving.kind,
                "device": c.device,
                "status": status,
                "reason": reason,
                "reasons": c.reasons if status == "infeasible" else [r for r in [reason] if r],
                "parent_id": c.parent_id,
                "estimate": c.estimate.model_dump() if c.estimate else None,
                "train_estimate": c.train_estimate.model_dump() if c.train_estimate else None,
                "metrics": flat_metrics(result),
                "roofline": roofline_figures(result) if result is not None else None,
            }
        )
    return rows, plan, host


def cell_words(r: dict) -> str:
    """model/precision/method/distill, `/kv-NAME` for a KV-cache entry (as CellPlan.label), and `+draft` for a
    spec-decoded cell."""
    base = f"{r['model']}/{r['precision']}/{r['method']}/{r['distill']}"
    if r.get("kv_cache", "auto") != "auto":
        base += f"/kv-{r['kv_cache']}"
    return f"{base}+{r['draft']}" if r.get("draft") else base


def host_line(host: dict) -> str:
    src = host.get("source") or ""
    return (
        f"host: {host.get('label')} [{host['host_id']}]"
        + (f" ({src})" if src.startswith("override") else "")
        + (f"; probe failed: {host['error']}" if host.get("error") else "")
    )


def status(
    file: Path = typer.Argument(..., help="matrix YAML"),
    as_json: bool = typer.Option(False, "--json", help="print cells with flat metrics as JSON"),
) -> None:
    """Status of every cell of a matrix, with headline metrics of finished ones."""
    try:
        rows, p, host = status_rows(file)
    except DQError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    print_status(rows, p.matrix, host)


def print_status(rows: list[dict], matrix: str, host: dict) -> None:
    out.print(host_line(host), highlight=False, markup=False, soft_wrap=True)
    t = Table(title=f"status: {matrix}")
    cols = (
        "cell_id",
        "host",
        "cell",
        "status",
        "tok/s",
        "TTFT p50 ms",
        "TPOT p50 ms",
        "peak GiB",
        "roofline",
        "quality",
    )
    for col in cols:
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
            cell_words(r),
            r["status"],
            f("output_tok_s"),
            f("ttft_ms_p50", ".0f"),
            f("tpot_ms_p50"),
            f("peak_mem_gib", ".2f"),
            roofline_cell(r.get("roofline")),
            q or (r["reason"] or "")[:120],
        )
    out.print(t)
    if any(r.get("roofline") and r["roofline"].get("regime_top") for r in rows):
        out.print(
            "roofline: each measured figure as a % of its limit on this host's figures (`harness doctor`), with its "
            "regime: c1 and the top concurrency's output tok/s vs the decode limit, pf = prefill (input tokens / "
            "TTFT p50) vs the prefill limit; mem = memory-bound, cmp = compute-bound",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def roofline_cell(roof: dict | None) -> str:
    """'c1 69% mem · top 33% cmp · pf 41% cmp' (empty without a roofline)."""
    if not roof or roof.get("regime_top") is None:
        return ""
    word = {"memory-bound": "mem", "compute-bound": "cmp"}
    parts = []
    for tag, key in (("c1", "c1"), ("top", "top"), ("pf", "prefill")):
        pct, regime = roof.get(f"roofline_pct_{key}"), roof.get(f"regime_{key}")
        if regime is not None:
            parts.append(f"{tag} {pct:.0f}% {word[regime]}" if pct is not None else f"{tag} - {word[regime]}")
    return " · ".join(parts)
