"""recommend(): pure, vectorized selection over the results frame (no I/O).

Adds memory need (the shared model, harness/serving_memory.py), quality drop against the reference
(harness/plan/lineage.py, with a 95% interval and its verdict against --max-drop: within, beyond or
undecided, advisor/verdict.py), cost, checks every constraint, groups the rejects by the constraint they
broke (with the nearest miss), and ranks the rest by the objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from advisor.constraints import Constraints
from advisor.cost import add_cost_per_correct
from advisor.query import higher_is_better
from advisor.verdict import counts_as_fit, drop_verdicts, sequential_drops, sequential_rows, sequential_verdicts
from harness.plan.lineage import parent_is_reference, reference_ids
from harness.serving_memory import (
    GiB,
    default_overhead,
    kv_cache_bytes,
    measured_overhead,
    overhead_of,
    uniform_weights_bytes,
)
from harness.spec.base import BITS

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


def _group_overhead(f: pd.DataFrame, own: pd.Series) -> pd.Series:
    """Per row: the median overhead derived on the measured cells of its engine, device and host
    (harness.serving_memory.measured_overhead); NaN where that group measured none."""
    keys = [k for k in ("engine", "device", "host_id") if k in f]
    if not keys:
        return pd.Series(measured_overhead(own.dropna()), index=f.index, dtype=float)
    g = own.groupby([f[k].fillna("?") for k in keys]).transform(lambda s: measured_overhead(s.dropna()))
    return g.astype(float)


def add_memory(f: pd.DataFrame, c: Constraints) -> pd.DataFrame:
    """Memory need of every row at the asked context x concurrency, by the shared memory model
    (harness/serving_memory.py): weights + KV cache + engine overhead, each with where it came from.

    weights: the measured size on disk; else the plan's module-wise estimate (`est_weights_gib`, where
    the index carries it); else parameters x nominal bits (an index without either: counts embeddings and
    lm_head at the quantized width, so it is low for quantized cells and says so).
    KV: kv_bytes_per_token (16-bit KV, from the cell's config facts) x context_len x concurrency.
    overhead: on a GPU, a cell's measured GPU peak is its need (vLLM's preallocated KV pool is in that
    peak, so no overhead is derived from it); otherwise the documented default of its engine. On a CPU
    (host RAM), overhead = measured peak - weights - the KV the run reserved (`est_kv_gib`), derived per
    cell and, for a cell without a peak, the median of its engine's on the same host; the need is then
    recomposed for the asked KV. An index without the run's KV keeps the measured peak as the need.
    """
    bits = f["precision"].map(BITS).astype(float)
    plan_w = f["est_weights_gib"].astype(float) if "est_weights_gib" in f else pd.Series(np.nan, index=f.index)
    size = f["size_gib"].astype(float)
    flat = uniform_weights_bytes(f["params"].astype(float), bits) / GiB
    f["weights_gib"] = size.where(size.notna(), plan_w.where(plan_w.notna(), flat))
    f["weights_src"] = np.where(
        size.notna(), "measured", np.where(plan_w.notna(), "estimated", "estimated (params x nominal bits)")
    )
    tokens = c.context_len * c.concurrency
    f["kv_gib"] = kv_cache_bytes(f["kv_bytes_per_token"].astype(float), tokens) / GiB
    engines = f["engine"] if "engine" in f else pd.Series("vllm", index=f.index)
    if c.device == "gpu":
        f["overhead_gib"] = [default_overhead(str(e), "cuda")[0] for e in engines]
        f["overhead_src"] = "default"
        f["mem_need_gib"] = f["weights_gib"] + f["kv_gib"] + f["overhead_gib"]
        f["mem_src"] = "estimated"
        # a measured GPU peak of the cell's run (harness/measure) beats the estimate where there is one; it
        # was measured at the cell's own context length and concurrency, on the host named in host_label
        gpu = f["gpu_peak_gib"].astype(float) if "gpu_peak_gib" in f else pd.Series(np.nan, index=f.index)
        measured = gpu.notna()
        f.loc[measured, "mem_need_gib"] = gpu[measured]
        f.loc[measured, "overhead_gib"] = (gpu - f["weights_gib"] - f["kv_gib"])[measured]
        f.loc[measured, "overhead_src"] = "measured peak"
        f.loc[measured, "mem_src"] = "measured"
        return f
    # host RAM: the measured peak of the serving process tree (weights, KV reserve, runtime)
    peak = f["peak_mem_gib"].astype(float)
    run_kv = f["est_kv_gib"].astype(float) if "est_kv_gib" in f else pd.Series(np.nan, index=f.index)
    own = overhead_of(peak, f["weights_gib"], run_kv)
    if run_kv.isna().all():
        # no record of the KV the run reserved: the peak is the need, at the cell's own KV
        f["overhead_gib"] = peak - f["weights_gib"]
        f["overhead_src"] = "measured peak"
        f["mem_need_gib"] = peak
        f["mem_src"] = "measured"
        return f
    group = _group_overhead(f, own)
    dflt = pd.Series([default_overhead(str(e), "cpu")[0] for e in engines], index=f.index)
    f["overhead_gib"] = own.where(own.notna(), group.where(group.notna(), dflt))
    f["overhead_src"] = np.where(
        own.notna(), "measured (this cell)", np.where(group.notna(), "measured (same engine, host)", "default")
    )
    f["mem_need_gib"] = f["weights_gib"] + f["kv_gib"] + f["overhead_gib"]
    f["mem_src"] = np.where(own.notna(), "measured", "estimated")
    return f


def add_quality(f: pd.DataFrame, c: Constraints) -> tuple[pd.DataFrame, str]:
    """The drop of each row against its reference, `root_id` (harness/plan/lineage.reference_id: the
    lineage root, the uncompressed teacher, also for a quantized student), with its 95% interval."""
    if "root_id" not in f:  # a frame not built by advisor.query: the reference from the lineage itself
        parents = dict(zip(f["cell_id"], f["parent_id"]))
        f["root_id"] = f["cell_id"].map(reference_ids(f["cell_id"], parents))
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
    # a task without a stderr (on either side) would read as an exact score: no interval, unless paired below
    se_known = (
        f["se_known"].fillna(False).astype(bool) if "se_known" in f else (f["q_se"].notna() & f["q_ref_se"].notna())
    )
    no_ci = ~se_known & ~is_ref
    f.loc[no_ci, ["drop_lo", "drop_hi"]] = np.nan
    f.loc[no_ci, "ci_kind"] = "none (no stderr for every task, no per-item scores)"
    if c.task is None and {"paired_drop_ci_lo", "paired_drop_ci_hi", "parent_id"} <= set(f.columns):
        # the aggregate's paired bootstrap over the same items (harness/evaluate/reference.py) is tighter
        # and honest about correlation; it is against the parent, so it stands for the drop only where the
        # parent is the reference (harness/plan/lineage.py: a quantized student's parent is the student)
        parent_ref = pd.Series(
            [parent_is_reference(p, r) for p, r in zip(f["parent_id"], f["root_id"])], index=f.index, dtype=bool
        )
        paired = f["paired_drop_ci_lo"].notna() & parent_ref & ~is_ref
        unit = (1.0 / f["q_ref"].abs()) if (c.max_drop is None or c.max_drop.relative) else 100.0
        f.loc[paired, "drop_lo"] = (f["paired_drop_ci_lo"] * unit)[paired]
        f.loc[paired, "drop_hi"] = (f["paired_drop_ci_hi"] * unit)[paired]
        f.loc[paired, "ci_kind"] = "paired bootstrap over the same items"
    # a drop decided sequentially (the matrix's `decide:`) carries its anytime-valid confidence sequence, which
    # stays valid after its data-dependent stop where a fixed-n interval would not (harness/decide/confseq.py)
    relative = c.max_drop is None or c.max_drop.relative
    seq = sequential_rows(f, c.task, c.metric, relative, c.tasks) & ~is_ref
    f = sequential_drops(f, seq, relative)
    f["drop_used"] = f["drop_hi"] if c.conservative else f["drop"]
    f = drop_verdicts(f, c.max_drop.value if c.max_drop is not None else None)
    if c.max_drop is not None:
        f = sequential_verdicts(f, seq)
    measure = (
        f"{c.task}/{c.metric}"
        if c.task
        else f"avg_acc over {', '.join(c.tasks)} (each task's primary accuracy, tasks both cells were scored on)"
        if c.tasks
        else "avg_acc (mean of ARC-Easy acc, HellaSwag acc_norm, LAMBADA acc over tasks both cells were scored on)"
    )
    return f, measure


def check(f: pd.DataFrame, c: Constraints) -> dict[str, tuple[pd.Series, pd.Series, str]]:
    """constraint -> (passes, miss amount where it fails, unit)."""
    out = {}
    if c.vram_gib is not None:
        out["memory"] = (f["mem_need_gib"] <= c.vram_gib, f["mem_need_gib"] - c.vram_gib, "GiB over")
    if c.max_drop is not None:
        # three-valued (advisor/verdict.py): `within` passes; `undecided` passes only under --decide point,
        # when its point estimate is within; a cell without a CI has no upper bound: its miss is unknown
        lim = c.max_drop.value
        passes = counts_as_fit(f, c.decide)
        out["quality"] = (
            passes,
            f["drop_used"] - lim,
            "over the drop limit" + (" (upper 95% bound)" if c.conservative else " (point estimate)"),
        )
    if c.min_tok_s is not None:
        out["throughput"] = (f["tok_s"] >= c.min_tok_s, c.min_tok_s - f["tok_s"], "tok/s short")
    if c.max_ttft_ms is not None:
        col = f"ttft_ms_{c.ttft_stat}"
        out["latency"] = (f[col] <= c.max_ttft_ms, f[col] - c.max_ttft_ms, f"ms over (TTFT {c.ttft_stat})")
    if c.slo is not None:
        # advisor/slo.py: the best level shown to meet the SLO (goodput 0 where none is; NaN: no levels)
        gp = f["slo_goodput"].astype(float) if "slo_goodput" in f else pd.Series(np.nan, index=f.index)
        if c.min_goodput is not None:
            out["slo"] = (gp >= c.min_goodput, c.min_goodput - gp, f"req/s of goodput short at the SLO ({c.slo})")
        else:
            att = f["slo_attainment"].astype(float) if "slo_attainment" in f else gp * np.nan
            short = (c.slo.percentile - att * 100.0).where(gp <= 0, 0.0)
            out["slo"] = (gp > 0, short, f"% of requests short of meeting the SLO ({c.slo})")
    return out


def _verdict_counts(bad: pd.DataFrame) -> dict[str, int]:
    """How many of the cells the drop limit rejected are beyond it, and how many are undecided."""
    return {v: int(bad["verdict"].eq(v).sum()) for v in ("beyond", "undecided")}


SORT = {  # objective -> (column, ascending)
    "throughput": ("tok_s", False),
    "latency": (None, True),
    "cost": ("cost_per_mtok", True),
    "memory": ("mem_need_gib", True),
    "quality": ("drop_used", True),
    "goodput": ("slo_goodput", False),
    "cost-per-correct": ("usd_per_1k_correct", True),  # advisor/cost.py
}


def recommend(frame: pd.DataFrame, c: Constraints) -> Recommendation:
    f = frame.copy()
    f = add_memory(f, c)
    f, measure = add_quality(f, c)
    f["cost_per_mtok"] = (c.gpu_price / (f["tok_s"] * 3600.0) * 1e6) if c.gpu_price is not None else np.nan
    f = add_cost_per_correct(f, c.price_per_hour, c.gpu_price, c.metric)
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
                **(_verdict_counts(bad) if name == "quality" else {}),
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
