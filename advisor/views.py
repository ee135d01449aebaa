"""Read-side views of the results index shared by the dashboard and `harness report`: the cells
table with headline figures and quality drops, Pareto frontiers, per-cell detail. Pure pandas over
frames read read-only from DuckDB; no backend is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from advisor.constraints import Constraints
from advisor.query import build_frame
from advisor.select import add_quality

TABLE_COLS = ["cell_id", "matrix", "model", "precision", "method", "distill", "engine", "device", "status", "reason",
              "size_gib", "bits_per_weight", "peak_mem_gib", "output_tok_s", "req_s", "ttft_ms_p50", "ttft_ms_p99",
              "tpot_ms_p50", "tpot_ms_p99", "q", "q_ref", "drop", "drop_lo", "drop_hi", "kld_mean", "kld_p99",
              "top1_agreement", "ppl_ratio", "paired_drop", "paired_drop_ci_lo", "paired_drop_ci_hi", "compress_s",
              "scored_by", "parent_id", "teacher_id", "distill_kind", "train_tokens", "train_s", "heldout_ce",
              "ref_gpu_hours"]


def _has_table(con, name: str) -> bool:  # noqa: ANN001 - an index written before the table existed
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


def read_all(db_path: Path) -> dict[str, pd.DataFrame]:
    from harness.store.db import connect_read_only

    con = connect_read_only(Path(db_path))
    try:
        return {"cells": con.execute("SELECT * EXCLUDE (result_json) FROM cells").df(),
                "quality": con.execute("SELECT * FROM quality").df(),
                "perf": con.execute("SELECT * FROM perf").df(),
                "flips": con.execute("SELECT * FROM flips").df() if _has_table(con, "flips") else pd.DataFrame()}
    finally:
        con.close()


def cells_table(t: dict[str, pd.DataFrame], gpu_price: float | None = None) -> pd.DataFrame:
    """Every cell (any status) with its figures: avg_acc drop vs its reference, output tok/s at each
    measured concurrency (`tok_s@cN`), each task's metrics (`TASK.METRIC`), and $/1M output tokens at
    the top concurrency when a GPU price is given."""
    cells = t["cells"]
    frame = build_frame(cells, t["quality"], t["perf"], None, None, 1)
    frame, _ = add_quality(frame, Constraints())
    out = cells.merge(frame[["cell_id", "q", "q_ref", "drop", "drop_lo", "drop_hi"]], on="cell_id", how="left")
    for c in TABLE_COLS:
        if c not in out:
            out[c] = np.nan
    out = out[TABLE_COLS]
    perf = t["perf"]
    if len(perf):
        conc = perf[perf["profile"] == "concurrency"]
        if len(conc):
            tok = conc.pivot_table(index="cell_id", columns="level", values="output_tok_s", aggfunc="last")
            tok.columns = [f"tok_s@c{int(c)}" for c in tok.columns]
            out = out.merge(tok.reset_index(), on="cell_id", how="left")
    q = t["quality"]
    if len(q):
        wide = q.pivot_table(index="cell_id", columns=["task", "metric"], values="value", aggfunc="last")
        wide.columns = [f"{a}.{b}" for a, b in wide.columns]
        out = out.merge(wide.reset_index(), on="cell_id", how="left")
    out["usd_per_mtok"] = gpu_price / (out["output_tok_s"] * 3600.0) * 1e6 if gpu_price else np.nan
    return out


def pareto_mask(x: pd.Series, y: pd.Series, x_lower: bool = True, y_lower: bool = True) -> pd.Series:
    """True for points no other point beats on both axes (minimizing or maximizing each as told)."""
    xs = np.asarray(x if x_lower else -x, dtype=float)
    ys = np.asarray(y if y_lower else -y, dtype=float)
    ok = ~(np.isnan(xs) | np.isnan(ys))
    mask = np.zeros(len(xs), dtype=bool)
    idx = np.where(ok)[0]
    order = idx[np.lexsort((ys[idx], xs[idx]))]
    best = np.inf
    for i in order:  # sweep by x ascending; a point is on the front if it improves the best y so far
        if ys[i] < best:
            mask[i] = True
            best = ys[i]
    return pd.Series(mask, index=x.index)


PARETO_VIEWS = [  # (x column, x label, lower is better), y is always the quality drop (lower better)
    ("peak_mem_gib", "peak memory (GiB)", True),
    ("output_tok_s", "output tok/s (top concurrency)", False),
    ("ttft_ms_p99", "TTFT p99 (ms)", True),
]


def cell_detail(t: dict[str, pd.DataFrame], cell_id: str, db_path: Path) -> dict:
    perf = t["perf"][t["perf"]["cell_id"] == cell_id].sort_values(["profile", "level"])
    q = t["quality"]
    cols = [c for c in ("task", "metric", "value", "stderr", "n", "limit_items", "num_fewshot", "task_hash",
                        "lm_eval_version") if c in q]
    quality = q[q["cell_id"] == cell_id][cols]
    cells = t["cells"].set_index("cell_id")
    lineage = []
    cur = cell_id
    while cur in cells.index and len(lineage) < 10:
        r = cells.loc[cur]
        lineage.append(f"{cur} ({r['model']} {r['precision']}/{r['method']}/{r['distill']})")
        cur = r["parent_id"]
        if not isinstance(cur, str):
            break
    from harness.store.db import connect_read_only

    con = connect_read_only(Path(db_path))
    try:
        row = con.execute("SELECT result_json FROM cells WHERE cell_id = ?", [cell_id]).fetchone()
    finally:
        con.close()
    doc = json.loads(row[0]) if row and row[0] else {}
    fl = t.get("flips", pd.DataFrame())
    flips = fl[fl["cell_id"] == cell_id].drop(columns=["cell_id"]) if len(fl) else pd.DataFrame()
    return {"perf": perf, "quality": quality, "lineage": list(reversed(lineage)), "doc": doc, "flips": flips}


def compare(table: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """Cells side by side (columns), with the delta of each numeric row against the first cell."""
    sub = table.set_index("cell_id").loc[ids]
    num = sub.select_dtypes("number")
    side = sub.T
    deltas = num.sub(num.iloc[0], axis=1).T.add_prefix("Δ vs ")
    return side.join(deltas.iloc[:, 1:], how="left")
