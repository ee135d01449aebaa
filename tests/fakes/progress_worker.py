"""A fake long stage for progress tests: reports N steps over about N x SLEEP seconds, with a loss, through
harness/proc.py WorkerProgress (the file the parent names in DQBENCH_PROGRESS_FILE), as a real stage does."""

from __future__ import annotations

import argparse
import time

from harness.proc import WorkerProgress


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--sleep", type=float, default=0.1)
    a = ap.parse_args()
    report = WorkerProgress("fake training", "steps", total=a.n, every=0.0)
    for i in range(1, a.n + 1):
        time.sleep(a.sleep)
        report.update(i, loss=round(3.0 / i, 4))
    print("fake stage done", flush=True)


if __name__ == "__main__":
    main()
