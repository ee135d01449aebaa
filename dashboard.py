"""dqbench dashboard: `streamlit run dashboard.py` (DQBENCH_DB or results/dqbench.duckdb).

Browse cells, Pareto views (quality drop vs memory, throughput, TTFT p99), the latency-throughput and
per-user/per-system curves across cells (advisor/curves.py), one cell's detail, a side-by-side comparison,
and the advisor. Reads DuckDB read-only, cached by the file's modification
time so cells a running `harness run` adds appear on refresh; no backend is imported.

A row is a (cell, host): the same cell measured on two hosts is two rows, each with its host's label.
The host filter starts at every host; rows are picked by their key `cell_id@host_id`.

The sidebar's database path is typed by whoever uses the page, so it opens only an existing regular file
with DuckDB's magic bytes that is the configured index (DQBENCH_DB), lies under the results folder
(DQBENCH_RESULTS), or was given on the command line (`./dq dashboard -- --db PATH`; db_problem). DuckDB opens it
with external access off (harness/store/db.py): a crafted file whose `cells` is a view over `read_text(...)`
fails to read instead of showing local files. An index that cannot be read (held by another process's write
connection, damaged, not a results index) is one st.error naming the path and the fix. The cache of loaded
tables holds at most LOAD_CACHE_ENTRIES of them (each ingest changes the key).
"""

from __future__ import annotations

import sys
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from advisor import curves
from advisor.constraints import AdvisorInputError, Constraints, MaxDrop, parse_max_drop, parse_ms, parse_positive
from advisor.context_view import context_curve
from advisor.query import NoResultsError, build_frame
from advisor.render import to_json
from advisor.roofline_view import roofline_points
from advisor.select import recommend
from advisor.verdict import MINUS
from advisor.views import (
    NO_LIMIT,
    PARETO_VIEWS,
    VERDICT_STYLE,
    cell_detail,
    cells_table,
    compare,
    drop_display,
    pareto_points,
    read_all,
)
from harness.store.db import IndexUnavailable, is_duckdb_file

LOAD_CACHE_ENTRIES = 8  # loaded tables kept: a long run's ingests each make a new key (the file's mtime)


def command_line_db(argv: list[str] | None = None) -> Path | None:
    """The database given on the command line, after streamlit's own options: `streamlit run dashboard.py --
    --db PATH` (`./dq dashboard -- --db PATH`); None without one."""
    args = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(args):
        if a == "--db" and i + 1 < len(args):
            return Path(args[i + 1]).expanduser()
        if a.startswith("--db="):
            return Path(a.split("=", 1)[1]).expanduser()
    return None


def configured() -> tuple[Path, Path, Path | None]:
    """(the configured index: DQBENCH_DB or results/dqbench.duckdb, the results folder, the database given on
    the command line or None)."""
    from harness.settings import load_settings

    s = load_settings()
    return s.db_path, s.results_dir, command_line_db()


def db_problem(db: Path, index: Path, results_dir: Path, given: Path | None = None) -> str | None:
    """Why the page will not open `db` (None: it may). A missing file is not a problem here: the page
    says how to make one. Symlinks are judged by where they lead."""
    target = db.resolve()
    root = results_dir.resolve()
    allowed = (
        target == index.resolve() or (given is not None and target == given.resolve()) or target.is_relative_to(root)
    )
    if not allowed:
        return (
            f"`{db}` is not a results database this page opens: give the configured index ({index}) or a file "
            f"under the results folder {root}; to open another, start the page with it: "
            f"`./dq dashboard -- --db PATH`"
        )
    if db.exists() and not is_duckdb_file(db):
        return (
            f"`{db}` is not a DuckDB database (no DuckDB header): point the field at the results index "
            f"({index}); `harness db rebuild` recreates the index from the JSON results"
        )
    return None


@st.cache_data(show_spinner=False, max_entries=LOAD_CACHE_ENTRIES)
def load(db: str, mtime: float, gpu_price: float, drop_limit: str) -> dict[str, pd.DataFrame]:
    """The index's tables and the cells table, drops in `drop_limit`'s units with their verdicts (''
    for none). `mtime` is the key that refreshes it."""
    t = read_all(Path(db))
    t["table"] = cells_table(t, gpu_price or None, parse_max_drop(drop_limit) if drop_limit else None)
    return t


