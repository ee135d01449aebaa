"""The curves a user picks a serving point from, across cells: latency against system throughput, and tokens/s
per user against tokens/s per system, one line per (cell, host) through its load levels. The points come
from the index's `curves` query (harness/store/schema.curves_select: each level over its steady window where
that holds enough requests, else the whole level); the marks from the stored SLO (a horizontal line on the
latency axis it bounds) and a sweep's findings (its saturation rate and its highest rate meeting the SLO,
ringed on the level run at that rate); noisy levels (repeats whose CV passed load.noisy_cv) are crosses.

Pure pandas for the points; the Altair charts import altair when drawn (the dashboard's dependency).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import altair

LATENCY_AXES = {
    "ttft_ms_p50": "TTFT p50 (ms)",
    "ttft_ms_p99": "TTFT p99 (ms)",
    "tpot_ms_p50": "TPOT p50 (ms)",
    "tpot_ms_p99": "TPOT p99 (ms)",
    "e2e_ms_p50": "end-to-end p50 (ms)",
    "e2e_ms_p99": "end-to-end p99 (ms)",
}
THROUGHPUT_AXES = {
    "system_tok_s": "output tok/s, whole server (per system)",
    "req_s": "requests/s completed",
    "goodput_req_s": "goodput: requests/s meeting the stored SLO",
}
SWEEP_COLS = [
    "sweep_sync_req_s",
    "sweep_max_req_s",
    "sweep_rates",
    "sweep_saturation_req_s",
    "sweep_saturation_reason",
    "sweep_max_rate_at_slo_req_s",
    "sweep_stopped_early",
]
SWEEP_MARKS = {"sweep_saturation_req_s": "saturation", "sweep_max_rate_at_slo_req_s": "max rate at SLO"}
KEY = ["cell_id", "host_id"]


def curve_points(curves: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The `curves` rows of the cells in `table` (the dashboard's filtered cells table), each with `key`,
    `label` (the cell in words, with its key `cell_id@host_id`), `marks` (the sweep findings at that level:
    "saturation", "max rate at SLO", or ""), `noisy_text` and `where` (which window the figures are over)."""
    if curves.empty or table.empty:
        return pd.DataFrame()
    t = table.assign(
        label=table["model"].astype(str)
        + " "
        + table["precision"].astype(str)
        + "/"
        + table["method"].astype(str)
        + "/"
        + table["distill"].astype(str)
        + " ["
        + table["key"].astype(str)
        + "]"
    )  # the key: two cells of the same precision/method/distill (other load or serving settings) stay apart
    cols = [c for c in ("key", "label", *SWEEP_MARKS) if c in t]
    p = curves.merge(t[[*KEY, *cols]], on=KEY, how="inner")
    rate_level = ~p["profile"].isin(["synchronous", "concurrency"])  # a sweep's rates are constant/poisson levels
    marks = pd.Series("", index=p.index)
    for col, word in SWEEP_MARKS.items():
        if col in p:
            at = rate_level & np.isclose(p["level"].astype(float), p[col].astype(float).fillna(-1.0))
            marks = marks.where(~at, np.where(marks.eq(""), word, marks + ", " + word))
    p["marks"] = marks
    p["noisy"] = p["noisy"].fillna(False).astype(bool)
    p["noisy_text"] = np.where(p["noisy"], "noisy: repeats disagree (CV above load.noisy_cv)", "")
    p["where"] = np.where(p["window_kind"].eq("steady"), "steady window", "whole level")
    p["level_text"] = [
        "synchronous" if pr == "synchronous" else f"c{lv:g}" if pr == "concurrency" else f"{pr} {lv:g} req/s"
        for pr, lv in zip(p["profile"], p["level"].astype(float))
    ]
    return p.sort_values([*KEY, "req_s"]).reset_index(drop=True)


def slo_lines(points: pd.DataFrame, latency: str, asked_ms: float | None = None) -> pd.DataFrame:
    """The SLO bounds on `latency`'s objective (TTFT, TPOT or e2e) to draw: `asked_ms` when given, else the
    distinct bounds the levels were measured under (load.slo of each cell's plan)."""
    objective = latency.split("_")[0]
    if asked_ms is not None:
        return pd.DataFrame({"bound": [asked_ms], "text": [f"SLO asked: {objective.upper()} <= {asked_ms:g} ms"]})
    col = f"slo_{objective}_ms"
    if points.empty or col not in points:
        return pd.DataFrame({"bound": [], "text": []})
    bounds = sorted(points[col].dropna().astype(float).unique())
    return pd.DataFrame(
        {"bound": bounds, "text": [f"SLO stored with the cells: {objective.upper()} <= {b:g} ms" for b in bounds]}
    )


