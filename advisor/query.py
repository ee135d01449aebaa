"""Read the results index (read-only) into one frame: a row per finished cell, with its quality on the
chosen measure and its family reference's, and its throughput at the requested concurrency.

Quality measure: `--task T --metric M`, or the default aggregate AGGREGATE: the mean of each task's
primary accuracy over the tasks both the cell and its reference were scored on. The reference of a
cell is the root of its lineage (quantized -> its uncompressed parent; student -> its teacher).

Rows are per (cell_id, host_id): the same cell measured on two hosts is two rows, and a cell is only
compared with its reference measured on the SAME host (figures and even scores differ by ISA and GPU).
An index written before host fingerprints has no host_id: its rows read as host `unknown`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.plan.lineage import reference_ids  # the one definition of a cell's reference
from harness.result_facts import primary_metric  # the one definition of a task's headline accuracy
from harness.spec.metrics import LOWER_IS_BETTER  # constants only

if TYPE_CHECKING:
    from advisor.slo import AskedSLO


class NoResultsError(RuntimeError):
    exit_code = 3


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


UNKNOWN_HOST = "unknown"  # harness.store.hosts.UNKNOWN_HOST_ID, without importing the store


def with_host(df: pd.DataFrame, label: bool = False) -> pd.DataFrame:
    """`df` with a host_id column (and host_label, when `label`): `unknown` where the index predates hosts."""
    df = df.copy()
    if "host_id" not in df:
        df["host_id"] = UNKNOWN_HOST
    df["host_id"] = df["host_id"].fillna(UNKNOWN_HOST).astype(object)
    if label or "host_label" in df:
        df["host_label"] = (
            df["host_label"].where(df["host_label"].notna(), df["host_id"]) if "host_label" in df else df["host_id"]
        )
    return df


def read_tables(db_path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(cells, quality, perf). Every way the index can be unreadable (missing, held by another process's
    write connection, not a DuckDB file, damaged) is one NoResultsError naming the path and the fix."""
    if not Path(db_path).is_file():
        raise NoResultsError(
            f"no results database at {db_path}; run `./dq run` (or `harness run MATRIX`) first, or point --db at one"
        )
    from harness.store.db import IndexUnavailable, reading  # duckdb only; waits a little for a writer

    try:
        with reading(Path(db_path)) as con:
            cells = con.execute("SELECT * EXCLUDE (result_json) FROM cells").df()
            quality = con.execute("SELECT * FROM quality").df()
            perf = con.execute("SELECT * FROM perf").df()
    except IndexUnavailable as exc:
        raise NoResultsError(str(exc)) from None
    return with_host(cells, label=True), with_host(quality), with_host(perf)


def quality_frame(quality: pd.DataFrame, task: str | None, metric: str | None) -> pd.DataFrame:
    """Per (cell, task): value and stderr of the measure's metric, and the items scored (`n`) and available
    (`n_total`), NaN where the index has no count."""
    if task is None:
        sel = quality[quality["task"].map(primary_metric).eq(quality["metric"])]
    else:
        sel = quality[(quality["task"] == task) & (quality["metric"] == metric)]
    sel = with_host(sel)
    for col in ("n", "n_total"):
        sel[col] = sel[col].astype(float) if col in sel else np.nan
    return sel[["cell_id", "host_id", "task", "value", "stderr", "n", "n_total", "task_hash", "lm_eval_version"]]


