"""Benchmark: how wrong the predictions are, measured. Leave-one-out over every measured cell it can read:
each cell is predicted from the other cells of its host (harness/predict/accuracy.py) and compared with what it
measured. Prints, per engine and scheme kind: memory, decode tok/s, TPOT and TTFT errors (mean / median / max
absolute %), and the coverage of the 90 % quality interval (with the cell's own KL, as after a fidelity pass,
and blind); then the issue #32 goals, met or not.

    ./dq python bench/predict_accuracy.py --results results [--results /other/results ...] [--docs] [--json F]

Inputs are results folders (their cells/*.json); a cell found twice keeps its latest result. `--docs` adds
the measured tables of docs/results/*.md that carry whole cells (bench/docs_cells.py), as hosts of
their own. Speed rows need the host's roofline figures: this host's from `harness doctor`'s cache, another
host's from the roofline blocks stored in its results; a host without either contributes memory and quality
rows only. Goals: memory <= 5 %, decode <= 15 %, TTFT <= 25 % (mean absolute % error), coverage >= 80 %.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.hw.figures import HostFigures
from harness.predict.accuracy import GOALS, Row, loo, summary
from harness.predict.context import results_from_dirs
from harness.predict.observe import Observation, observations
from harness.result import CellResult


def latest(results: list[CellResult]) -> list[CellResult]:
    """One result per (cell, host): the latest finished."""
    best: dict[tuple[str, str], CellResult] = {}
    for r in results:
        k = (r.cell_id, r.host_id)
        if k not in best or (r.finished_at or "") > (best[k].finished_at or ""):
            best[k] = r
    return list(best.values())


def stored_figures(results: list[CellResult]) -> dict[str, HostFigures]:
    """host id -> figures rebuilt from the roofline blocks its results carry (bandwidth and each compute
    dtype's peak as they were used), for hosts other than this one."""
    out: dict[str, dict] = {}
    for r in results:
        rf = r.roofline
        if rf is None or rf.error or not rf.bandwidth_gb_s or not rf.compute_dtype:
            continue
        d = out.setdefault(r.host_id, {"bw": rf.bandwidth_gb_s, "tflops": {}})
        d["tflops"][rf.compute_dtype.split(" ")[0]] = rf.peak_tflops
    return {
        h: HostFigures(
            device="cpu",
            bandwidth_gb_s=d["bw"],
            tflops=d["tflops"],
            source="measured",
            basis="rebuilt from the roofline blocks of this host's results",
        )  # fmt: skip
        for h, d in out.items()
    }


def this_host_figures() -> tuple[str | None, HostFigures | None, str]:
    try:
        from harness.hw.probe import host_caps, host_figures
        from harness.settings import load_settings

        s = load_settings()
        caps = host_caps(s)
        return caps.host_block()["host_id"], host_figures(s, measure=False), caps.label
    except Exception as exc:  # noqa: BLE001 - a bench prints what it can
        return None, None, f"no probe ({type(exc).__name__})"


def fmt(v: float | None, suffix: str = " %") -> str:
    return "-" if v is None else f"{v:.1f}{suffix}"


def print_table(rows: list[Row]) -> None:
    print(
        f"\n{'figure':<14} {'group':<28} {'cells':>5} {'points':>6} {'mean':>9} {'median':>9} {'max':>9} {'cover':>7}"
    )
    for s in summary(rows):
        print(
            f"{s.figure:<14} {s.group:<28} {s.cells:>5} {s.points:>6} {fmt(s.mape):>9} {fmt(s.median_ape):>9} "
            f"{fmt(s.max_ape):>9} {fmt(s.coverage):>7}"
        )


def goals(rows: list[Row]) -> list[str]:
    by = {(s.figure, s.group): s for s in summary(rows, by="engine")}
    lines = []
    for fig, goal in (("memory", GOALS["memory"]), ("decode", GOALS["decode"]), ("ttft", GOALS["ttft"])):
        s = by.get((fig, "all"))
        if s is None or s.mape is None:
            lines.append(f"{fig}: no cells to judge (goal <= {goal:g} %)")
            continue
        ok = "MET" if s.mape <= goal else "NOT MET"
        lines.append(
            f"{fig}: mean abs. error {s.mape:.1f} % on {s.cells} cells ({s.points} points), goal <= {goal:g} %: {ok}"
        )
    for fig in ("drop-fidelity", "drop-blind"):
        s = by.get((fig, "all"))
        if s is None:
            lines.append(f"{fig}: no cells with a measured drop")
            continue
        ok = "MET" if s.coverage >= GOALS["coverage"] else "NOT MET"  # type: ignore[operator]
        lines.append(
            f"{fig}: 90 % interval covered {s.coverage:.0f} % of {s.points} measured drops, goal >= "
            f"{GOALS['coverage']:g} %: {ok}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", action="append", type=Path, help="a results folder (repeat)")
    ap.add_argument("--docs", action="store_true", help="add the whole cells of docs/results/*.md tables")
    ap.add_argument("--json", type=Path, help="write every leave-one-out row here")
    a = ap.parse_args()
    dirs = a.results or [Path(os.environ.get("DQBENCH_RESULTS", "results"))]
    results = latest(results_from_dirs(dirs))
    obs: list[Observation] = observations(results)
    here, figs, label = this_host_figures()
    figures: dict[str, HostFigures | None] = dict(stored_figures(results))
    if here is not None and figs is not None:
        figures[here] = figs
    if a.docs:
        from docs_cells import docs_observations  # bench/docs_cells.py

        extra, extra_figs = docs_observations(Path(__file__).resolve().parent.parent / "docs" / "results")
        obs += extra
        figures.update(extra_figs)
    from harness.hw.probe import host_line

    print(host_line())
    print(f"read {len(results)} results from {', '.join(map(str, dirs))}: {len(obs)} done cells")
    hosts = sorted({o.host_id for o in obs})
    for h in hosts:
        mine = [o for o in obs if o.host_id == h]
        kinds = sorted({f"{o.engine}:{o.case.scheme.kind}" for o in mine})
        f = figures.get(h)
        print(
            f"  host {h}{' (this host)' if h == here else ''}: {len(mine)} cells; {', '.join(kinds)}; "
            f"figures: {f.line() if f else 'none (no speed rows)'}"
        )
    rows = loo(obs, figures)
    print_table(rows)
    print("\ngoals (issue #32):")
    for line in goals(rows):
        print("  " + line)
    if a.json:
        a.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        print(f"rows: {a.json}")


if __name__ == "__main__":
    main()
