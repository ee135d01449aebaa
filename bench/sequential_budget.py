"""Benchmark (a replay, not a timing): a sequential run's stored decisions replayed under other item budgets.

For each cell of a results folder that made a sequential decision (a matrix with `decide:`), its stored items and
its reference's item journal are replayed in the worker's own seeded order (as `bench/sequential.py --real`),
with the group-sequential design planned for each budget: the verdict, the items it used, why it stopped, and the
repeated CI at the stop. A budget above the items a cell stored is replayed as far as they reach (`avail`). It
shows what a smaller or larger `decide.max_items` would have answered on the same items (issue #29: the
default's budget, docs/results/2026-12-07-default-time-avx512.md).

    ./dq python bench/sequential_budget.py RESULTS_DIR --budgets 300 200 150
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sequential import load, stored_items  # noqa: E402

from harness.decide.order import item_sequence  # noqa: E402
from harness.decide.question import method_of  # noqa: E402
from harness.decide.sequential import paired_items, replay  # noqa: E402


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a results folder (DQBENCH_RESULTS) of a run with `decide:`")
    ap.add_argument("--budgets", nargs="+", type=int, default=[300, 200, 150])
    args = ap.parse_args()
    for (_, host), r in sorted(load(args.folder).items(), key=lambda kv: kv[1].label):
        dec = r.quality.decision if r.quality else None
        if dec is None or dec.reference is None or dec.stop == "skipped":
            continue
        orders, mine, theirs = stored_items(args.folder, host, r)
        print(f"{r.label}: as run, {dec.verdict} after {dec.items_used} items ({dec.stop})")
        for b in args.budgets:
            seq = item_sequence(orders, dec.seed, b)
            d, w = paired_items(seq, mine, theirs, dec.relative)
            o = replay(
                d,
                w,
                dec.error_rate,
                dec.limit,
                dec.batch_items,
                min(b, len(d)),
                "budget",
                method=method_of(dec.method),
                planned=len(seq),  # type: ignore[arg-type]
            )
            ci = o.final
            print(
                f"  budget {b}: {o.verdict} after {o.items} ({o.stop}) {pct(ci.point)} % "
                f"({pct(ci.lo)}, {pct(ci.hi)}); items paired {len(d)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
