"""The DuckDB index's tables and columns, and bringing an index written by an older dqbench up to date.

Tables: cells (one row per planned cell and host: identity, status, and every flat figure of its result,
whose names and types come from harness/result_facts.FIGURES, so no figure is named twice), perf (one row
per load level), quality (task x metric), flips (task x metric vs the reference), items (one row per
scored item: the drill-down of flips), hosts (one row per host id), sensitivity (per-layer scans), meta
(schema version), and the view `curves` (one row per level with the cell's identity: the latency-
throughput and per-user/per-system curves, CURVE_FIGURES). Every per-cell table is keyed by (cell_id, host_id).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from harness.result import SCHEMA_VERSION
from harness.result_facts import FIGURES
from harness.store.hosts import UNKNOWN_HOST_ID, UNKNOWN_LABEL

_DUCK = {float: "DOUBLE", int: "BIGINT", str: "VARCHAR", bool: "BOOLEAN"}
# name -> type of the roofline's flat figures in `cells` (harness/store/rows.roofline_figures fills them)
ROOFLINE_FIGURES: dict[str, type] = {
    "roofline_bandwidth_gb_s": float,
    "roofline_peak_tflops": float,
    "roofline_compute_dtype": str,
    "roofline_tok_s_c1": float,  # decode limit at concurrency 1
    "roofline_pct_c1": float,  # the c1 level's output tok/s as a % of it
    "regime_c1": str,
    "roofline_tok_s_top": float,  # at the highest concurrency measured
    "roofline_pct_top": float,
    "regime_top": str,
    "roofline_tok_s_prefill": float,
    "roofline_pct_prefill": float,
    "regime_prefill": str,
}

# name -> type of a cell's speculative-decoding, energy and price figures (issue #28; rows.speculative_figures
# fills them): the draft and its target are known from the plan, the rest from the result
SPEC_FIGURES: dict[str, type] = {
    "draft": str,  # the draft's name (axes.draft); NULL: no draft
    "draft_target_id": str,  # the target cell the draft speeds up
    "spec_tokens": int,  # speculative tokens per step (gamma)
    "draft_model": str,  # what was served as the draft (a .gguf file or a checkpoint folder)
    "spec_alpha": float,  # the draft's measured top-1 agreement the prediction used
    "spec_predicted_len": float,  # mean accepted length predicted before running (Leviathan et al. 2023)
    "spec_acceptance": float,  # accepted / drafted tokens over every level
    "spec_accepted_len": float,  # 1 + accepted / drafts over every level (measured)
    "spec_speedup_c1": float,  # output tok/s over the target's, at concurrency 1
    "spec_speedup_top": float,  # at the highest concurrency
    "spec_equal_output": str,  # equal | differs | unchecked
    "energy_counter": str,  # rapl:... | nvml:... ; NULL with energy_note saying why
    "energy_note": str,
    "price_per_hour": float,  # the matrix's hardware.price_per_hour ($/h of the host)
}

CELL_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "host_label": "VARCHAR",
    "matrix": "VARCHAR",
    "model": "VARCHAR",
    "precision": "VARCHAR",
    "method": "VARCHAR",
    "method_kind": "VARCHAR",
    "distill": "VARCHAR",
    "kv_cache": "VARCHAR",  # axes.kv_cache: auto (the engine's default) or the KV-cache precision
    "engine": "VARCHAR",
    "device": "VARCHAR",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "parent_id": "VARCHAR",
    "est_mem_gib": "DOUBLE",
    "est_weights_gib": "DOUBLE",
    "est_kv_gib": "DOUBLE",
    "params": "BIGINT",
    "kv_bytes_per_token": "DOUBLE",
    "lm_eval_version": "VARCHAR",
    "git_sha": "VARCHAR",
    "schema_version": "INTEGER",
    "artefact_model": "VARCHAR",
    "finished_at": "VARCHAR",
    "wall_s": "DOUBLE",
    "scored_by": "VARCHAR",
    "result_json": "VARCHAR",
    # the result's flat figures (headline, memory, size, shift and paired drop vs the reference, a student's
    # lineage and training): harness/result_facts.figures()
    **{name: _DUCK[t] for name, t in FIGURES.items()},
    # the cell's roofline on its host (harness/result.Roofline): limits, % of limit, regime (rows.roofline_figures)
    **{name: _DUCK[t] for name, t in ROOFLINE_FIGURES.items()},
    # speculative decoding, energy and price (issue #28)
    **{name: _DUCK[t] for name, t in SPEC_FIGURES.items()},
}
# the sequential evaluation's answer to the matrix's `decide:` question (harness/result.Decision); NULL without one
DECISION_COLS = {
    "decision_measure": "VARCHAR",
    "decision_relative": "BOOLEAN",
    "decision_limit": "DOUBLE",
    "decision_error_rate": "DOUBLE",
    "decision_reference": "VARCHAR",
    "decision_verdict": "VARCHAR",
    "decision_stop": "VARCHAR",
    "decision_stop_reason": "VARCHAR",
    "decision_items": "INTEGER",
    "decision_point": "DOUBLE",
    "decision_lo": "DOUBLE",
    "decision_hi": "DOUBLE",
    "decision_more_items": "INTEGER",
    "decision_scored": "INTEGER",
}
CELL_COLS |= DECISION_COLS
FLIP_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "ref_id": "VARCHAR",
    "task": "VARCHAR",
    "metric": "VARCHAR",
    "n": "INTEGER",
    "ref_correct_cell_wrong": "INTEGER",
    "ref_wrong_cell_correct": "INTEGER",
    "flip_rate": "DOUBLE",
    "drop_abs": "DOUBLE",
    "drop_rel": "DOUBLE",
    "drop_ci_lo": "DOUBLE",
    "drop_ci_hi": "DOUBLE",
    "ci": "VARCHAR",
}
ITEM_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "task": "VARCHAR",
    "doc_id": "INTEGER",
    "metric": "VARCHAR",
    "value": "DOUBLE",
    "subtask": "VARCHAR",  # a group's member (`mmlu_anatomy` in `mmlu`): doc ids repeat across members
}
LATENCIES = ("ttft", "tpot", "itl", "e2e")
PERCENTILES = ("mean", "p50", "p90", "p99")
PERF_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "profile": "VARCHAR",
    "level": "DOUBLE",
    "requests": "INTEGER",
    "completed": "INTEGER",
    "failed": "INTEGER",
    "duration_s": "DOUBLE",
    "req_s": "DOUBLE",
    "output_tok_s": "DOUBLE",
    "input_tok_s": "DOUBLE",
    **{f"{m}_ms_{s}": "DOUBLE" for m in LATENCIES for s in PERCENTILES},
    # goodput under the plan's load.slo, the steady window, repeats (harness/result.Level); NULL when absent
    "goodput_req_s": "DOUBLE",
    "slo_attainment": "DOUBLE",
    "slo_met": "BOOLEAN",
    "steady_req_s": "DOUBLE",
    "steady_output_tok_s": "DOUBLE",
    "steady_goodput_req_s": "DOUBLE",
    **{f"steady_{m}_ms_p50": "DOUBLE" for m in ("ttft", "tpot", "e2e")},
    **{f"steady_{m}_ms_p99": "DOUBLE" for m in ("ttft", "tpot", "e2e")},
    "steady_requests": "INTEGER",  # requests wholly inside the steady window (its latency sample)
    # which window stands for the level (harness/result_facts.level_window): 'steady' or 'level'
    "window_kind": "VARCHAR",
    "user_tok_s": "DOUBLE",  # per-user tokens/s of that window: 1000 / TPOT p50 (result_facts.user_tok_s)
    # the SLO the level's goodput was judged against (the plan's load.slo); NULL without one
    "slo_ttft_ms": "DOUBLE",
    "slo_tpot_ms": "DOUBLE",
    "slo_e2e_ms": "DOUBLE",
    "slo_percentile": "DOUBLE",
    "repeats": "INTEGER",
    "output_tok_s_ci95_low": "DOUBLE",
    "output_tok_s_ci95_high": "DOUBLE",
    "output_tok_s_cv": "DOUBLE",
    "e2e_ms_p50_cv": "DOUBLE",
    "noisy": "BOOLEAN",
    # the level against its roofline (harness/result.RooflineLevel); NULL for rate levels and older results
    "roofline_tok_s": "DOUBLE",
    "roofline_pct": "DOUBLE",
    "regime": "VARCHAR",
    # the host's energy counter over the level (harness/result.LevelEnergy); NULL where not measurable
    "energy_j": "DOUBLE",
    "j_per_token": "DOUBLE",
    "tok_per_j": "DOUBLE",
    "j_per_request": "DOUBLE",
    "watts": "DOUBLE",
    # a spec-decoded cell's draft counters over the level (harness/result.LevelSpeculative)
    "spec_acceptance": "DOUBLE",
    "spec_accepted_len": "DOUBLE",
    "spec_target_tok_s": "DOUBLE",
    "spec_speedup": "DOUBLE",
}
QUALITY_COLS = {
    "cell_id": "VARCHAR",
    "host_id": "VARCHAR",
    "task": "VARCHAR",
    "metric": "VARCHAR",
    "value": "DOUBLE",
    "stderr": "DOUBLE",
    "n": "INTEGER",
    "n_total": "INTEGER",
    "limit_items": "INTEGER",
    "num_fewshot": "INTEGER",
    "task_hash": "VARCHAR",
    "lm_eval_version": "VARCHAR",
    "data_source": "VARCHAR",  # local:<package> (offline, packaged data) or hub
}
# the mixed-precision helper's per-layer scans (harness/plan/sensitivity.py): keyed by scan, not by cell
SENS_COLS = {
    "scan_id": "VARCHAR",
    "model": "VARCHAR",
    "method": "VARCHAR",
    "precision": "VARCHAR",
    "layer": "INTEGER",
    "params": "BIGINT",
    "kld_mean": "DOUBLE",
    "top1_agreement": "DOUBLE",
    "ppl_ratio": "DOUBLE",
    "rank": "INTEGER",
}
TABLES = {"cells": CELL_COLS, "perf": PERF_COLS, "quality": QUALITY_COLS, "flips": FLIP_COLS, "items": ITEM_COLS}
# one row per host id; first_seen/last_seen are the earliest/latest finished_at of its results (not the
# ingest time), so `harness db rebuild` reproduces the table from the JSONs
HOST_COLS = {
    "host_id": "VARCHAR PRIMARY KEY",
    "label": "VARCHAR",
    "fingerprint": "VARCHAR",
    "source": "VARCHAR",
    "reference_dtype": "VARCHAR",
    "first_seen": "VARCHAR",
    "last_seen": "VARCHAR",
}


# One row per (cell, host, level): the curves the dashboard draws and a user picks a serving point from
# (latency vs system throughput, per-user vs per-system tokens/s). Each figure is over the level's steady
# window where `window_kind` = 'steady' (enough requests inside it: harness/result_facts.level_window), else
# over the whole level; p90s and ITL exist for the whole level only. The perf column each figure reads
# (its steady twin where the window is steady); NULL where an older index lacks the column.
CURVE_FIGURES = {
    "req_s": ("req_s", "steady_req_s"),
    "system_tok_s": ("output_tok_s", "steady_output_tok_s"),
    "user_tok_s": ("user_tok_s", None),  # rows.py already reads it from the chosen window
    "goodput_req_s": ("goodput_req_s", "steady_goodput_req_s"),
    **{f"{m}_ms_{s}": (f"{m}_ms_{s}", f"steady_{m}_ms_{s}") for m in ("ttft", "tpot", "e2e") for s in ("p50", "p99")},
}
CURVE_CELL_COLS = ("host_label", "matrix", "model", "precision", "method", "distill", "engine", "device", "status")
CURVE_LEVEL_COLS = (
    "profile",
    "level",
    "requests",
    "failed",
    "slo_attainment",
    "slo_met",
    "slo_ttft_ms",
    "slo_tpot_ms",
    "slo_e2e_ms",
    "slo_percentile",
    "noisy",
    "repeats",
    "output_tok_s_cv",
)


def curves_select(perf_cols: Collection[str], cell_cols: Collection[str]) -> str:
    """The `curves` query over an index with these perf and cells columns (an index written by an older
    dqbench lacks some: they read as NULL, and a level without `window_kind` reads as its whole level)."""

    def p(col: str | None) -> str:
        return f"p.{col}" if col in perf_cols else "NULL"

    steady = "p.window_kind = 'steady'" if "window_kind" in perf_cols else "false"
    figs = [
        f"CASE WHEN {steady} THEN {p(st)} ELSE {p(whole)} END AS {name}" if st else f"{p(whole)} AS {name}"
        for name, (whole, st) in CURVE_FIGURES.items()
    ]
    cells = [f"c.{c}" if c in cell_cols else f"NULL AS {c}" for c in CURVE_CELL_COLS]
    if "host_id" in perf_cols and "host_id" in cell_cols:
        host, on = "p.host_id", "c.cell_id = p.cell_id AND c.host_id = p.host_id"
    else:  # an index from before host fingerprints
        host, on = f"'{UNKNOWN_HOST_ID}' AS host_id", "c.cell_id = p.cell_id"
    return (
        f"SELECT p.cell_id, {host}, "
        + ", ".join(cells)
        + ", "
        + ", ".join(f"{p(c)} AS {c}" for c in CURVE_LEVEL_COLS)
        + f", coalesce({p('window_kind')}, 'level') AS window_kind, "
        + ", ".join(figs)
        + f" FROM perf p JOIN cells c ON {on}"
    )


def ensure_schema(con: Any) -> None:
    """Create the index's tables (or bring an index written by an older dqbench up to date)."""
    _drop_cell_primary_key(con)
    for name, cols in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(f'{k} {v}' for k, v in cols.items())})")
        # an index written by an older dqbench: add the columns it lacks (additive changes only)
        have = columns(con, name)
        for k, v in cols.items():
            if k not in have:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {k} {v.replace(' PRIMARY KEY', '')}")
                if k == "host_id":  # rows from before host fingerprints: the host was not recorded
                    con.execute(f"UPDATE {name} SET host_id = ?", [UNKNOWN_HOST_ID])
    con.execute(f"CREATE TABLE IF NOT EXISTS hosts ({', '.join(f'{k} {v}' for k, v in HOST_COLS.items())})")
    con.execute(f"CREATE TABLE IF NOT EXISTS sensitivity ({', '.join(f'{k} {v}' for k, v in SENS_COLS.items())})")
    con.execute(f"CREATE OR REPLACE VIEW curves AS {curves_select(PERF_COLS, CELL_COLS)}")
    con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def columns(con: Any, table: str) -> list[str]:
    """The table's column names, in order ([] when it does not exist)."""
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
        ).fetchall()
    ]


