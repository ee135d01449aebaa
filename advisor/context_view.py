"""Quality against context length: one row per (cell, host, long-context task, length) from the index's `quality`
and `flips` tables, for the dashboard's Long context tab. A task scored per length is stored as one task per length
(`dq_niah@4096`, harness/spec/context_lengths.py); its score, and its drop against the reference with the paired
95% CI the shift step computed over the same documents, are read back here by length. Pure pandas, no backend."""

from __future__ import annotations

import pandas as pd

from harness.result_facts import primary_metric
from harness.spec.context_lengths import split_length_task

COLUMNS = ["cell_id", "host_id", "task", "length", "metric", "score", "n", "drop_abs", "drop_lo", "drop_hi", "ref_id"]


def _split(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s rows of per-length tasks, with `base` and `length` columns, at each task's primary metric."""
    if frame.empty or "task" not in frame:
        return frame.iloc[0:0].assign(base=[], length=[])
    parts = frame["task"].map(split_length_task)
    out = frame.assign(base=parts.map(lambda p: p[0]), length=parts.map(lambda p: p[1]))
    out = out[out["length"].notna()]
    return out[out["metric"] == out["task"].map(primary_metric)]


def context_curve(quality: pd.DataFrame, flips: pd.DataFrame) -> pd.DataFrame:
    """Score and drop per length: `quality` (task, metric, value, n per cell and host) left-joined with `flips`
    (drop_abs, drop_ci_lo, drop_ci_hi against the reference; none for the reference itself)."""
    q = _split(quality)
    if q.empty:
        return pd.DataFrame(columns=COLUMNS)
    q = q.rename(columns={"value": "score"})
    keys = ["cell_id", "host_id", "task", "metric"]
    f = _split(flips) if flips is not None and len(flips.columns) else pd.DataFrame()
    if f.empty:
        q = q.assign(drop_abs=float("nan"), drop_lo=float("nan"), drop_hi=float("nan"), ref_id=None)
    else:
        f = f.rename(columns={"drop_ci_lo": "drop_lo", "drop_ci_hi": "drop_hi"})[
            [*keys, "drop_abs", "drop_lo", "drop_hi", "ref_id"]
        ]
        q = q.merge(f, on=keys, how="left")
    out = q.drop(columns=["task"]).rename(columns={"base": "task"})
    out["length"] = out["length"].astype(int)
    return out[COLUMNS].sort_values(["task", "cell_id", "host_id", "length"]).reset_index(drop=True)