def build_frame(
    cells: pd.DataFrame,
    quality: pd.DataFrame,
    perf: pd.DataFrame,
    task: str | None,
    metric: str | None,
    concurrency: int,
    slo: AskedSLO | None = None,
) -> pd.DataFrame:
    """One row per done (cell, host) with q, q_se, q_ref, q_ref_se, n_tasks and the comparability facts;
    the reference is the root cell's result on the same host. `se_known`: every task has a stderr on both
    sides (else the stderr interval is not an interval); `n_items`: items scored on both sides, summed over
    the tasks; `items_left`: items the tasks have that the cell did not score (NaN where not recorded). With an
    `slo`, the best level at it (advisor/slo.best_at_slo: slo_goodput, slo_attainment, slo_level, slo_rule,
    slo_text; a cell without load levels gets no figure, so it cannot be shown to meet it)."""
    cells, quality, perf = with_host(cells, label=True), with_host(quality), with_host(perf)
    key = ["cell_id", "host_id"]
    parents = dict(zip(cells["cell_id"], cells["parent_id"], strict=True))
    cells["root_id"] = cells["cell_id"].map(reference_ids(cells["cell_id"], parents))
    done = cells[cells["status"] == "done"].copy()
    q = quality_frame(quality, task, metric)
    ref = done[["cell_id", "host_id", "root_id"]].merge(q, on=key)
    ref = ref.merge(
        q.rename(
            columns={
                "cell_id": "root_id",
                "value": "ref_value",
                "stderr": "ref_stderr",
                "n": "ref_n",
                "n_total": "ref_n_total",
                "task_hash": "ref_task_hash",
                "lm_eval_version": "ref_lm_eval",
            }
        ),
        on=["root_id", "host_id", "task"],
        how="inner",
    )  # only tasks both were scored on, same host
    ref["var"] = ref["stderr"].fillna(0) ** 2
    ref["ref_var"] = ref["ref_stderr"].fillna(0) ** 2
    ref["se_known"] = ref["stderr"].notna() & ref["ref_stderr"].notna()
    ref["n_both"] = np.fmin(ref["n"], ref["ref_n"])  # a paired comparison uses the items both scored
    ref["left"] = ref["n_total"] - ref["n_both"]
    ref["same_task"] = ref["task_hash"] == ref["ref_task_hash"]
    ref["same_lm_eval"] = ref["lm_eval_version"] == ref["ref_lm_eval"]
    g = ref.groupby(key).agg(
        q=("value", "mean"),
        q_ref=("ref_value", "mean"),
        var=("var", "sum"),
        ref_var=("ref_var", "sum"),
        n_tasks=("task", "count"),
        se_known=("se_known", "all"),
        n_items=("n_both", lambda s: s.sum() if s.notna().all() else np.nan),
        items_left=("left", lambda s: s.sum() if s.notna().all() else np.nan),
        same_task=("same_task", "all"),
        same_lm_eval=("same_lm_eval", "all"),
    )
    # stderr of a mean of k independent task scores: sqrt(sum var) / k
    g["q_se"] = np.sqrt(g["var"]) / g["n_tasks"]
    g["q_ref_se"] = np.sqrt(g["ref_var"]) / g["n_tasks"]
    frame = done.merge(g.drop(columns=["var", "ref_var"]).reset_index(), on=key, how="left")
    engines = dict(zip(cells["cell_id"], cells["engine"]))  # the engine is part of the cell's config
    frame["ref_engine"] = frame["root_id"].map(engines)
    frame["same_engine"] = frame["engine"] == frame["ref_engine"]
    # throughput at the measured concurrency closest to (not above, when possible) the requested one
    conc = perf[perf["profile"].isin(["concurrency", "synchronous"])].copy() if len(perf) else perf
    if len(conc):
        conc["dist"] = np.where(
            conc["level"] <= concurrency, concurrency - conc["level"], 1e6 + conc["level"] - concurrency
        )
        best = conc.sort_values([*key, "dist"]).groupby(key).head(1)
        # that level's req/s and energy too (cost per correct answer, advisor/cost.py); NaN in an older index
        level_cols = {
            "req_s": "level_req_s",
            "j_per_request": "level_j_per_request",
            "j_per_token": "level_j_per_token",
        }
        for col in level_cols:
            if col not in best:
                best[col] = np.nan
        best = best.rename(
            columns={
                "level": "tok_s_level",
                "output_tok_s": "tok_s",
                "ttft_ms_p50": "ttft_p50_at",
                "ttft_ms_p99": "ttft_p99_at",
                **level_cols,
            }
        )
        frame = frame.merge(
            best[[*key, "tok_s_level", "tok_s", "ttft_p50_at", "ttft_p99_at", *level_cols.values()]], on=key, how="left"
        )
    else:
        frame["tok_s_level"] = frame["tok_s"] = np.nan
        frame["level_req_s"] = frame["level_j_per_request"] = frame["level_j_per_token"] = np.nan
    if slo is not None:
        from advisor.slo import best_at_slo

        frame = frame.merge(best_at_slo(perf, slo), on=key, how="left")
    return frame


def hosts_in(cells: pd.DataFrame) -> dict[str, str]:
    """host_id -> label of the hosts that have rows."""
    cells = with_host(cells, label=True)
    return dict(zip(cells["host_id"], cells["host_label"]))


def load_frame(
    db_path: Path,
    task: str | None,
    metric: str | None,
    concurrency: int,
    model: str | None = None,
    host: str | None = None,
    slo: AskedSLO | None = None,
    tasks: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """The frame for `recommend`; `host` keeps one host's rows (None: every host's); `tasks` keeps the default
    aggregate to those tasks (`--tasks`, a matrix's `decide.measure.tasks`)."""
    cells, quality, perf = read_tables(db_path)
    if tasks:
        missing = sorted(set(tasks) - set(quality["task"]))
        if missing:
            raise NoResultsError(f"--tasks: {', '.join(missing)} not measured in these results")
        quality = quality[quality["task"].isin(tasks)]
    if host is not None:
        known = hosts_in(cells)
        if host not in known:
            have = "; ".join(f"{h} ({lbl})" for h, lbl in sorted(known.items())) or "none"
            raise NoResultsError(
                f"--host {host}: no results from that host in {db_path} (hosts: {have}); pass "
                f"--host ID for one of them or --host all"
            )
        cells = cells[cells["host_id"] == host]
    if model is not None:
        models = sorted(cells["model"].unique())
        if model not in models:
            raise NoResultsError(
                f"--model {model!r}: no cells of that model in the results (have: {', '.join(models) or 'none'})"
            )
        cells = cells[cells["model"] == model]
    if task is not None and not ((quality["task"] == task) & (quality["metric"] == metric)).any():
        measured = sorted({f"{t}/{m}" for t, m in zip(quality["task"], quality["metric"])})
        raise NoResultsError(
            f"--task {task} --metric {metric}: not measured in these results (have: {', '.join(measured) or 'none'})"
        )
    frame = build_frame(cells, quality, perf, task, metric, concurrency, slo)
    if frame.empty:
        raise NoResultsError("no finished cells in the results yet; run a matrix first")
    return frame
