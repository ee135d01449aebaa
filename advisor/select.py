"""recommend(): pure, vectorized selection over the results frame (no I/O).

Adds memory need, quality drop (with a 95% interval), cost, checks every constraint, groups the
rejects by the constraint they broke (with the nearest miss), and ranks the rest by the objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from advisor.constraints import Constraints
from advisor.memory import BITS, GPU_OVERHEAD_GIB, GiB
from advisor.query import higher_is_better

Z95 = 1.959964


@dataclass
class Recommendation:
    constraints: Constraints
    measure: str  # what quality means here, in words
    ranked: pd.DataFrame  # accepted cells, best first (all of them; render shows `top`)
    rejected: dict[str, dict] = field(default_factory=dict)  # constraint -> {count, nearest (row), miss}
    frame: pd.DataFrame | None = None  # every cell with computed columns

    @property
    def ok(self) -> bool:
        return not self.ranked.empty


def add_memory(f: pd.DataFrame, c: Constraints) -> pd.DataFrame:
    bits = f["precision"].map(BITS).astype(float)
    est_w = f["params"].astype(float) * bits / 8 / GiB
    f["weights_gib"] = f["size_gib"].where(f["size_gib"].notna(), est_w)
    f["weights_src"] = np.where(f["size_gib"].notna(), "measured", "estimated")
    f["kv_gib"] = f["kv_bytes_per_token"].astype(float) * c.context_len * c.concurrency / GiB
    if c.device == "gpu":
        f["overhead_gib"] = GPU_OVERHEAD_GIB
        f["mem_need_gib"] = f["weights_gib"] + f["kv_gib"] + f["overhead_gib"]
        f["mem_src"] = "estimated"
        # a measured GPU peak of the cell's run (harness/measure) beats the estimate where there is one; it
        # was measured at the cell's own context length and concurrency, on the host named in host_label
        gpu = f["gpu_peak_gib"].astype(float) if "gpu_peak_gib" in f else pd.Series(np.nan, index=f.index)
        measured = gpu.notna()
        f.loc[measured, "mem_need_gib"] = gpu[measured]
        f.loc[measured, "overhead_gib"] = (gpu - f["weights_gib"] - f["kv_gib"])[measured]
        f.loc[measured, "mem_src"] = "measured"
    else:
        # host RAM: the measured peak of the serving process tree (weights, KV reserve, runtime)
        f["overhead_gib"] = f["peak_mem_gib"] - f["weights_gib"]
        f["mem_need_gib"] = f["peak_mem_gib"]
        f["mem_src"] = "measured"
    return f


def add_quality(f: pd.DataFrame, c: Constraints) -> tuple[pd.DataFrame, str]:
    metric = c.metric or "acc"
    hib = higher_is_better(metric)
    diff = (f["q_ref"] - f["q"]) if hib else (f["q"] - f["q_ref"])
    is_ref = f["cell_id"] == f["root_id"]
    se = np.sqrt(f["q_se"].fillna(0) ** 2 + f["q_ref_se"].fillna(0) ** 2)
    se = se.where(~is_ref, 0.0)
    diff = diff.where(~is_ref, 0.0)
    # points: percentage points for scores in [0, 1], metric units otherwise
    scale = 100.0 if (hib and metric.startswith("acc")) or c.task is None else 1.0
    if c.max_drop is None or c.max_drop.relative:
        f["drop"] = diff / f["q_ref"].abs()
        f["drop_se"] = se / f["q_ref"].abs()
    else:
        f["drop"] = diff * scale
        f["drop_se"] = se * scale
    f["drop_lo"] = f["drop"] - Z95 * f["drop_se"]
    f["drop_hi"] = f["drop"] + Z95 * f["drop_se"]
    f["ci_kind"] = np.where(is_ref, "reference", "normal approximation from the two scores' stderr")
    if c.task is None and {"paired_drop_ci_lo", "paired_drop_ci_hi", "parent_id"} <= set(f.columns):
        # the aggregate's paired bootstrap over the same items (harness/evaluate/reference.py) is tighter
        # and honest about correlation; it is against the parent, so only where the parent is the root
        paired = f["paired_drop_ci_lo"].notna() & (f["parent_id"] == f["root_id"]) & ~is_ref
        unit = (1.0 / f["q_ref"].abs()) if (c.max_drop is None or c.max_drop.relative) else 100.0
        f.loc[paired, "drop_lo"] = (f["paired_drop_ci_lo"] * unit)[paired]
        f.loc[paired, "drop_hi"] = (f["paired_drop_ci_hi"] * unit)[paired]
        f.loc[paired, "ci_kind"] = "paired bootstrap over the same items"
    f["drop_used"] = f["drop_hi"] if c.conservative else f["drop"]
    measure = (
        f"{c.task}/{c.metric}"
        if c.task
        else "avg_acc (mean of ARC-Easy acc, HellaSwag acc_norm, LAMBADA acc over tasks both cells were scored on)"
    )
    return f, measure


def check(f: pd.DataFrame, c: Constraints) -> dict[str, tuple[pd.Series, pd.Series, str]]:
    """constraint -> (passes, miss amount where it fails, unit)."""
    out = {}
    if c.vram_gib is not None:
        out["memory"] = (f["mem_need_gib"] <= c.vram_gib, f["mem_need_gib"] - c.vram_gib, "GiB over")
    if c.max_drop is not None:
        lim = c.max_drop.value
        out["quality"] = (
            f["drop_used"] <= lim + 1e-12,
            f["drop_used"] - lim,
            "over the drop limit" + (" (upper 95% bound)" if c.conservative else ""),
        )
    if c.min_tok_s is not None:
        out["throughput"] = (f["tok_s"] >= c.min_tok_s, c.min_tok_s - f["tok_s"], "tok/s short")
    if c.max_ttft_ms is not None:
        col = f"ttft_ms_{c.ttft_stat}"
        out["latency"] = (f[col] <= c.max_ttft_ms, f[col] - c.max_ttft_ms, f"ms over (TTFT {c.ttft_stat})")
    return out


SORT = {  # objective -> (column, ascending)
    "throughput": ("tok_s", False),
    "latency": (None, True),
    "cost": ("cost_per_mtok", True),
    "memory": ("mem_need_gib", True),
    "quality": ("drop_used", True),
}


def recommend(frame: pd.DataFrame, c: Constraints) -> Recommendation:
    f = frame.copy()
    f = add_memory(f, c)
    f, measure = add_quality(f, c)
    f["cost_per_mtok"] = (c.gpu_price / (f["tok_s"] * 3600.0) * 1e6) if c.gpu_price is not None else np.nan
    checks = check(f, c)
    passes = pd.Series(True, index=f.index)
    rejected = {}
    for name, (ok, miss, unit) in checks.items():
        ok = ok.fillna(False)  # unknown figures cannot be shown to satisfy a constraint
        passes &= ok
        bad = f[~ok]
        if not bad.empty:
            m = miss[~ok]
            known = m.dropna()
            nearest = bad.loc[known.idxmin()] if not known.empty else bad.iloc[0]
            rejected[name] = {
                "count": len(bad),
                "unit": unit,
                "nearest": nearest.to_dict(),
                "miss": float(known.min()) if not known.empty else None,
                "unknown": int(m.isna().sum()),
            }
    col, asc = SORT[c.objective]
    if c.objective == "latency":
        col = f"ttft_ms_{c.ttft_stat}"
    f["objective_value"] = f[col]
    ok = f[passes]
    ranked = ok.sort_values(
        ["objective_value", "drop_used", "mem_need_gib", "cell_id"],
        ascending=[asc, True, True, True],
        na_position="last",
        kind="mergesort",
    )
    return Recommendation(
        constraints=c, measure=measure, ranked=ranked.reset_index(drop=True), rejected=rejected, frame=f
    )