def _limit_key(max_drop: MaxDrop | None) -> str:
    """The limit as text parse_max_drop reads back ('' for none): the cache key of load()."""
    if max_drop is None:
        return ""
    return f"{max_drop.value * 100:.12g}%" if max_drop.relative else f"{max_drop.value:.12g}pt"


def drop_limit_input() -> tuple[MaxDrop | None, str | None]:
    """The sidebar's drop limit, parsed like the advisor's --max-drop: (limit, None) or (None, the error)."""
    text = st.sidebar.text_input(
        "drop limit (2% relative or 1.5pt absolute)",
        "2%",
        key="drop_limit",
        help="Each Pareto point's verdict: within (its whole 95% CI is inside the limit), beyond (the whole "
        "CI is past it) or undecided (the CI straddles it, or there is none). The Advisor tab uses it too.",
    ).strip()
    if not text:
        return None, None
    try:
        return parse_max_drop(text), None
    except AdvisorInputError as exc:
        return None, str(exc)


def main() -> None:
    st.set_page_config(page_title="dqbench", layout="wide")
    st.title("dqbench results")
    index, results_dir, given = configured()
    db = st.sidebar.text_input("results database", str(given or index)).strip()
    problem = db_problem(Path(db).expanduser(), index, results_dir, given)
    if problem:
        st.error(problem)
        return
    if not Path(db).expanduser().is_file():
        st.info(
            f"No results database at `{db}` yet. Produce one with `./dq run` (the embedded CPU matrix) or "
            f"`harness run MATRIX`; it appears here on refresh."
        )
        return
    db = str(Path(db).expanduser())
    price = st.sidebar.number_input(
        "GPU price ($/h, for $/1M tokens)", min_value=0.0, value=0.0, step=0.5, key="gpu_price"
    )
    max_drop, limit_error = drop_limit_input()
    if limit_error:
        st.sidebar.error(limit_error)
    try:
        t = load(db, Path(db).stat().st_mtime, price, _limit_key(max_drop))
    except IndexUnavailable as exc:  # held by a writer, damaged, not a results index: one message
        st.error(str(exc))
        return
    table = t["table"]
    if table.empty:
        st.info("The database has no cells yet: run a matrix (`./dq run`).")
        return

    # ---- filters
    f = table
    hosts = dict(zip(table["host_id"], table["host_label"]))
    chosen_hosts = st.sidebar.multiselect(
        "host (all when empty)",
        sorted(hosts, key=lambda h: str(hosts[h])),
        format_func=lambda h: f"{hosts[h]} [{h}]" if hosts[h] != h else h,
        key="filter_host",
    )
    if chosen_hosts:
        f = f[f["host_id"].isin(chosen_hosts)]
    for col in ("matrix", "model", "precision", "method", "kv_cache", "distill", "engine", "status"):
        values = sorted(table[col].dropna().unique())
        chosen = st.sidebar.multiselect(col, values, key=f"filter_{col}")
        if chosen:
            f = f[f[col].isin(chosen)]
    st.sidebar.caption(
        f"{len(f)} of {len(table)} cells"
        + (f" on {f['host_id'].nunique()} host(s)" if table["host_id"].nunique() > 1 else "")
    )

    tabs = st.tabs(
        ["Cells", "Pareto", "Curves", "Roofline", "Cost", "Long context", "Cell detail", "Compare", "Advisor"]
    )
    with tabs[0]:
        st.dataframe(f, hide_index=True, width="stretch")
        st.download_button("Download CSV", f.to_csv(index=False).encode(), "dqbench-cells.csv", "text/csv")
        bad = f[f["status"].isin(["failed", "infeasible"])]
        if not bad.empty:
            st.subheader("Failed and infeasible cells")
            st.dataframe(
                bad[
                    ["cell_id", "host_label", "model", "precision", "method", "kv_cache", "distill", "status", "reason"]
                ],
                hide_index=True,
                width="stretch",
            )

    with tabs[1]:
        done = f[f["status"] == "done"]
        if done.empty:
            st.info("No finished cells match the filters.")
        else:
            st.caption(pareto_caption(done, max_drop))
        for x, label, _ in PARETO_VIEWS:
            d = done.dropna(subset=[x, "drop"])
            if d.empty:
                continue
            st.altair_chart(pareto_chart(pareto_points(d, x, max_drop), x, label, max_drop), width="stretch")
            if d["engine"].nunique() > 1:  # perf on different engines: label it, do not let it pass unnoticed
                st.caption(
                    f"engines in this view: {', '.join(sorted(d['engine'].unique()))} (hover a point for its "
                    "engine); throughput and memory compare serving stacks, not only the weights"
                )

    with tabs[2]:
        curves_panel(t, f)

    with tabs[3]:
        roofline_panel(t, f)

    with tabs[4]:
        cost_panel(t, f)

    with tabs[5]:
        context_panel(t, f)

    with tabs[6]:
        ids = list(f["key"])
        picked = st.selectbox("cell", ids, format_func=lambda i: _label(table, i), key="detail_cell") if ids else None
        if picked:
            row = table.set_index("key").loc[picked]
            try:
                d = cell_detail(t, row["cell_id"], Path(db), row["host_id"])
            except IndexUnavailable as exc:  # tables come from the cache; the file may have changed hands since
                st.error(str(exc))
                d = None
            if d is not None:
                st.markdown(
                    f"**{_label(table, picked)}** — status `{row['status']}`"
                    + (f": {row['reason']}" if isinstance(row["reason"], str) else "")
                )
                st.write("lineage: " + " → ".join(d["lineage"]))
                if not d["perf"].empty:
                    # tok/s against concurrency: closed-loop levels only (a sweep's rate levels, constant or
                    # poisson, have a request rate as their level; the Curves tab draws those)
                    conc = d["perf"][d["perf"]["profile"].isin(["synchronous", "concurrency"])]
                    st.line_chart(conc, x="level", y="output_tok_s")
                    st.dataframe(d["perf"], hide_index=True, width="stretch")
                st.dataframe(d["quality"], hide_index=True, width="stretch")
                doc = d["doc"]
                shift = doc.get("shift") or {}
                if shift.get("metrics"):
                    m = shift["metrics"]
                    st.markdown(
                        f"**vs reference** `{shift.get('reference')}` on {m['n_tokens']} tokens: KLD mean "
                        f"{m['kld_mean']:.4f}, p99 {m['kld_p99']:.4f}; "
                        f"top-1 agreement {m['top1_agreement']:.1%}; Δp RMS {m['dp_rms']:.4f}; "
                        f"perplexity ratio {m['ppl_ratio']:.3f}"
                    )
                    st.caption(m.get("kld_method", ""))
                if not d["flips"].empty:
                    st.dataframe(d["flips"], hide_index=True, width="stretch")
                if doc.get("distill"):
                    distill_panel(doc["distill"])
                if doc.get("artefact"):
                    st.json(
                        {
                            "artefact": doc["artefact"],
                            "serve": {k: doc.get("serve", {}).get(k) for k in ("startup_s", "loaded", "command")},
                            "memory": doc.get("memory"),
                            "timings": doc.get("timings"),
                            "logs": doc.get("logs"),
                        },
                        expanded=False,
                    )

    with tabs[7]:
        ids = st.multiselect(
            "cells to compare", list(f["key"]), format_func=lambda i: _label(table, i), key="compare_cells"
        )
        if len(ids) >= 2:
            st.dataframe(compare(table, ids).astype(str), width="stretch")
        else:
            st.caption("Pick two or more cells.")

    with tabs[8]:
        advisor_panel(t, max_drop, limit_error)


