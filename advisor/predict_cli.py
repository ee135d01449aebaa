"""`advisor predict MODEL [--host H] [--schemes S ...] [--context-len N] [--concurrency C ...] [--json]`: memory,
speed and quality of cells not yet run, each a 90 % interval labelled *predicted*, the error the predictor has
had on the host's measured cells beside it, and measured figures where the cell was measured (harness/predict).

MODEL: a size (7B), a config.json or checkpoint folder, or a hub id known offline (meta-llama/Llama-3.1-8B-Instruct).
--host: this host (default), a preset (cuda-h100, cpu-avx512 ...), a GPU name (H100, L40S ...) or a host id.
Exit codes: 0 a table; 2 malformed input (one message: the flag, the value, the fix).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="advisor predict", description="Predict cells not yet run, with their error.")
    ap.add_argument("model", help="a size (7B), a config.json or checkpoint folder, or a hub id known offline")
    ap.add_argument("--host", help="this host (default), a preset, a GPU name (H100, L40S, RTX 4090 ...) or a host id")
    ap.add_argument("--schemes", nargs="+", help="w4a16-gptq, w8a8, fp8, gguf-q4_k_m, bf16 ... (default: by device)")
    ap.add_argument("--students", nargs="*", type=int, default=[], help="depth-pruned students: keep every N-th layer")
    ap.add_argument("--context-len", type=int, default=4096, help="tokens per sequence the KV cache holds")
    ap.add_argument("--concurrency", nargs="+", type=float, default=[1.0], help="sequences served at once")
    ap.add_argument("--input-tokens", type=int, help="prompt tokens (default: what this host's cells measured)")
    ap.add_argument("--output-tokens", type=int, help="output tokens (default: what this host's cells measured)")
    ap.add_argument("--db", help="results database (default: DQBENCH_DB or results/dqbench.duckdb)")
    ap.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str]) -> int:
    from harness.errors import DQError
    from harness.predict.context import (
        default_schemes,
        family_name,
        host_view,
        make_context,
        predict_grid,
        results_from_db,
    )
    from harness.predict.schemes import parse_scheme
    from harness.predict.target import resolve_target
    from harness.settings import load_settings

    a = _parser().parse_args(argv)
    settings = load_settings()
    db = Path(a.db) if a.db else settings.db_path
    try:
        for flag, v in (
            ("--context-len", a.context_len),
            ("--input-tokens", a.input_tokens),
            ("--output-tokens", a.output_tokens),
        ):
            if v is not None and v < 1:
                raise ValueError(f"{flag} {v}: give a positive number of tokens")
        bad = [c for c in a.concurrency if not (c >= 1 and math.isfinite(c))]
        if bad:
            raise ValueError(f"--concurrency {bad[0]}: give 1 or more sequences")
        if any(k < 2 for k in a.students):
            raise ValueError("--students: keep every N-th layer needs N >= 2")
        target = resolve_target(a.model)
        results = results_from_db(db)
        known = {r.host_id: str((r.host or {}).get("label")) for r in results}
        host = host_view(a.host, settings, known)
        ctx = make_context(host, results)
        caps = host.caps
        reference = caps.reference_dtype(host.device) if caps is not None else "bf16"  # type: ignore[attr-defined]
        schemes = [parse_scheme(s) for s in (a.schemes or default_schemes(host.device, reference))]
    except (ValueError, DQError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shape = ctx.load_shape()
    inp, outp = a.input_tokens or shape[0], a.output_tokens or shape[1]
    preds, notes = predict_grid(
        target,
        schemes,
        ctx,
        a.context_len,
        a.concurrency,
        inp,
        outp,
        reference if host.device == "cpu" else "bf16",
        a.students,
        family_name(target, ctx.obs, results),
    )
    if not ctx.obs:
        notes.append(
            f"no measured cells of host {host.host_id} in {db}: speed from default efficiencies, quality from "
            "published priors, no error measured yet"
        )
    if host.figures is None:
        notes.append("this host has no roofline figures: run `harness doctor` (measures bandwidth and matmuls)")
    doc = {
        "model": {
            "name": target.name,
            "params": target.params,
            "source": target.source,
            "arch": target.arch.to_dict() if target.arch else None,
        },  # fmt: skip
        "host": {
            "host_id": host.host_id,
            "label": host.label,
            "device": host.device,
            "figures": host.figures.model_dump(mode="json") if host.figures else None,
        },  # fmt: skip
        "load": {"context_len": a.context_len, "input_tokens": inp, "output_tokens": outp},
        "measured_cells": ctx.cells,
        "errors": {e: ctx.errors(e) for e in sorted({p.engine for p in preds})},
        "predictions": [p.model_dump(mode="json") for p in preds],
        "notes": notes,
        "interval": "90 % prediction interval; drop relative to the uncompressed model (0.02 = 2 %)",
    }
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    render(doc)
    return 0


def _fmt(e: dict | None, scale: float = 1.0, digits: str = ".3g", pct: bool = False) -> str:
    if not e:
        return "-"
    v, lo, hi = (e[k] * scale for k in ("value", "lo", "hi"))
    unit = " %" if pct else ""
    if e.get("label") == "measured":
        return f"{v:{digits}}{unit} measured"
    return f"{v:{digits}}{unit} [{lo:{digits}}–{hi:{digits}}]"


def render(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = Console(width=None if sys.stdout.isatty() else 200)
    m, h, ld = doc["model"], doc["host"], doc["load"]
    con.print(
        Text(
            f"{m['name']}: {m['params'] / 1e9:.3g}B parameters ({m['source']}) on {h['label']} [{h['host_id']}]; "
            f"KV for {ld['context_len']} tokens x concurrency; "
            f"load {ld['input_tokens']} in / {ld['output_tokens']} out; "
            f"{doc['measured_cells']} measured cell(s) of this host"
        )
    )
    t = Table(title="predicted (90 % intervals) — measured where a cell of this configuration exists")
    for col in (
        "scheme",
        "engine",
        "student",
        "conc.",
        "memory GiB",
        "tok/s",
        "TTFT ms",
        "drop %",
        "regime",
        "runs here",
    ):
        t.add_column(col)
    for p in doc["predictions"]:
        lim = p.get("limits") or {}
        t.add_row(
            *(
                Text(str(x))
                for x in (
                    p["scheme"],
                    p["engine"],
                    "" if p["distill"] == "none" else p["distill"],
                    f"{p['concurrency']:g}",
                    _fmt(p["memory_gib"]),
                    _fmt(p["decode_tok_s"]),
                    _fmt(p["ttft_ms"]),
                    _fmt(p["drop"], 100, ".2g", True),
                    lim.get("decode_regime", "-"),
                    "yes" if p["feasible"] else f"no: {str(p['reason'])[:60]}",
                )
            )
        )
    con.print(t)
    for engine, words in doc["errors"].items():
        parts = [f"{k} {v}" for k, v in words.items() if v]
        con.print(
            Text(f"error of these predictions ({engine}): " + ("; ".join(parts) if parts else "not measured yet"))
        )
    for n in doc["notes"]:
        con.print(Text(f"note: {n}"))
