"""`harness report MATRIX`: the dashboard's Pareto plots (PNG) and summary table in one self-contained
HTML page (images inlined), for a pull request, a README or a chat thread."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from advisor.verdict import fmt_drop
from advisor.views import PARETO_VIEWS, cells_table, pareto_mask, read_all

SUMMARY = [
    "cell_id",
    "host_label",
    "model",
    "precision",
    "method",
    "kv_cache",
    "distill",
    "status",
    "size_gib",
    "peak_mem_gib",
    "output_tok_s",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "tpot_ms_p50",
    "q",
    "drop",
    "reason",
]


def pareto_png(d: pd.DataFrame, x: str, label: str, lower: bool, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    markers = {"none": "o"}
    for (method, distill), g in d.groupby(["method", "distill"]):
        # the 95% CI of each drop as an error bar (none where the cell has no interval)
        err = [(g["drop_pct"] - g["drop_lo"] * 100).clip(lower=0), (g["drop_hi"] * 100 - g["drop_pct"]).clip(lower=0)]
        ax.errorbar(g[x], g["drop_pct"], yerr=[e.fillna(0) for e in err], fmt="none", ecolor="gray", alpha=0.5, lw=1)
        ax.scatter(g[x], g["drop_pct"], label=f"{method} / {distill}", marker=markers.get(distill, "^"), s=50)
        for _, r in g.iterrows():
            ax.annotate(r["precision"], (r[x], r["drop_pct"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = d[pareto_mask(d[x], d["drop_pct"], x_lower=lower, y_lower=True)].sort_values(x)
    ax.plot(front[x], front["drop_pct"], "--", color="gray", lw=1, label="Pareto frontier")
    ax.set_xlabel(label)
    ax.set_ylabel("avg_acc drop, % of reference (bars: 95% CI)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_drop(v / 100, relative=True)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(db_path: Path, cell_ids: list[str] | None, out_dir: Path, title: str) -> Path:
    """The report of `cell_ids` (None: every cell in the index); returns the HTML page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t = read_all(db_path)
    table = cells_table(t)
    if cell_ids is not None:
        table = table[table["cell_id"].isin(cell_ids)]
    done = table[table["status"] == "done"].copy()
    done["drop_pct"] = done["drop"] * 100
    images = []
    for x, label, lower in PARETO_VIEWS:
        d = done.dropna(subset=[x, "drop_pct"])
        if d.empty:
            continue
        png = out_dir / f"pareto-{x}.png"
        pareto_png(d, x, label, lower, png)
        images.append((label, png))
    summary = table[SUMMARY]
    summary.to_csv(out_dir / "summary.csv", index=False)
    imgs = "".join(
        f"<figure><img alt='{html.escape(lbl)}' src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'><figcaption>quality drop vs {html.escape(lbl)}"
        f"</figcaption></figure>"
        for lbl, p in images
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}figure{display:inline-block;margin:0 1em 1em 0}"
        f"</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(table)} cells ({len(done)} done). Quality drop: avg_acc relative to each cell's uncompressed "
        f"reference on the same host. Figures measured on the host named in each row (host_label).</p>{imgs}"
        f"{summary.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}</body></html>"
    )
    out = out_dir / "report.html"
    out.write_text(page)
    return out