def cost_panel(t: dict[str, pd.DataFrame], f: pd.DataFrame) -> None:
    """$ and kWh per 1,000 correct answers per cell and load level (advisor/cost.py), with a spec-decoded cell's
    acceptance and speed-up: quality and speed on one scale (issue #28)."""
    from advisor.cost import cost_note, cost_table

    price = st.number_input(
        "host price ($/h; 0: each matrix's hardware.price_per_hour)",
        min_value=0.0,
        value=0.0,
        step=0.5,
        key="cost_price",
    )
    keys = set(zip(f["cell_id"], f["host_id"]))
    cells = t["cells"][[k in keys for k in zip(t["cells"]["cell_id"], t["cells"]["host_id"])]]
    table = cost_table(cells, t["quality"], t["perf"], price or None)
    if table.empty:
        st.info("No finished cells with load levels match the filters.")
        return
    st.caption(cost_note(None))
    if table["usd_per_1k_correct"].isna().all():
        st.caption("No price: give one above, or set hardware.price_per_hour in the matrix.")
    else:
        chart = table.dropna(subset=["usd_per_1k_correct"]).assign(
            cell=lambda d: (
                d["precision"]
                + "/"
                + d["method"]
                + "/"
                + d["distill"]
                + d["draft"].fillna("").map(lambda x: f"+{x}" if x else "")
            )
        )
        st.altair_chart(
            alt.Chart(chart)
            .mark_bar()
            .encode(
                x=alt.X("usd_per_1k_correct:Q", title="$ per 1,000 correct answers"),
                y=alt.Y("cell:N", sort="x", title=None),
                row=alt.Row("level:O", title="concurrency"),
                tooltip=["cell_id", "host_label", "level", "req_s", "q", "usd_per_1k_correct", "kwh_per_1k_correct"],
            ),
            width="stretch",
        )
    notes = sorted(set(table["energy_note"].dropna()))
    for n in notes:
        st.caption(f"energy: {n}")
    st.dataframe(table, hide_index=True, width="stretch")