def caption(points: pd.DataFrame) -> str:
    """What the chart shows: how many cells and levels, which windows, noisy levels and sweep marks."""
    n_cells = points[KEY].drop_duplicates().shape[0]
    steady = int(points["window_kind"].eq("steady").sum())
    parts = [
        f"{n_cells} cell(s), {len(points)} load level(s); one line per cell through its levels",
        f"{steady} level(s) over their steady window (ramp-up and drain left out), "
        f"{len(points) - steady} over the whole level (no steady window, or too few requests inside it)",
    ]
    if points["noisy"].any():
        parts.append(f"{int(points['noisy'].sum())} noisy level(s) drawn as crosses")
    if points["marks"].ne("").any():
        parts.append("rings: a sweep's saturation rate and highest rate meeting its SLO")
    return "; ".join(parts) + "."


def _tooltip(alt: Any, x: str, y: str) -> list:
    return [
        alt.Tooltip("label", title="cell"),
        alt.Tooltip("level_text", title="level"),
        alt.Tooltip("where", title="figures over"),
        alt.Tooltip(x, title=THROUGHPUT_AXES.get(x, x), format=",.3~f"),
        alt.Tooltip(y, title=LATENCY_AXES.get(y, y), format=",.1f"),
        alt.Tooltip("user_tok_s", title="tok/s per user", format=",.1f"),
        alt.Tooltip("goodput_req_s", title="goodput req/s", format=",.3~f"),
        alt.Tooltip("slo_attainment", title="SLO attainment", format=".0%"),
        alt.Tooltip("noisy_text", title="noise"),
        alt.Tooltip("marks", title="sweep"),
    ]


def _lines(alt: Any, d: pd.DataFrame, x: str, y: str, x_title: str, y_title: str) -> list:
    """One line per cell with its level points (crosses where noisy) and rings on the sweep's marks."""
    base = alt.Chart(d).encode(
        x=alt.X(f"{x}:Q", title=x_title, scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=alt.Color("label:N", title="cell", legend=alt.Legend(labelLimit=380)),
        detail="key:N",
    )
    line = base.mark_line(opacity=0.7).encode(order=alt.Order("req_s:Q"))
    pts = base.mark_point(filled=True, size=70).encode(
        shape=alt.Shape("noisy:N", title="noisy", scale=alt.Scale(domain=[False, True], range=["circle", "cross"])),
        tooltip=_tooltip(alt, x, y),
    )
    ring = (
        base.transform_filter("datum.marks != ''")
        .mark_point(size=380, filled=False, strokeWidth=2, color="black")
        .encode(tooltip=_tooltip(alt, x, y))
    )
    text = (
        base.transform_filter("datum.marks != ''").mark_text(dy=-16, fontSize=11, color="black").encode(text="marks:N")
    )
    return [line, pts, ring, text]


def latency_chart(points: pd.DataFrame, x: str, y: str, slo: pd.DataFrame) -> altair.LayerChart:
    """Latency (`y`) against throughput (`x`) across cells, with the SLO bound(s) as dashed lines."""
    import altair as alt

    d = points.dropna(subset=[x, y])
    layers = _lines(alt, d, x, y, THROUGHPUT_AXES.get(x, x), LATENCY_AXES.get(y, y))
    if not slo.empty:
        layers.append(
            alt.Chart(slo)
            .mark_rule(color="#d62728", strokeDash=[6, 3])
            .encode(y="bound:Q", tooltip=[alt.Tooltip("text", title="SLO")])
        )
    return alt.LayerChart(layer=layers, title=f"{LATENCY_AXES.get(y, y)} vs {THROUGHPUT_AXES.get(x, x)}", height=360)


def user_system_chart(points: pd.DataFrame) -> altair.LayerChart:
    """Tokens/s per user (1000 / TPOT p50) against tokens/s per system (the level's output tok/s)."""
    import altair as alt

    d = points.dropna(subset=["system_tok_s", "user_tok_s"])
    layers = _lines(
        alt, d, "system_tok_s", "user_tok_s", "output tok/s per system", "output tok/s per user (1000 / TPOT p50)"
    )
    return alt.LayerChart(layer=layers, title="tokens/s per user vs per system", height=360)
