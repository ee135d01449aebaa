"""Read-side views of the results index shared by the dashboard and `harness report`: the cells
table with headline figures and quality drops, Pareto frontiers, per-cell detail. Pure pandas over
frames read read-only from DuckDB; no backend is imported.

A row is a (cell, host): the same cell measured on two hosts is two rows. `key` (`<cell_id>@<host_id>`,
the result file's name) identifies a row; the dashboard selects and compares rows by it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from advisor.constraints import Constraints, MaxDrop
from advisor.curves import SWEEP_COLS
from advisor.query import build_frame, with_host
from advisor.select import add_quality
from advisor.verdict import MINUS, fmt_ci, fmt_drop, verdict_words

TABLE_COLS = [
    "cell_id",
    "host_label",
    "matrix",
    "model",
    "precision",
    "method",
    "kv_cache",  # axes.kv_cache (auto: the engine's default; NaN in an index from before the axis)
    "distill",
    "draft",
    "engine",
    "device",
    "status",
    "reason",
    "size_gib",
    "bits_per_weight",
    "peak_mem_gib",
    "output_tok_s",
    "req_s",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "tpot_ms_p50",
    "tpot_ms_p99",
    "headline_window",
    "q",
    "q_ref",
    "drop",
    "drop_lo",
    "drop_hi",
    "drop_unit",
    "drop_limit",
    "verdict",
    "more_items",
    "verdict_reason",
    "n_items",
    "kld_mean",
    "kld_p99",
    "top1_agreement",
    "ppl_ratio",
    "paired_drop",
    "paired_drop_ci_lo",
    "paired_drop_ci_hi",
    "compress_s",
    "scored_by",
    "parent_id",
    "teacher_id",
    "distill_kind",
    "train_tokens",
    "train_s",
    "heldout_ce",
    "ref_gpu_hours",
    "gpu_peak_gib",
    "draft_target_id",
    "spec_predicted_len",
    "spec_accepted_len",
    "spec_acceptance",
    "spec_speedup_c1",
    "spec_speedup_top",
    "spec_equal_output",
    "energy_counter",
    "energy_note",
    *SWEEP_COLS,
    "host_id",
    "key",
]
KEY = ["cell_id", "host_id"]


def _has_table(con, name: str) -> bool:
    return bool(
        con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0]
    )


def read_all(db_path: Path) -> dict[str, pd.DataFrame]:
    """The index's tables and its `curves` (one row per load level, harness/store/schema.curves_select, read
    from the columns the index has: an index written by an older dqbench is read as it is); an unreadable
    index raises harness.store.db.IndexUnavailable (one message)."""
    from harness.store.db import reading
    from harness.store.schema import columns, curves_select

    with reading(Path(db_path)) as con:
        flips = con.execute("SELECT * FROM flips").df() if _has_table(con, "flips") else pd.DataFrame()
        curves = con.execute(curves_select(columns(con, "perf"), columns(con, "cells"))).df()
        return {
            "curves": with_host(curves, label=True),
            "cells": with_host(con.execute("SELECT * EXCLUDE (result_json) FROM cells").df(), label=True),
            "quality": with_host(con.execute("SELECT * FROM quality").df()),
            "perf": with_host(con.execute("SELECT * FROM perf").df()),
            "flips": with_host(flips) if len(flips.columns) else flips,
        }


def cells_table(
    t: dict[str, pd.DataFrame], gpu_price: float | None = None, max_drop: MaxDrop | None = None
) -> pd.DataFrame:
    """Every cell (any status) with its figures: avg_acc drop vs its reference with its 95% CI, in
    `max_drop`'s units (a fraction of the reference's score when relative or None, points when absolute:
    `drop_unit`) and its verdict against that limit (advisor/verdict.py; none without a limit), output
    tok/s at each measured concurrency (`tok_s@cN`), each task's metrics (`TASK.METRIC`), and $/1M output
    tokens at the top concurrency when a GPU price is given."""
    cells = with_host(t["cells"], label=True)
    frame = build_frame(cells, t["quality"], t["perf"], None, None, 1)
    frame, _ = add_quality(frame, Constraints(max_drop=max_drop))
    cols = ["q", "q_ref", "drop", "drop_lo", "drop_hi", "drop_limit", "verdict", "more_items", "verdict_reason"]
    out = cells.merge(frame[[*KEY, *cols, "n_items"]], on=KEY, how="left")
    out["drop_unit"] = "pt" if max_drop is not None and not max_drop.relative else "fraction of the reference"
    out["key"] = out["cell_id"] + "@" + out["host_id"]
    for c in TABLE_COLS:
        if c not in out:
            out[c] = np.nan
    out = out[TABLE_COLS]
    perf = t["perf"]
    if len(perf):
        conc = perf[perf["profile"] == "concurrency"]
        if len(conc):
            tok = with_host(conc).pivot_table(index=KEY, columns="level", values="output_tok_s", aggfunc="last")
            tok.columns = [f"tok_s@c{int(c)}" for c in tok.columns]
            out = out.merge(tok.reset_index(), on=KEY, how="left")
    q = t["quality"]
    if len(q):
        wide = with_host(q).pivot_table(index=KEY, columns=["task", "metric"], values="value", aggfunc="last")
        wide.columns = [f"{a}.{b}" for a, b in wide.columns]
        out = out.merge(wide.reset_index(), on=KEY, how="left")
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


X_FORMAT = {  # hover text of each x: format, unit
    "peak_mem_gib": (",.2f", " GiB"),
    "output_tok_s": (",.0f", " tok/s"),
    "ttft_ms_p99": (",.0f", " ms"),
}
NO_LIMIT = "no limit set"
VERDICT_STYLE = {  # verdict -> (colour, marker): one look in the dashboard and the report
    "within": ("#2ca02c", "circle"),
    "undecided": ("#ff7f0e", "diamond"),
    "beyond": ("#d62728", "cross"),
    NO_LIMIT: ("#7f7f7f", "square"),
}


def drop_display(max_drop: MaxDrop | None) -> tuple[float, str, bool]:
    """(factor from the table's drop to the chart's, unit word, relative) for `max_drop`'s units."""
    relative = max_drop is None or max_drop.relative
    return (100.0 if relative else 1.0), ("%" if relative else "pt"), relative