def context_panel(t: dict[str, pd.DataFrame], f: pd.DataFrame) -> None:
    """Quality against context length (advisor/context_view.py): each cell's score per length, and its drop against
    the reference with the paired 95% CI over the same documents (a task scored per length: `dq_niah@4096`)."""
    pts = context_curve(t["quality"], t.get("flips", pd.DataFrame()))
    pts = pts.assign(key=pts["cell_id"] + "@" + pts["host_id"])
    pts = pts[pts["key"].isin(set(f["key"]))]
    if pts.empty:
        st.info(
            "No long-context scores: a task with `context_lengths` (e.g. `{name: dq_niah, context_lengths: [1024, "
            "2048, 4096]}`, matrices/smollm2-long-context.yaml) is scored per length and drawn here."
        )
        return
    labels = f.set_index("key")
    pts["cell"] = [
        f"{labels.loc[k, 'precision']}/{labels.loc[k, 'method']}/{labels.loc[k, 'distill']} [{k}]" for k in pts["key"]
    ]
    for task, d in pts.groupby("task"):
        st.subheader(f"{task}: quality against context length")
        x = alt.X("length:Q", scale=alt.Scale(type="log", base=2), title="context length (tokens)")
        score = (
            alt.Chart(d)
            .mark_line(point=True)
            .encode(x=x, y=alt.Y("score:Q", title="score"), color="cell:N", tooltip=["cell", "length", "score", "n"])
        )
        st.altair_chart(score, width="stretch")
        dd = d.dropna(subset=["drop_abs"])
        if not dd.empty:
            base = alt.Chart(dd).encode(x=x, color="cell:N")
            drop = base.mark_line(point=True).encode(
                y=alt.Y("drop_abs:Q", title="drop vs reference (points of the score, 95% CI)"),
                tooltip=["cell", "length", "drop_abs", "drop_lo", "drop_hi", "n", "ref_id"],
            )
            st.altair_chart(drop + base.mark_rule().encode(y="drop_lo:Q", y2="drop_hi:Q"), width="stretch")
            st.caption("CI: paired bootstrap over the same documents at each length (the shift step's flips)")
        st.dataframe(d.drop(columns=["key"]), hide_index=True, width="stretch")


def roofline_panel(t: dict[str, pd.DataFrame], f: pd.DataFrame) -> None:
    """Measured decode throughput under its roofline (advisor/roofline_view.py): per cell, its limit at each
    load level (dashed) and what it measured (points), log-log, with the % of limit and the regime on hover."""
    pts = roofline_points(t["perf"], f[f["status"] == "done"])
    if pts.empty:
        st.info("No rooflines among the filtered cells: cells finished after the roofline landed carry one.")
        return
    st.altair_chart(roofline_chart(pts), width="stretch")
    st.caption(
        "Dashed: the decode limit on the host's figures (`harness doctor`): memory-bound = weights + KV streamed "
        "per step over bandwidth, compute-bound = FLOPs per token over the matmul dtype's throughput. Points: the "
        "level's output tok/s (prefill time included), so a point sits below its line."
    )
    st.dataframe(pts, hide_index=True, width="stretch")


