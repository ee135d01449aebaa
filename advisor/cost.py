"""Cost per correct answer (issue #28): quality and speed on one scale, for the advisor and the dashboard.

For a cell at a measured load level (the level `--concurrency` picks, advisor/query.py):

    answers per hour           = req/s at that level x 3600   (answers of the load test's shape: its input and
                                                               output tokens per request)
    correct answers per hour   = answers per hour x accuracy   (the quality measure: `--task/--metric`, or the
                                                               default aggregate of primary accuracies)
    $ per 1,000 correct        = price per hour / correct answers per hour x 1000
    kWh per 1,000 correct      = joules per request at that level / accuracy x 1000 / 3.6e6
                                 (only where the host's energy counter was read: harness/measure/energy.py)

The price is `--price-per-hour` (the whole host), else `--gpu-price` (one GPU-hour: the cells here run on one
device), else the matrix's `hardware.price_per_hour` stored with the cell; `price_src` says which. Only an accuracy
(a score in [0, 1], higher is better) counts answers as correct; a perplexity gives no figure. Pure pandas: reads
the frame, imports no backend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

J_PER_KWH = 3.6e6
PER = 1000.0  # answers per figure: "$ per 1,000 correct answers"


def is_accuracy(metric: str | None) -> bool:
    """Whether the quality measure counts correct answers: the default aggregate (primary accuracies) or an
    accuracy-like metric (acc, acc_norm, exact_match and their filtered variants)."""
    if metric is None:
        return True
    return metric.partition(",")[0] in ("acc", "acc_norm", "exact_match")


def add_cost_per_correct(
    f: pd.DataFrame, price_per_hour: float | None, gpu_price: float | None, metric: str | None
) -> pd.DataFrame:
    """`f` with price_per_hour_used, price_src, correct_per_hour, usd_per_1k_correct and kwh_per_1k_correct
    (NaN where a figure is missing: no req/s at the level, no price, no accuracy, no energy reading)."""
    n = len(f)
    stored = f["price_per_hour"].astype(float) if "price_per_hour" in f else pd.Series(np.nan, index=f.index)
    if price_per_hour is not None:
        price, src = pd.Series(price_per_hour, index=f.index, dtype=float), np.full(n, "--price-per-hour", object)
    elif gpu_price is not None:
        price, src = pd.Series(gpu_price, index=f.index, dtype=float), np.full(n, "--gpu-price", object)
    else:
        price = stored
        src = np.where(stored.notna(), "hardware.price_per_hour of its matrix", "no price")
    f["price_per_hour_used"] = price
    f["price_src"] = src
    req_s = f["level_req_s"].astype(float) if "level_req_s" in f else pd.Series(np.nan, index=f.index)
    acc = f["q"].astype(float) if is_accuracy(metric) and "q" in f else pd.Series(np.nan, index=f.index)
    acc = acc.where((acc > 0) & (acc <= 1))
    f["correct_per_hour"] = req_s * 3600.0 * acc
    f["usd_per_1k_correct"] = price / f["correct_per_hour"] * PER
    jpr = f["level_j_per_request"].astype(float) if "level_j_per_request" in f else pd.Series(np.nan, index=f.index)
    f["kwh_per_1k_correct"] = jpr / acc * PER / J_PER_KWH
    return f


def cost_note(metric: str | None) -> str:
    """How the figures are defined, in one line for a table's caption."""
    what = "accuracy" if metric is None else metric
    return (
        f"$ per 1,000 correct answers = price per hour / (req/s at the level x 3600 x {what}) x 1000; answers of the "
        "load test's shape; kWh per 1,000 correct from the host's energy counter (joules per request / "
        f"{what}), blank where it was not measurable"
    )


COST_COLS = [
    "cell_id",
    "host_label",
    "model",
    "precision",
    "method",
    "distill",
    "draft",
    "engine",
    "profile",
    "level",
    "req_s",
    "output_tok_s",
    "q",
    "correct_per_hour",
    "usd_per_1k_correct",
    "kwh_per_1k_correct",
    "j_per_token",
    "tok_per_j",
    "spec_acceptance",
    "spec_accepted_len",
    "spec_speedup",
    "price_per_hour_used",
    "price_src",
    "energy_note",
    "host_id",
]


def cost_table(
    cells: pd.DataFrame, quality: pd.DataFrame, perf: pd.DataFrame, price_per_hour: float | None
) -> pd.DataFrame:
    """One row per done (cell, host) and closed-loop load level: req/s, accuracy (the default aggregate), $ and kWh
    per 1,000 correct answers at that level, J/token, and a spec-decoded cell's acceptance and speed-up (the
    dashboard's Cost tab). `price_per_hour` None: the matrix's stored price, where there is one."""
    from advisor.query import build_frame, with_host

    frame = build_frame(cells, quality, perf, None, None, 1)
    if frame.empty or perf.empty:
        return pd.DataFrame(columns=COST_COLS)
    levels = with_host(perf)
    levels = levels[levels["profile"].isin(["synchronous", "concurrency"])]
    keep = [c for c in ("cell_id", "host_id", "q", "price_per_hour", "energy_note", "draft") if c in frame]
    base = frame[
        [*keep, *[c for c in ("host_label", "model", "precision", "method", "distill", "engine") if c in frame]]
    ]
    out = base.merge(levels, on=["cell_id", "host_id"], how="inner")
    out["level_req_s"] = out["req_s"]
    out["level_j_per_request"] = out.get("j_per_request", np.nan)
    out = add_cost_per_correct(out, price_per_hour, None, None)
    for c in COST_COLS:
        if c not in out:
            out[c] = np.nan
    return out[COST_COLS].sort_values(["model", "level", "usd_per_1k_correct"], na_position="last")
