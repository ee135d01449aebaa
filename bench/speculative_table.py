"""Benchmark table (issue #28): reference, quantized, student and teacher + student draft side by side, from a
results folder: output tok/s at concurrency 1 and at the top concurrency, the quality drop against the
reference (the paired avg_acc drop the shift stored, in points), acceptance and accepted length (measured and
predicted), speed-up over the target, the equal-output verdict and the energy note.

    ./dq python bench/speculative_table.py --results results [--matrix NAME] [--json F]

Figures are read from the results' JSON (cells/*.json), one per (cell, host): the latest. Every figure names
its host; say with it whether the host was idle (this script cannot know).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.result import CellResult
from harness.store.results import ResultStore


def _tok(r: CellResult, level: float | None) -> float | None:
    """Output tok/s at a closed-loop level (None: the highest measured)."""
    levels = [lv for lv in (r.perf.levels if r.perf else []) if lv.profile in ("synchronous", "concurrency")]
    if not levels:
        return None
    lv = max(levels, key=lambda x: x.level) if level is None else next((x for x in levels if x.level == level), None)
    return lv.output_tok_s if lv else None


def row(r: CellResult) -> dict:
    plan = r.plan
    draft = plan.get("draft") or {}
    agg = ((r.shift or {}).get("flips") or {}).get("aggregate") or {}
    sp = r.speculative
    top = max((lv.level for lv in (r.perf.levels if r.perf else [])), default=None)
    kind = (
        "teacher + draft"
        if draft
        else "reference"
        if not plan.get("parent_id")
        else "student"
        if plan.get("distill") != "none"
        else "quantized"
    )
    return {
        "kind": kind,
        "cell": r.label,
        "cell_id": r.cell_id,
        "host": (r.host or {}).get("label"),
        "status": r.status,
        "engine": (r.serve.engine if r.serve else None),
        "tok_s_c1": _tok(r, 1),
        "top_concurrency": top,
        "tok_s_top": _tok(r, None),
        "drop_pt": agg["drop_abs"] * 100 if agg.get("drop_abs") is not None else None,
        "drop_ci_pt": [x * 100 for x in agg["drop_ci95"]] if agg.get("drop_ci95") else None,
        "acceptance": sp.acceptance_rate if sp else None,
        "accepted_len": sp.mean_accepted_len if sp else None,
        "predicted_len": sp.predicted.mean_accepted_len if sp and sp.predicted else None,
        "alpha": sp.predicted.alpha if sp and sp.predicted else None,
        "speedup_c1": sp.speedup_c1 if sp else None,
        "speedup_top": sp.speedup_top if sp else None,
        "equal_output": sp.equal_output.verdict if sp and sp.equal_output else None,
        "energy": (r.perf.energy.counter or r.perf.energy.note) if r.perf and r.perf.energy else None,
        "reason": r.reason,
    }


def _f(v: object, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.environ.get("DQBENCH_RESULTS", "results"))
    ap.add_argument("--matrix", help="only this matrix's cells")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    results = ResultStore(Path(a.results)).all()
    if a.matrix:
        results = [r for r in results if r.matrix == a.matrix]
    latest: dict[tuple[str, str], CellResult] = {}
    for r in results:
        k = (r.cell_id, r.host_id)
        if k not in latest or (r.finished_at or "") > (latest[k].finished_at or ""):
            latest[k] = r
    order = {"reference": 0, "quantized": 1, "student": 2, "teacher + draft": 3}
    rows = sorted((row(r) for r in latest.values()), key=lambda x: (order[x["kind"]], x["cell"]))
    if not rows:
        print(f"no results under {a.results}", file=sys.stderr)
        return 3
    head = [
        "kind",
        "cell",
        "engine",
        "tok/s c1",
        "tok/s top",
        "drop pt (95% CI)",
        "accept",
        "len (pred)",
        "x c1",
        "x top",
        "equal",
    ]
    print(" | ".join(head))
    for x in rows:
        ci = x["drop_ci_pt"]
        print(
            " | ".join(
                [
                    x["kind"],
                    f"{x['cell']} [{x['cell_id']}] {x['status']}",
                    str(x["engine"]),
                    _f(x["tok_s_c1"], ".2f"),
                    f"{_f(x['tok_s_top'], '.2f')} @c{_f(x['top_concurrency'], 'g')}",
                    f"{_f(x['drop_pt'], '+.1f')}" + (f" ({ci[0]:+.1f} to {ci[1]:+.1f})" if ci else ""),
                    _f(x["acceptance"], ".1%"),
                    f"{_f(x['accepted_len'], '.2f')} ({_f(x['predicted_len'], '.2f')})",
                    _f(x["speedup_c1"], ".2f"),
                    _f(x["speedup_top"], ".2f"),
                    str(x["equal_output"] or "-"),
                ]
            )
        )
    hosts = sorted({str(x["host"]) for x in rows})
    energy = sorted({str(x["energy"]) for x in rows if x["energy"]})
    print(f"host(s): {', '.join(hosts)}; energy: {'; '.join(energy) or '-'}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