def pareto_points(d: pd.DataFrame, x: str, max_drop: MaxDrop | None, decide: str = "conservative") -> pd.DataFrame:
    """What a Pareto chart of `d` (cells_table rows, drops in `max_drop`'s units) draws: y, y_lo, y_hi (the
    drop and its 95% CI in % or pt), `verdict` (NO_LIMIT without a limit), `frontier`, and hover texts as a
    person writes them (drop_text '+1.6 pt', ci_text '−0.4 to +3.6 pt', x_text, verdict_text)."""
    factor, unit, relative = drop_display(max_drop)
    d = d.copy()
    d["y"] = d["drop"] * factor
    d["y_lo"] = d["drop_lo"] * factor
    d["y_hi"] = d["drop_hi"] * factor
    lower = {col: low for col, _, low in PARETO_VIEWS}.get(x, True)
    d["frontier"] = pareto_mask(d[x], d["y"], x_lower=lower, y_lower=True)
    verdict = d["verdict"] if "verdict" in d else pd.Series(None, index=d.index, dtype=object)
    d["verdict"] = verdict.where(verdict.notna(), NO_LIMIT) if max_drop is not None else NO_LIMIT
    d["drop_text"] = [fmt_drop(v, relative) for v in d["drop"]]
    d["ci_text"] = [fmt_ci(lo, hi, relative).removeprefix("95% CI ") for lo, hi in zip(d["drop_lo"], d["drop_hi"])]
    fmt, x_unit = X_FORMAT.get(x, (",.4g", ""))
    d["x_text"] = ["?" if pd.isna(v) else format(v, fmt).replace("-", MINUS) + x_unit for v in d[x].astype(float)]
    is_ref = d["verdict_reason"].astype(str).str.startswith("the reference") if "verdict_reason" in d else False
    d.loc[is_ref, "ci_text"] = "the reference itself (drop 0 by definition)"
    d["verdict_text"] = [
        verdict_words(r, decide) if r["verdict"] != NO_LIMIT else NO_LIMIT for r in d.to_dict("records")
    ]
    d["drop_unit_word"] = unit
    return d


def cell_detail(t: dict[str, pd.DataFrame], cell_id: str, db_path: Path, host_id: str | None = None) -> dict:
    """One (cell, host)'s perf levels, quality, flips, lineage and stored result; `host_id` None: the
    cell's first host (there is usually one)."""
    cells = with_host(t["cells"], label=True)
    if host_id is None:
        hosts = cells.loc[cells["cell_id"] == cell_id, "host_id"]
        host_id = hosts.iloc[0] if len(hosts) else None

    def mine(df: pd.DataFrame) -> pd.DataFrame:
        df = with_host(df)
        return df[(df["cell_id"] == cell_id) & (df["host_id"] == host_id)]

    perf = mine(t["perf"]).sort_values(["profile", "level"])
    q = t["quality"]
    cols = [
        c
        for c in (
            "task",
            "metric",
            "value",
            "stderr",
            "n",
            "limit_items",
            "num_fewshot",
            "task_hash",
            "lm_eval_version",
        )
        if c in q
    ]
    quality = mine(q)[cols]
    by_id = cells.drop_duplicates("cell_id").set_index("cell_id")  # lineage is the cells' config: any host
    lineage: list[str] = []
    cur = cell_id
    while cur in by_id.index and len(lineage) < 10:
        r = by_id.loc[cur]
        lineage.append(f"{cur} ({r['model']} {r['precision']}/{r['method']}/{r['distill']})")
        cur = r["parent_id"]
        if not isinstance(cur, str):
            break
    from harness.store.db import reading
    from harness.store.schema import columns

    with reading(Path(db_path)) as con:
        has_host = "host_id" in columns(con, "cells")
        if has_host:
            row = con.execute(
                "SELECT result_json FROM cells WHERE cell_id = ? AND coalesce(host_id, 'unknown') = ?",
                [cell_id, host_id],
            ).fetchone()
        else:  # an index from before hosts
            row = con.execute("SELECT result_json FROM cells WHERE cell_id = ?", [cell_id]).fetchone()
    doc = json.loads(row[0]) if row and row[0] else {}
    fl = t.get("flips", pd.DataFrame())
    flips = mine(fl).drop(columns=["cell_id", "host_id"]) if len(fl) else pd.DataFrame()
    return {
        "perf": perf,
        "quality": quality,
        "lineage": list(reversed(lineage)),
        "doc": doc,
        "flips": flips,
        "host_id": host_id,
    }


def compare(table: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """Rows side by side (columns), with the delta of each numeric row against the first. `ids` are row keys
    (`cell_id@host_id`), or cell ids where each names one row."""
    by = "key" if "key" in table and set(ids) <= set(table["key"]) else "cell_id"
    sub = table.set_index(by).loc[ids]
    num = sub.select_dtypes("number")
    side = sub.T
    deltas = num.sub(num.iloc[0], axis=1).T.add_prefix("Δ vs ")
    return side.join(deltas.iloc[:, 1:], how="left")
