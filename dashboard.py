"""dqbench dashboard: `streamlit run dashboard.py` (DQBENCH_DB or results/dqbench.duckdb).

Browse cells, Pareto views (quality drop vs memory, throughput, TTFT p99), one cell's detail, a
side-by-side comparison, and the advisor. Reads DuckDB read-only, cached by the file's modification
time so cells a running `harness run` adds appear on refresh; no backend is imported.

A row is a (cell, host): the same cell measured on two hosts is two rows, each with its host's label.
The host filter starts at every host; rows are picked by their key `cell_id@host_id`.

The sidebar's database path is typed by whoever uses the page, so it opens only an existing regular file
with DuckDB's magic bytes that is the configured index (DQBENCH_DB), lies under the results folder
(DQBENCH_RESULTS), or ends in `.duckdb` (db_problem). An index that cannot be read (held by another
process's write connection, damaged, not a results index) is one st.error naming the path and the fix.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from advisor.constraints import AdvisorInputError, Constraints, parse_max_drop
from advisor.query import NoResultsError, build_frame
from advisor.render import to_json
from advisor.select import recommend
from advisor.views import PARETO_VIEWS, cell_detail, cells_table, compare, pareto_mask, read_all
from harness.store.db import IndexUnavailable, is_duckdb_file


def configured() -> tuple[Path, Path]:
    """(the configured index: DQBENCH_DB or results/dqbench.duckdb, the results folder)."""
    from harness.settings import load_settings

    s = load_settings()
    return s.db_path, s.results_dir


def db_problem(db: Path, index: Path, results_dir: Path) -> str | None:
    """Why the page will not open `db` (None: it may). A missing file is not a problem here: the page
    says how to make one. Symlinks are judged by where they lead."""
    target = db.resolve()
    root = results_dir.resolve()
    allowed = target == index.resolve() or target.is_relative_to(root) or db.name.endswith(".duckdb")
    if not allowed:
        return (
            f"`{db}` is not a results database this page opens: give the configured index ({index}), a file "
            f"under the results folder {root}, or a path ending in `.duckdb`"
        )
    if db.exists() and not is_duckdb_file(db):
        return (
            f"`{db}` is not a DuckDB database (no DuckDB header): point the field at the results index "
            f"({index}); `harness db rebuild` recreates the index from the JSON results"
        )
    return None


@st.cache_data(show_spinner=False)
def load(db: str, mtime: float, gpu_price: float) -> dict[str, pd.DataFrame]:  # mtime: the key that refreshes it
    t = read_all(Path(db))
    t["table"] = cells_table(t, gpu_price or None)
    return t


def main() -> None:
    st.set_page_config(page_title="dqbench", layout="wide")
    st.title("dqbench results")
    index, results_dir = configured()
    db = st.sidebar.text_input("results database", str(index)).strip()
    problem = db_problem(Path(db).expanduser(), index, results_dir)
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
    try:
        t = load(db, Path(db).stat().st_mtime, price)
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
    for col in ("matrix", "model", "precision", "method", "distill", "engine", "status"):
        values = sorted(table[col].dropna().unique())
        chosen = st.sidebar.multiselect(col, values, key=f"filter_{col}")
        if chosen:
            f = f[f[col].isin(chosen)]
    st.sidebar.caption(
        f"{len(f)} of {len(table)} cells"
        + (f" on {f['host_id'].nunique()} host(s)" if table["host_id"].nunique() > 1 else "")
    )

    tabs = st.tabs(["Cells", "Pareto", "Cell detail", "Compare", "Advisor"])
    with tabs[0]:
        st.dataframe(f, hide_index=True, width="stretch")
        st.download_button("Download CSV", f.to_csv(index=False).encode(), "dqbench-cells.csv", "text/csv")
        bad = f[f["status"].isin(["failed", "infeasible"])]
        if not bad.empty:
            st.subheader("Failed and infeasible cells")
            st.dataframe(
                bad[["cell_id", "host_label", "model", "precision", "method", "distill", "status", "reason"]],
                hide_index=True,
                width="stretch",
            )

    with tabs[1]:
        done = f[f["status"] == "done"].copy()
        done["drop_pct"] = done["drop"] * 100
        if done.empty:
            st.info("No finished cells match the filters.")
        for x, label, lower in PARETO_VIEWS:
            d = done.dropna(subset=[x, "drop_pct"])
            if d.empty:
                continue
            d["frontier"] = pareto_mask(d[x], d["drop_pct"], x_lower=lower, y_lower=True)
            base = alt.Chart(d).encode(x=alt.X(x, title=label), y=alt.Y("drop_pct", title="quality drop (% rel.)"))
            pts = base.mark_point(filled=True, size=80).encode(
                color="method",
                shape="distill",
                tooltip=[
                    "cell_id",
                    "host_label",
                    "model",
                    "precision",
                    "method",
                    "distill",
                    "engine",
                    x,
                    "drop_pct",
                    "kld_mean",
                    "top1_agreement",
                ],
            )
            front = base.transform_filter(alt.datum.frontier).mark_line(color="gray", strokeDash=[4, 3])
            st.altair_chart((pts + front).properties(title=f"quality drop vs {label}", height=320), width="stretch")
            if d["engine"].nunique() > 1:  # perf on different engines: label it, do not let it pass unnoticed
                st.caption(
                    f"engines in this view: {', '.join(sorted(d['engine'].unique()))} (hover a point for its "
                    "engine); throughput and memory compare serving stacks, not only the weights"
                )

    with tabs[2]:
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
                    conc = d["perf"][d["perf"]["profile"] != "poisson"]
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

    with tabs[3]:
        ids = st.multiselect(
            "cells to compare", list(f["key"]), format_func=lambda i: _label(table, i), key="compare_cells"
        )
        if len(ids) >= 2:
            st.dataframe(compare(table, ids).astype(str), width="stretch")
        else:
            st.caption("Pick two or more cells.")

    with tabs[4]:
        advisor_panel(t)


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
    return f"{r['model']} {r['precision']}/{r['method']}/{r['distill']} on {r['host_label']} [{key}]"


def advisor_panel(t: dict[str, pd.DataFrame]) -> None:
    c1, c2, c3 = st.columns(3)
    vram = c1.number_input("VRAM (GiB)", min_value=0.1, value=24.0, key="adv_vram")
    drop = c2.text_input("max drop (2% or 1.5pt)", "2%", key="adv_drop")
    objective = c3.selectbox("objective", ["throughput", "latency", "memory", "quality"], key="adv_obj")
    ctx = c1.number_input("context length", min_value=1, value=4096, key="adv_ctx")
    conc = c2.number_input("concurrency", min_value=1, value=1, key="adv_conc")
    if not st.button("Recommend", key="adv_go"):
        return
    try:
        c = Constraints(
            vram_gib=vram,
            max_drop=parse_max_drop(drop),
            objective=objective,
            context_len=int(ctx),
            concurrency=int(conc),
        )
        # the sidebar's host filter applies here too: advice from the hosts shown
        shown = st.session_state.get("filter_host") or list(t["cells"]["host_id"].unique())
        cells, quality, perf = (d[d["host_id"].isin(shown)] for d in (t["cells"], t["quality"], t["perf"]))
        frame = build_frame(cells, quality, perf, None, None, int(conc))
        if frame.empty:
            raise NoResultsError("no finished cells yet")
    except (AdvisorInputError, NoResultsError) as exc:
        st.error(str(exc))
        return
    out = to_json(recommend(frame, c))
    if out["ok"]:
        st.success(out["decision"])
        st.dataframe(pd.DataFrame(out["recommendations"]), hide_index=True, width="stretch")
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
