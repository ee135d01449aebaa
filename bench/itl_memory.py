"""Benchmark: the memory a load run's inter-token latencies take, with and without the bound
(harness/measure/itl_budget.py), and the time to make the level's figures from them.

Synthetic records (lognormal gaps) stand in for a long run: `--requests` requests of `--tokens` chunks each,
settled as the load generator settles them (one ItlBudget per run) or kept whole as before the bound. Prints
the peak traced memory of the records (tracemalloc), the level's ITL figures both ways, and the host.

    ./dq python bench/itl_memory.py [--requests 20000] [--tokens 500]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from harness.hw.probe import host_line
from harness.measure.itl_budget import EXACT_ITLS, ItlBudget, itl_summary
from harness.measure.request import RequestRecord


def records(n: int, tokens: int, budget: ItlBudget | None, seed: int = 0) -> tuple[list[RequestRecord], int]:
    rng = random.Random(seed)
    out = []
    t = 0.0
    tracemalloc.start()
    for _ in range(n):
        gaps = [rng.lognormvariate(-4.0, 0.4) for _ in range(tokens - 1)]
        r = RequestRecord(ok=True, start=t, end=t + 0.05 + sum(gaps), ttft=0.05, itl=gaps, output_tokens=tokens)
        if budget is not None:
            budget.settle(r)  # as loadgen does when the request completes
        out.append(r)
        t += 0.001
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--tokens", type=int, default=500)
    a = ap.parse_args()
    print(host_line())
    print(f"{a.requests} requests x {a.tokens} chunks = {a.requests * (a.tokens - 1):,} gaps; bound {EXACT_ITLS:,}")
    for label, budget in (("whole (before the bound)", None), ("bounded", ItlBudget(seed=0))):
        gc.collect()
        recs, peak = records(a.requests, a.tokens, budget)
        t = time.perf_counter()
        s = itl_summary(recs)
        took = time.perf_counter() - t
        kept = sum(len(r.itl) for r in recs)
        print(
            f"{label:<26} peak {peak / 2**20:8.1f} MiB, gaps kept {kept:>11,}; ITL ms mean {s.mean:.4f} "
            f"p50 {s.p50:.4f} p90 {s.p90:.4f} p99 {s.p99:.4f} (figures in {took:.2f} s)"
        )
        del recs


if __name__ == "__main__":
    main()
