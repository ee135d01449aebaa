"""Render a Recommendation as rich tables (terminal) or a JSON document (--json)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from advisor.explain import decision, drop_text, serve_command
from advisor.select import Recommendation

COLS = [
    "cell_id",
    "host_id",
    "host_label",
    "model",
    "precision",
    "method",
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
    "q",
    "q_ref",
    "n_tasks",
    "tok_s",
    "tok_s_level",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "cost_per_mtok",
    "objective_value",
]


def _clean(v):
    if isinstance(v, float) and math.isnan(v):
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
        "recommendations": [{k: _clean(r.get(k)) for k in COLS} for r in top.to_dict("records")],
        "serve_command": serve_command(top.iloc[0].to_dict(), rec) if rec.ok else None,
        "rejected": {
            k: {
                "count": v["count"],
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


def _mem(r: dict) -> str:
    if r.get("mem_src") == "measured":
        return f"{_f(r['mem_need_gib'], '.2f')} measured"
    return f"{_f(r['mem_need_gib'], '.2f')} est. (w {str(r['weights_src'])[:4]}.)"


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
        head.append(f"max drop {c.max_drop}" + (" (upper 95% bound)" if c.conservative else ""))
    if c.min_tok_s:
        head.append(f">= {c.min_tok_s:g} tok/s")
    if c.max_ttft_ms:
        head.append(f"TTFT {c.ttft_stat} <= {c.max_ttft_ms:g} ms")
    console.print("; ".join(head), highlight=False)
    console.print(f"quality measure: {rec.measure}", highlight=False)
    if rec.ok:
        t = Table(title=f"top {min(c.top, len(rec.ranked))} of {len(rec.ranked)} that fit")
        for col in (
            "#",
            "cell",
            "host",
            "memory GiB",
            "quality drop",
            "tok/s (measured)",
            "TTFT p50/p99 ms",
            "$/1M tok",
            "device",
        ):
            t.add_column(col)
        for i, r in enumerate(rec.ranked.head(c.top).to_dict("records"), 1):
            t.add_row(
                str(i),
                f"{r['model']} {r['precision']}/{r['method']}/{r['distill']} [{r['cell_id']}]",
                str(r.get("host_label") or r.get("host_id")),
                _mem(r),
                drop_text(r, rec),
                f"{_f(r['tok_s'], '.1f')} @c{_f(r.get('tok_s_level'), '.0f')}",
                f"{_f(r['ttft_ms_p50'], '.0f')}/{_f(r['ttft_ms_p99'], '.0f')}",
                _f(r["cost_per_mtok"], ".2f"),
                str(r["device"]),
            )
        console.print(t)
    if rec.rejected:
        t = Table(title="rejected, by the constraint they broke")
        for col in ("constraint", "cells", "nearest miss"):
            t.add_column(col)
        for name, r in rec.rejected.items():
            n = r["nearest"]
            miss = f"{_f(r['miss'], '.2f')} {r['unit']}" if r["miss"] is not None else "figure not measured"
            extra = f" ({r['unknown']} without the figure)" if r["unknown"] else ""
            if name == "memory" and r["miss"] is not None:
                miss += f" ({n.get('mem_src')})"
            t.add_row(
                name,
                f"{r['count']}{extra}",
                f"{n['model']} {n['precision']}/{n['method']}/{n['distill']} on "
                f"{n.get('host_label') or n.get('host_id')}: {miss}",
            )
        console.print(t)
    if rec.ok:
        console.print("serve it:", highlight=False)
        console.print("  " + serve_command(rec.ranked.iloc[0].to_dict(), rec), highlight=False, soft_wrap=True)
    console.print(decision(rec), highlight=False, soft_wrap=True)