def roofline_chart(pts: pd.DataFrame) -> alt.LayerChart:
    base = alt.Chart(pts).encode(
        x=alt.X("level:Q", scale=alt.Scale(type="log"), title="concurrency"),
        color=alt.Color("cell:N", legend=alt.Legend(labelLimit=400)),
    )
    limit = base.mark_line(strokeDash=[4, 3]).encode(
        y=alt.Y("roofline_tok_s:Q", scale=alt.Scale(type="log"), title="output tok/s"), detail="key:N"
    )
    measured = base.mark_point(filled=True, size=70).encode(
        y=alt.Y("measured_tok_s:Q", scale=alt.Scale(type="log")),
        shape="regime:N",
        tooltip=["cell", "host_label", "level", "measured_tok_s", "roofline_tok_s", "roofline_pct", "regime"],
    )
    return alt.layer(limit, measured).properties(title="output tok/s under its roofline (decode limit, dashed)")


def curves_panel(t: dict[str, pd.DataFrame], f: pd.DataFrame) -> None:
    """Latency vs throughput and per-user vs per-system tokens/s of the filtered cells, one line each through
    its load levels: the view a serving point is picked from (advisor/curves.py)."""
    points = curves.curve_points(t.get("curves", pd.DataFrame()), f[f["status"] == "done"])
    if points.empty:
        st.info("No load levels among the filtered cells: a cell's curve needs a measured `load` block.")
        return
    c1, c2, c3 = st.columns(3)
    lat, thr = curves.LATENCY_AXES, curves.THROUGHPUT_AXES
    y = str(c1.selectbox("latency", list(lat), format_func=lambda k: lat[k], key="curve_y"))
    x = str(c2.selectbox("throughput", list(thr), format_func=lambda k: thr[k], key="curve_x"))
    text = c3.text_input("SLO line (e.g. 500ms; empty: the cells' stored SLO)", "", key="curve_slo").strip()
    try:
        asked = parse_ms("SLO line", text) if text else None
    except AdvisorInputError as exc:
        c3.error(str(exc))
        asked = None
    st.caption(curves.caption(points))
    st.altair_chart(curves.latency_chart(points, x, y, curves.slo_lines(points, y, asked)), width="stretch")
    st.altair_chart(curves.user_system_chart(points), width="stretch")
    sweeps = f.dropna(subset=["sweep_max_req_s"]) if "sweep_max_req_s" in f else f.iloc[:0]
    if not sweeps.empty:
        st.subheader("Sweeps")
        cols = ["cell_id", "host_label", "model", "precision", "method", "distill", *curves.SWEEP_COLS]
        st.dataframe(sweeps[cols], hide_index=True, width="stretch")


def pareto_caption(done: pd.DataFrame, max_drop: MaxDrop | None) -> str:
    """What the marks mean, and how many cells each verdict holds."""
    if max_drop is None:
        return "Bars: the 95% CI of each drop. Set a drop limit in the sidebar to mark each cell's verdict."
    n = done["verdict"].value_counts()
    return (
        f"Against the drop limit {max_drop}: {n.get('within', 0)} within (whole 95% CI inside), "
        f"{n.get('undecided', 0)} undecided (the CI straddles the limit, or there is none), "
        f"{n.get('beyond', 0)} beyond. Bars: the 95% CI of each drop; dashed red line: the limit."
    )


