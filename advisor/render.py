"""Render a Recommendation as rich tables (terminal) or a JSON document (--json)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from advisor.explain import cell_label, decision, drop_text, serve_command
from advisor.select import Recommendation, check
from advisor.verdict import verdict_words

VERDICT_COLS = [
    "cell_id",
    "host_id",
    "model",
    "precision",
    "method",
    "kv_cache",
    "distill",
    "verdict",
    "drop",
    "drop_lo",
    "drop_hi",
    "drop_limit",
    "more_items",
    "n_items",
    "ci_kind",
    "verdict_reason",
]


def drop_verdicts_json(rec: Recommendation) -> list[dict] | None:
    """Every considered cell's verdict against --max-drop (None without a limit), with whether it counted as
    a fit of the drop limit under --decide (`counted`): an undecided cell ranked by --decide point says so."""
    c, f = rec.constraints, rec.frame
    if c.max_drop is None or f is None:
        return None
    ranked = set(zip(rec.ranked["cell_id"], rec.ranked.get("host_id", rec.ranked["cell_id"])))
    out = []
    for r in f.to_dict("records"):
        row = {k: _clean(r.get(k)) for k in VERDICT_COLS}
        row["ranked"] = (r["cell_id"], r.get("host_id", r["cell_id"])) in ranked
        out.append(row)
    return out


COLS = [
    "cell_id",
    "host_id",
    "host_label",
    "model",
    "precision",
    "method",
    "kv_cache",
    "distill",
    "engine",
    "device",
    "mem_need_gib",
    "mem_src",
    "gpu_peak_gib",
    "weights_gib",
    "kv_gib",
    "weights_src",
    "drop",
    "drop_lo",
    "drop_hi",
    "drop_limit",
    "verdict",
    "verdict_reason",
    "more_items",
    "n_items",
    "ci_kind",
    "q",
    "q_ref",
    "n_tasks",
    "tok_s",
    "tok_s_level",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "cost_per_mtok",
    "usd_per_1k_correct",
    "kwh_per_1k_correct",
    "correct_per_hour",
    "price_per_hour_used",
    "price_src",
    "draft",
    "draft_target_id",
    "spec_acceptance",
    "spec_accepted_len",
    "spec_speedup_c1",
    "spec_equal_output",
    "slo_goodput",
    "slo_attainment",
    "slo_level",
    "slo_rule",
    "slo_text",
    "objective_value",
]


def _clean(v):
    if v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def to_json(rec: Recommendation, scope: dict | None = None) -> dict:
    """`scope`: which hosts' results were considered ({"host": id or "all", "note": why}); every
    recommendation and nearest miss carries its own host_id and host_label."""
    c = rec.constraints
    top = rec.ranked.head(c.top)
    return {
        "ok": rec.ok,
        "hosts": scope or {"host": "all"},
        "constraints": {k: (str(v) if k == "max_drop" and v is not None else v) for k, v in vars(c).items()},
        "measure": rec.measure,
        "drop_unit": None
        if c.max_drop is None
        else ("fraction of the reference's score" if c.max_drop.relative else "points"),
        "drop_verdicts": drop_verdicts_json(rec),
        "recommendations": [{k: _clean(r.get(k)) for k in COLS} for r in top.to_dict("records")],
        "serve_command": serve_command(top.iloc[0].to_dict(), rec) if rec.ok else None,
        "rejected": {
            k: {
                "count": v["count"],
                **{x: v[x] for x in ("beyond", "undecided") if x in v},
                "unit": v["unit"],
                "miss": _clean(v["miss"]),
                "unknown": v["unknown"],
                "nearest": {x: _clean(v["nearest"].get(x)) for x in COLS},
            }
            for k, v in rec.rejected.items()
        },
        "decision": decision(rec),
    }


def _f(v, fmt: str) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _priced(rec: Recommendation) -> bool:
    """Whether the ranked cells have a cost per correct answer (a price was given or stored)."""
    col = rec.ranked.get("usd_per_1k_correct")
    return col is not None and bool(col.notna().any())


def _kwh(r: dict) -> str:
    v = r.get("kwh_per_1k_correct")
    return _f(v, ".3g") if v is not None and not (isinstance(v, float) and math.isnan(v)) else "not measurable"


def _mem(r: dict) -> str:
    if r.get("mem_src") == "measured":
        return f"{_f(r['mem_need_gib'], '.2f')} measured"
    return f"{_f(r['mem_need_gib'], '.2f')} est. (w {str(r['weights_src'])[:4]}.)"


def _add(t: Table, *cells: str) -> None:
    """A row of plain text: a cell id in brackets (`[b1934d4ab1b7]`) is not rich markup to swallow."""
    t.add_row(*(Text(str(c)) for c in cells))


def _ranked_title(rec: Recommendation) -> str:
    """'top 5 of 7 that fit', or, when --decide point ranked undecided cells, a title that says so."""
    c, r = rec.constraints, rec.ranked
    top = f"top {min(c.top, len(r))} of {len(r)}"
    und = int(r["verdict"].eq("undecided").sum()) if c.max_drop is not None else 0
    if not und:
        return f"{top} that fit"
    return (
        f"{top} ranked: {len(r) - und} fit, {und} undecided on the drop limit "
        f"(ranked by the point estimate under --decide point; not shown to fit)"
    )


def undecided_table(rec: Recommendation, console: Console) -> None:
    """The cells the drop limit cannot decide yet that meet every other constraint: what more items could
    settle (under --decide conservative they are not fits; under point they are ranked, marked)."""
    c, f = rec.constraints, rec.frame
    if c.max_drop is None or f is None:
        return
    others = [k for k in check(f, c) if k != "quality"]
    ok = pd.Series(True, index=f.index)
    for name, (passes, _, _) in check(f, c).items():
        if name in others:
            ok &= passes.fillna(False)
    und = f[ok & f["verdict"].eq("undecided")]
    if und.empty:
        return
    t = Table(title="undecided on the drop limit (meet every other constraint): the 95% CI straddles the limit")
    for col in ("cell", "host", "quality drop", "why, and what would decide it"):
        t.add_column(col)
    for r in und.sort_values(["drop", "cell_id"], na_position="last").head(c.top).to_dict("records"):
        _add(
            t,
            f"{cell_label(r)} [{r['cell_id']}]",
            str(r.get("host_label") or r.get("host_id")),
            drop_text(r, rec),
            str(r["verdict_reason"]),
        )
    console.print(t)
    if len(und) > c.top:
        console.print(f"... and {len(und) - c.top} more undecided (--json lists every cell's verdict)", highlight=False)


def render(rec: Recommendation, console: Console, scope: dict | None = None) -> None:
    c = rec.constraints
    if scope:
        console.print(
            f"hosts: {scope.get('label') or scope['host']}" + (f" ({scope['note']})" if scope.get("note") else ""),
            highlight=False,
            soft_wrap=True,
        )
    head = [f"objective {c.objective}"]
    if c.vram_gib:
        head.append(f"{c.vram_gib:g} GiB {c.device} memory for {c.context_len} tokens x {c.concurrency}")
    if c.max_drop:
        head.append(
            f"max drop {c.max_drop}, --decide {c.decide} "
            + (
                "(a fit needs its whole 95% CI within the limit)"
                if c.conservative
                else "(undecided cells whose point estimate is within are ranked, marked undecided)"
            )
        )
    if c.min_tok_s:
        head.append(f">= {c.min_tok_s:g} tok/s")
    if c.max_ttft_ms:
        head.append(f"TTFT {c.ttft_stat} <= {c.max_ttft_ms:g} ms")
    if c.slo is not None:
        head.append(f"SLO {c.slo}" + (f", goodput >= {c.min_goodput:g} req/s" if c.min_goodput is not None else ""))
    console.print("; ".join(head), highlight=False)
    console.print(f"quality measure: {rec.measure}", highlight=False)
    if rec.ok:
        t = Table(title=_ranked_title(rec))
        for col in (
            "#",
            "cell",
            "host",
            "memory GiB",
            "quality drop",
            "drop verdict",
            "tok/s (measured)",
            "TTFT p50/p99 ms",
            "$/1M tok",
            *(["$ / 1k correct", "kWh / 1k correct"] if _priced(rec) else []),
            "device",
            *(["goodput at SLO (req/s), level"] if c.slo is not None else []),
        ):
            t.add_column(col)
        for i, r in enumerate(rec.ranked.head(c.top).to_dict("records"), 1):
            _add(
                t,
                str(i),
                f"{cell_label(r)} [{r['cell_id']}]",
                str(r.get("host_label") or r.get("host_id")),
                _mem(r),
                drop_text(r, rec),
                verdict_words(r, c.decide) or "no limit",
                f"{_f(r['tok_s'], '.1f')} @c{_f(r.get('tok_s_level'), '.0f')}",
                f"{_f(r['ttft_ms_p50'], '.0f')}/{_f(r['ttft_ms_p99'], '.0f')}",
                _f(r["cost_per_mtok"], ".2f"),
                *([_f(r.get("usd_per_1k_correct"), ".4g"), _kwh(r)] if _priced(rec) else []),
                str(r["device"]),
                *(
                    [f"{_f(r.get('slo_goodput'), '.3g')} at {r.get('slo_level')} ({r.get('slo_rule')})"]
                    if c.slo
                    else []
                ),
            )
        console.print(t)
        if _priced(rec):
            from advisor.cost import cost_note

            price = rec.ranked.iloc[0]
            console.print(
                f"{cost_note(c.metric)}; price {_f(price.get('price_per_hour_used'), '.4g')} $/h "
                f"({price.get('price_src')})",
                highlight=False,
                soft_wrap=True,
            )
    if rec.rejected:
        t = Table(title="rejected, by the constraint they broke")
        for col in ("constraint", "cells", "nearest miss"):
            t.add_column(col)
        for name, r in rec.rejected.items():
            n = r["nearest"]
            miss = f"{_f(r['miss'], '.2f')} {r['unit']}" if r["miss"] is not None else "figure not measured"
            extra = f" ({r['unknown']} without the figure)" if r["unknown"] else ""
            if name == "quality":
                extra = f" ({r['beyond']} beyond the limit, {r['undecided']} undecided)" + (
                    f"; {r['unknown']} without a 95% CI or a score" if r["unknown"] else ""
                )
            if name == "memory" and r["miss"] is not None:
                miss += f" ({n.get('mem_src')})"
            if name == "slo" and isinstance(n.get("slo_text"), str):
                miss += f"; {n['slo_text']}"
            _add(
                t,
                name,
                f"{r['count']}{extra}",
                f"{cell_label(n)} on {n.get('host_label') or n.get('host_id')}: {miss}",
            )
        console.print(t)
    undecided_table(rec, console)
    if rec.ok:
        console.print("serve it:", highlight=False)
        console.print("  " + serve_command(rec.ranked.iloc[0].to_dict(), rec), highlight=False, soft_wrap=True)
    console.print(decision(rec), highlight=False, soft_wrap=True)
