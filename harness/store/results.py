"""Per-(cell, host) result JSON: the source of truth. One file per cell id and host id under
results/cells/ (`<cell_id>@<host_id>.json`, one flat folder so `cells/*.json` finds every result),
written atomically (tmp + fsync + rename) so a crash or Ctrl-C never leaves a half file that reads as done.

Why the host is in the key: the cell id hashes the cell's config only, and the same config measured on
another machine is another data point. Quality is not reused across hosts either: kernels and emulated
bf16 differ by ISA, so scores can differ in the last digits; re-running on each host is the honest default.

A failed attempt never replaces a `done` result of the same (cell, host): it is kept beside it under
results/attempts/<cell_id>@<host_id>-<UTC time>.json, and the done result stays the cell's result.

Shape (schema_version 2): cell_id, matrix, label, status (done|failed), reason, failed_stage, log_tail,
plan (the CellPlan), host (harness/hw HostCaps.host_block(): host_id, label, fingerprint, source,
reference_dtype), model (fingerprint), artefact, serve, perf, memory, quality, environment, timings,
started_at, finished_at, logs. Schema 1 had no `host` and lived at cells/<cell_id>.json; `upgrade()` reads
it with the `unknown` host (harness/store/hosts.py). Bump SCHEMA_VERSION on a breaking change, keep a
fixture of the old version in tests/fixtures/, and teach `upgrade()` to read it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from harness.proc import write_json_atomic
from harness.store.hosts import UNKNOWN_HOST_ID, legacy_host_block, normalized_host

SCHEMA_VERSION = 2  # 2: results carry `host` and are keyed by (cell_id, host_id)


def upgrade(doc: dict) -> dict:
    """Bring an older result to the current schema."""
    v = doc.get("schema_version")
    if v == 1:  # before host fingerprints: which machine measured it was not recorded
        doc = {**doc, "schema_version": SCHEMA_VERSION, "host": legacy_host_block(), "upgraded_from": 1}
        v = SCHEMA_VERSION
    if v == SCHEMA_VERSION:
        return doc
    raise ValueError(
        f"result schema_version {v!r} is not readable by this dqbench (reads 1 and {SCHEMA_VERSION}); "
        f"update dqbench or move the file out of results/cells/"
    )


def _load(p: Path) -> dict | None:
    try:
        return upgrade(json.loads(p.read_text()))
    except (OSError, json.JSONDecodeError, ValueError):
        return None  # unreadable: treated as not done, re-run rather than trusted


class ResultStore:
    def __init__(self, results_dir: Path) -> None:
        self.root = Path(results_dir)
        self.cells_dir = self.root / "cells"
        self.attempts_dir = self.root / "attempts"

    def path(self, cell_id: str, host_id: str) -> Path:
        return self.cells_dir / f"{cell_id}@{host_id}.json"

    def legacy_path(self, cell_id: str) -> Path:
        """Where a schema-1 result (no host) lives."""
        return self.cells_dir / f"{cell_id}.json"

    def logs_dir(self, cell_id: str) -> Path:
        return self.root / "logs" / cell_id

    def work_dir(self, cell_id: str) -> Path:
        return self.root / "work" / cell_id

    def write(self, doc: dict) -> Path:
        """Store a result under (doc["cell_id"], doc["host"]["host_id"]); returns where it went: the cell's
        result path, or an attempts/ path when a not-done doc would have replaced a done one."""
        doc = {"schema_version": SCHEMA_VERSION, **doc}
        doc["host"] = normalized_host(doc)
        cell_id, host_id = doc["cell_id"], doc["host"]["host_id"]
        p = self.path(cell_id, host_id)
        # a failure never replaces a done result, nor a file this dqbench cannot read (a newer schema, a
        # damaged file): it goes beside it, and what was there stays for a person to look at
        unreadable = p.is_file() and _load(p) is None
        if doc.get("status") != "done" and (unreadable or self.status(cell_id, host_id) == "done"):
            a = self._attempt_path(cell_id, host_id)
            write_json_atomic(a, {**doc, "kept_result": str(p)})
            return a
        write_json_atomic(p, doc)
        return p

    def _attempt_path(self, cell_id: str, host_id: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        p = self.attempts_dir / f"{cell_id}@{host_id}-{stamp}.json"
        n = 2
        while p.exists():  # two failures within a second
            p = self.attempts_dir / f"{cell_id}@{host_id}-{stamp}-{n}.json"
            n += 1
        return p

    def attempts(self, cell_id: str, host_id: str) -> list[Path]:
        """Failed attempts kept beside a done result, oldest first."""
        return sorted(self.attempts_dir.glob(f"{cell_id}@{host_id}-*.json"))

    def read(self, cell_id: str, host_id: str) -> dict | None:
        """This cell's result on this host (None if absent or unreadable)."""
        p = self.path(cell_id, host_id)
        if not p.is_file() and host_id == UNKNOWN_HOST_ID:
            p = self.legacy_path(cell_id)
        return _load(p) if p.is_file() else None

    def status(self, cell_id: str, host_id: str) -> str | None:
        doc = self.read(cell_id, host_id)
        return doc.get("status") if doc else None

    def hosts_of(self, cell_id: str) -> dict[str, dict]:
        """host_id -> result, for every host that has a result of this cell."""
        out = {}
        for p in sorted([*self.cells_dir.glob(f"{cell_id}@*.json"), self.legacy_path(cell_id)]):
            doc = _load(p) if p.is_file() else None
            if doc is not None and doc.get("cell_id") == cell_id:
                out.setdefault(doc["host"]["host_id"], doc)
        return out

    def all(self) -> list[dict]:
        """Every host's results (schema 1 files included, upgraded)."""
        return [d for d in (_load(p) for p in sorted(self.cells_dir.glob("*.json"))) if d is not None]


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
        "teacher_id": dist.get("teacher_id"),
        "distill_kind": dist.get("kind"),
        "student_key": dist.get("student_key"),
        "train_tokens": rec.get("tokens_seen"),
        "train_s": rec.get("train_s"),
        "train_loss_final": curve[-1]["loss"] if curve else None,
        "heldout_ce": (rec.get("heldout_after") or {}).get("ce"),
        "ref_gpu_hours": ref_cost.get("gpu_hours"),
        "ref_usd": ref_cost.get("usd"),
        **{k: sm.get(k) for k in ("kld_mean", "kld_p99", "top1_agreement", "dp_rms", "ppl_ratio")},
        "paired_drop": agg.get("drop_abs"),
        "paired_drop_ci_lo": ci[0],
        "paired_drop_ci_hi": ci[1],
        "compress_s": (art.get("record") or {}).get("wall_s"),
        **{
            k: head.get(k)
            for k in (
                "ttft_ms_p50",
                "ttft_ms_p99",
                "tpot_ms_p50",
                "tpot_ms_p99",
                "itl_ms_p50",
                "itl_ms_p99",
                "e2e_ms_p50",
                "e2e_ms_p99",
                "output_tok_s",
                "req_s",
                "top_concurrency",
                "failed_requests",
            )
        },
        "peak_mem_gib": (doc.get("memory") or {}).get("peak_gib"),
        # measured device memory of the serving process (harness/measure; absent on CPU and in older results)
        "gpu_peak_gib": (doc.get("memory") or {}).get("gpu_peak_gib"),
        "size_gib": size / 2**30 if size else None,
        "bits_per_weight": art.get("bits_per_weight"),
        "startup_s": (doc.get("serve") or {}).get("startup_s"),
        "quality": quality,
    }