def _drop_cell_primary_key(con: Any) -> None:
    """Indexes before schema 2 keyed `cells` by cell_id alone (PRIMARY KEY), which forbids a second host's
    row. DuckDB cannot drop a constraint in place, so the table is copied into one without it."""
    pk = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'cells' AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()[0]
    if not pk:
        return
    have = columns(con, "cells")
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'cells'"
        ).fetchall()
    )
    extra = {c: types[c] for c in have if c not in CELL_COLS}  # a column this dqbench no longer writes: kept
    con.execute(f"CREATE TABLE cells_v2 ({', '.join(f'{k} {v}' for k, v in {**CELL_COLS, **extra}.items())})")
    con.execute(f"INSERT INTO cells_v2 ({', '.join(have)}) SELECT {', '.join(have)} FROM cells")
    if "host_id" not in have:
        con.execute("UPDATE cells_v2 SET host_id = ?, host_label = ?", [UNKNOWN_HOST_ID, UNKNOWN_LABEL])
        # rows with no result were only the old plan's: the next plan writes them again for its host, so
        # keeping them would show every pending cell twice
        con.execute("DELETE FROM cells_v2 WHERE result_json IS NULL AND status IN ('planned', 'infeasible')")
    con.execute("DROP TABLE cells")
    con.execute("ALTER TABLE cells_v2 RENAME TO cells")
