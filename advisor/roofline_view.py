"""The dashboard's roofline view: every measured closed-loop level of the chosen cells beside the decode
limit its host allows (harness/result.Roofline, stored with each result and indexed per level in `perf`:
roofline_tok_s, roofline_pct, regime). Pure pandas: the chart itself is drawn by dashboard.py."""

from __future__ import annotations

import pandas as pd

ROOF_COLS = ("roofline_tok_s", "roofline_pct", "regime")


def roofline_points(perf: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, host, closed-loop level) with a roofline: the cell's label, the level, the measured
    output tok/s, the limit, the % of it and the regime. Empty when the index predates rooflines."""
    if perf.empty or not set(ROOF_COLS) <= set(perf.columns):
        return pd.DataFrame(columns=["key", "cell", "level", "measured_tok_s", *ROOF_COLS])
    p = perf[perf["profile"].isin(["synchronous", "concurrency"]) & perf["roofline_tok_s"].notna()]
    keep = cells[["cell_id", "host_id", "model", "precision", "method", "distill", "engine", "host_label"]]
    p = p.merge(keep, on=["cell_id", "host_id"], how="inner")
    p = p.assign(
        key=p["cell_id"] + "@" + p["host_id"],
        cell=p["model"] + "/" + p["precision"] + "/" + p["method"] + "/" + p["distill"] + " (" + p["engine"] + ")",
        measured_tok_s=p["output_tok_s"],
    )
    return p[["key", "cell", "host_label", "level", "measured_tok_s", *ROOF_COLS]].sort_values(["cell", "level"])
