"""Per-cell result JSON: the source of truth. One file per cell id under results/cells/, written
atomically (tmp + fsync + rename) so a crash or Ctrl-C never leaves a half file that reads as done.

Shape (schema_version 1): cell_id, matrix, label, status (done|failed), reason, failed_stage, log_tail,
plan (the CellPlan), model (fingerprint), artefact, serve, perf, memory, quality, environment,
timings, started_at, finished_at, logs. Bump SCHEMA_VERSION on a breaking change, keep a fixture of
the old version in tests/fixtures/, and teach `upgrade()` to read it.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.proc import write_json_atomic

SCHEMA_VERSION = 1


def upgrade(doc: dict) -> dict:
    """Bring an older result to the current schema (no older versions exist yet)."""
    v = doc.get("schema_version")
    if v == SCHEMA_VERSION:
        return doc
    raise ValueError(f"result schema_version {v!r} is not readable by this dqbench (reads {SCHEMA_VERSION})")


class ResultStore:
    def __init__(self, results_dir: Path) -> None:
        self.root = Path(results_dir)
        self.cells_dir = self.root / "cells"

    def path(self, cell_id: str) -> Path:
        return self.cells_dir / f"{cell_id}.json"

    def logs_dir(self, cell_id: str) -> Path:
        return self.root / "logs" / cell_id

    def work_dir(self, cell_id: str) -> Path:
        return self.root / "work" / cell_id

    def write(self, doc: dict) -> Path:
        doc = {"schema_version": SCHEMA_VERSION, **doc}
        p = self.path(doc["cell_id"])
        write_json_atomic(p, doc)
        return p

    def read(self, cell_id: str) -> dict | None:
        p = self.path(cell_id)
        if not p.is_file():
            return None
        try:
            return upgrade(json.loads(p.read_text()))
        except (json.JSONDecodeError, ValueError):
            return None  # unreadable: treated as not done, re-run rather than trusted

    def status(self, cell_id: str) -> str | None:
        doc = self.read(cell_id)
        return doc.get("status") if doc else None

    def all(self) -> list[dict]:
        out = []
        for p in sorted(self.cells_dir.glob("*.json")):
            try:
                out.append(upgrade(json.loads(p.read_text())))
            except (json.JSONDecodeError, ValueError):
                continue
        return out


def flat_metrics(doc: dict | None) -> dict:
    """The flat metrics object of `harness status --json` (and the DuckDB `cells` columns)."""
    if not doc:
        return {}
    head = (doc.get("perf") or {}).get("headline") or {}
    art = doc.get("artefact") or {}
    quality = {}
    for task, t in ((doc.get("quality") or {}).get("tasks") or {}).items():
        quality[task] = {m: v.get("value") for m, v in t.get("metrics", {}).items()}
    size = art.get("size_bytes")
    shift = doc.get("shift") or {}
    sm = shift.get("metrics") or {}
    agg = (shift.get("flips") or {}).get("aggregate") or {}
    ci = agg.get("drop_ci95") or [None, None]
    dist = doc.get("distill") or {}
    rec = dist.get("record") or {}
    curve = rec.get("loss_curve") or []
    ref_cost = (dist.get("cost") or {}).get("reference") or {}
    return {
        "teacher_id": dist.get("teacher_id"), "distill_kind": dist.get("kind"), "student_key": dist.get("student_key"),
        "train_tokens": rec.get("tokens_seen"), "train_s": rec.get("train_s"),
        "train_loss_final": curve[-1]["loss"] if curve else None,
        "heldout_ce": (rec.get("heldout_after") or {}).get("ce"),
        "ref_gpu_hours": ref_cost.get("gpu_hours"), "ref_usd": ref_cost.get("usd"),
        **{k: sm.get(k) for k in ("kld_mean", "kld_p99", "top1_agreement", "dp_rms", "ppl_ratio")},
        "paired_drop": agg.get("drop_abs"), "paired_drop_ci_lo": ci[0], "paired_drop_ci_hi": ci[1],
        "compress_s": (art.get("record") or {}).get("wall_s"),
        **{k: head.get(k) for k in ("ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "itl_ms_p50",
                                    "itl_ms_p99", "e2e_ms_p50", "e2e_ms_p99", "output_tok_s", "req_s",
                                    "top_concurrency", "failed_requests")},
        "peak_mem_gib": (doc.get("memory") or {}).get("peak_gib"),
        "size_gib": size / 2**30 if size else None,
        "bits_per_weight": art.get("bits_per_weight"),
        "startup_s": (doc.get("serve") or {}).get("startup_s"),
        "quality": quality,
    }