def pareto_chart(d: pd.DataFrame, x: str, label: str, max_drop: MaxDrop | None) -> alt.LayerChart:
    """Quality drop (with its 95% CI as an error bar) against `x`; marker shape and colour give the verdict
    against the sidebar's limit, drawn as a dashed line; the Pareto frontier is grey. Axis labels and hover
    read '+1.6 pt' / '−2.0 %' (advisor.views.pareto_points)."""
    _, unit, relative = drop_display(max_drop)
    y_title = "quality drop vs reference (" + ("% of its score" if relative else "points") + ")"
    # a label as a person writes it: a sign, at most one decimal, the typographic minus and the unit
    label_expr = f"(datum.value > 0 ? '+' : '') + replace(format(datum.value, '.1~f'), '-', '{MINUS}') + ' {unit}'"
    y_axis = alt.Axis(labelExpr=label_expr)
    x_enc = alt.X(x, title=label, axis=alt.Axis(format=",.4~g"), scale=alt.Scale(zero=False))
    style = {k: v for k, v in VERDICT_STYLE.items() if (k != NO_LIMIT) == (max_drop is not None)}
    legend = "verdict" if max_drop is None else f"verdict at {max_drop}"
    color = alt.Color(
        "verdict:N", title=legend, scale=alt.Scale(domain=list(style), range=[c for c, _ in style.values()])
    )
    shape = alt.Shape(
        "verdict:N", title=legend, scale=alt.Scale(domain=list(style), range=[m for _, m in style.values()])
    )
    base = alt.Chart(d).encode(x=x_enc)
    bars = (
        base.transform_filter("isValid(datum.y_lo) && isValid(datum.y_hi)")
        .mark_rule(strokeWidth=1.5, opacity=0.6)
        .encode(y=alt.Y("y_lo:Q", title=y_title, axis=y_axis), y2="y_hi:Q", color=color)
    )
    tooltip = [
        alt.Tooltip("cell_id", title="cell"),
        alt.Tooltip("host_label", title="host"),
        alt.Tooltip("model"),
        alt.Tooltip("precision"),
        alt.Tooltip("method"),
        alt.Tooltip("distill"),
        alt.Tooltip("engine"),
        alt.Tooltip("x_text", title=label),
        alt.Tooltip("drop_text", title="quality drop"),
        alt.Tooltip("ci_text", title="95% CI"),
        alt.Tooltip("verdict_text", title="verdict"),
        alt.Tooltip("kld_mean", title="KL mean", format=".4f"),
        alt.Tooltip("top1_agreement", title="top-1 agreement", format=".1%"),
    ]
    pts = base.mark_point(filled=True, size=90, opacity=0.9).encode(
        y=alt.Y("y:Q", title=y_title, axis=y_axis), color=color, shape=shape, tooltip=tooltip
    )
    front = (
        base.transform_filter(alt.datum.frontier)
        .mark_line(color="gray", strokeDash=[4, 3])
        .encode(y=alt.Y("y:Q", title=y_title, axis=y_axis))
    )
    layers = [bars, pts, front]
    if max_drop is not None:
        factor, _, _ = drop_display(max_drop)
        limit = pd.DataFrame({"limit": [max_drop.value * factor], "text": [f"limit {max_drop}"]})
        layers.append(
            alt.Chart(limit)
            .mark_rule(color=VERDICT_STYLE["beyond"][0], strokeDash=[6, 3])
            .encode(y=alt.Y("limit:Q", title=y_title, axis=y_axis), tooltip=[alt.Tooltip("text", title="drop limit")])
        )
    return alt.LayerChart(layer=layers, title=f"quality drop vs {label}", height=320)


def distill_panel(dist: dict) -> None:
    """A student's training: lineage, budget, loss curve, held-out CE / KL, and the cost estimate."""
    rec = dist.get("record") or {}
    st.markdown(
        f"**student** `{dist['name']}` ({dist['kind']}) of teacher `{dist.get('teacher_id')}`"
        + (" — reused from the student cache" if dist.get("reused") else "")
    )
    if rec.get("loss_curve"):
        before, after = rec.get("heldout_before") or {}, rec.get("heldout_after") or {}
        st.markdown(
            f"{rec['steps']} steps, {rec['tokens_seen']:,} tokens in {rec['train_s']:.0f} s "
            f"({rec['stopped_by']}); held-out CE {before.get('ce', float('nan')):.3f} → "
            f"{after.get('ce', float('nan')):.3f}, KL to teacher {before.get('kl_to_teacher', float('nan')):.3f} "
            f"→ {after.get('kl_to_teacher', float('nan')):.3f}; peak RSS {rec.get('peak_rss_gib', 0):.2f} GiB"
        )
        curve = pd.DataFrame(rec["loss_curve"])
        st.line_chart(curve, x="step", y=[c for c in ("loss", "ce", "kd") if c in curve])
        st.caption(rec.get("loss", ""))
    ref = (dist.get("cost") or {}).get("reference")
    if ref:
        a = dist["cost"]["assumptions"]
        st.caption(
            f"the same recipe at {ref['teacher']} size over {ref['tokens']:.3g} tokens: "
            f"~{ref['gpu_hours']:.1f} {a['gpu']} GPU-hours, ~${ref['usd']:.0f} (MFU {a['mfu']:.0%}, "
            f"${a['usd_per_gpu_hour']}/h; formula in the cell JSON)"
        )


