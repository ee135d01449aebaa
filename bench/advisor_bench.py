"""Benchmark: advisor answer time on 10,000 synthetic cells (goal <= 0.3 s).

Times (a) the pure recommendation over an in-memory frame and (b) the whole answer from a DuckDB
file: read-only open, load, build the frame, recommend, render JSON.

    ./dq python bench/advisor_bench.py [--cells 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from advisor.constraints import Constraints, parse_max_drop
from advisor.query import build_frame, load_frame
from advisor.render import to_json
from advisor.select import recommend
from advisor.synthetic import synthetic_tables, write_synthetic_db


def best_of(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=10_000)
    a = ap.parse_args()
    cells, quality, perf = synthetic_tables(max(1, a.cells // 14), seed=0)
    c = Constraints(vram_gib=24, max_drop=parse_max_drop("2%"), context_len=4096, concurrency=8)
    frame = build_frame(cells, quality, perf, None, None, c.concurrency)
    t_rec = best_of(lambda: recommend(frame, c))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.duckdb"
        write_synthetic_db(path, max(1, a.cells // 14), seed=0)

        def whole() -> None:
            f = load_frame(path, None, None, c.concurrency)
            json.dumps(to_json(recommend(f, c)), default=str)

        t_all = best_of(whole)
    rec = recommend(frame, c)
    print(f"{len(cells)} cells, {len(quality)} quality rows, {len(perf)} perf rows; {len(rec.ranked)} fit")
    print(f"recommend() on the in-memory frame: {t_rec * 1000:.1f} ms (best of 5)")
    print(f"whole answer from DuckDB (open, load, frame, recommend, JSON): {t_all * 1000:.1f} ms (goal <= 300 ms)")


if __name__ == "__main__":
    main()