def _label(table: pd.DataFrame, key: str) -> str:
    """A row's words: the cell, its host's label, and its key `cell_id@host_id` in brackets."""
    r = table.set_index("key").loc[key]
    draft = f"+draft {r['draft']}" if isinstance(r.get("draft"), str) else ""
    kv = f" kv {r['kv_cache']}" if isinstance(r.get("kv_cache"), str) and r["kv_cache"] != "auto" else ""
    return f"{r['model']} {r['precision']}/{r['method']}{kv}/{r['distill']}{draft} on {r['host_label']} [{key}]"


def advisor_panel(t: dict[str, pd.DataFrame], max_drop: MaxDrop | None, limit_error: str | None) -> None:
    """The CLI's recommendation through the same functions; the drop limit is the sidebar's."""
    c1, c2, c3 = st.columns(3)
    vram = c1.number_input("VRAM (GiB)", min_value=0.1, value=24.0, key="adv_vram")
    decide = c2.selectbox(
        "undecided drops (CI straddles the limit)",
        ["conservative", "point"],
        format_func=lambda d: {
            "conservative": "conservative: not fits",
            "point": "point: ranked by point estimate, marked",
        }[d],
        key="adv_decide",
    )
    objective = c3.selectbox(
        "objective", ["throughput", "latency", "memory", "quality", "goodput", "cost-per-correct"], key="adv_obj"
    )
    ctx = c1.number_input("context length", min_value=1, value=4096, key="adv_ctx")
    conc = c2.number_input("concurrency", min_value=1, value=1, key="adv_conc")
    c3.caption(f"drop limit (sidebar): {max_drop if max_drop is not None else 'none'}")
    slo_ttft = c1.text_input("SLO: TTFT (e.g. 500ms; empty: none)", "", key="adv_slo_ttft").strip()
    slo_tpot = c2.text_input("SLO: TPOT (e.g. 50ms; empty: none)", "", key="adv_slo_tpot").strip()
    goodput = c3.text_input("min goodput at the SLO (req/s; empty: none)", "", key="adv_min_goodput").strip()
    host_price = c1.number_input("host price ($/h, cost-per-correct; 0: the matrix's)", min_value=0.0, key="adv_price")
    if not st.button("Recommend", key="adv_go"):
        return
    try:
        if limit_error:
            raise AdvisorInputError(limit_error)
        c = Constraints(
            vram_gib=vram,
            max_drop=max_drop,
            decide=decide,
            objective=objective,
            context_len=int(ctx),
            concurrency=int(conc),
            slo_ttft_ms=parse_ms("--slo-ttft", slo_ttft or None),
            slo_tpot_ms=parse_ms("--slo-tpot", slo_tpot or None),
            min_goodput=parse_positive("--min-goodput", goodput or None),
            price_per_hour=host_price or None,
        )
        # the sidebar's host filter applies here too: advice from the hosts shown
        shown = st.session_state.get("filter_host") or list(t["cells"]["host_id"].unique())
        cells, quality, perf = (d[d["host_id"].isin(shown)] for d in (t["cells"], t["quality"], t["perf"]))
        frame = build_frame(cells, quality, perf, None, None, int(conc), c.slo)
        if frame.empty:
            raise NoResultsError("no finished cells yet")
    except (AdvisorInputError, NoResultsError) as exc:
        st.error(str(exc))
        return
    out = to_json(recommend(frame, c))
    if out["ok"]:
        st.success(out["decision"])
        recs = pd.DataFrame(out["recommendations"])
        lead = ["cell_id", "host_label", "verdict", "more_items", "drop", "drop_lo", "drop_hi", "drop_limit"]
        st.dataframe(recs[lead + [k for k in recs if k not in lead]], hide_index=True, width="stretch")
        st.code(out["serve_command"], language="bash")
    else:
        st.warning(out["decision"])
    if out["rejected"]:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "constraint": k,
                        "cells": v["count"],
                        "beyond / undecided": f"{v['beyond']} / {v['undecided']}" if "undecided" in v else "",
                        "nearest miss": v["miss"],
                        "unit": v["unit"],
                        "nearest cell": v["nearest"]["cell_id"],
                        "host": v["nearest"]["host_label"],
                    }
                    for k, v in out["rejected"].items()
                ]
            ),
            hide_index=True,
        )


main()
