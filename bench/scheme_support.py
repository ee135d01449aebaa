"""Benchmark: which schemes really run on this host, next to what the plan says (harness/plan/support.py).

For each scheme it makes a real artefact of the embedded model (llm-compressor or llama.cpp, as a cell
would), starts the engine, sends a few greedy requests, and records: runs (with decode tok/s at
concurrency 1 and the first request's latency) or the root cause from the server log. Every cell is
tried whatever the plan says, so a support row that is wrong shows up as a disagreement. Prints the
host (CPU model, ISA class, kernel library) with the table.

    ./dq python bench/scheme_support.py [--schemes fp32 bf16 w8a8 w8a16 w4a16 gguf-q4km] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import yaml

from harness.hw.probe import host_caps
from harness.plan.planner import plan_matrix
from harness.proc import tail
from harness.registry import compressors, servers
from harness.serve.base import root_cause
from harness.settings import REPO_ROOT, load_settings
from harness.spec import parse_matrix

# scheme label -> (precision, method spec or None for an uncompressed reference)
SCHEMES = {
    "fp32": ("fp32", None),
    "bf16": ("bf16", None),
    "w8a8": ("int8", {"kind": "rtn", "precisions": ["int8"]}),
    "w8a16": ("int8", {"kind": "rtn", "precisions": ["int8"], "options": {"activations": 16}}),
    "w4a16": ("int4", {"kind": "rtn", "precisions": ["int4"], "group_size": 64}),
    "w4a16-asym": (
        "int4",
        {"kind": "awq", "precisions": ["int4"], "group_size": 64, "calibration_samples": 4, "calibration_seq_len": 64},
    ),
    "gguf-q8": ("int8", {"kind": "gguf", "precisions": ["int8"]}),
    "gguf-q4km": ("int4", {"kind": "gguf", "precisions": ["int4"]}),
}


def why_failed(log: Path) -> str:
    """The server log's root cause (harness.serve.base.root_cause: the exception before EngineDead noise)."""
    return (root_cause(log.read_text(errors="replace")) or tail(log, 3) or "no log")[:300]


def _post(base_url: str, body: dict) -> tuple[dict, float]:
    req = urllib.request.Request(
        base_url + "/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        out = json.loads(r.read())
    return out, time.perf_counter() - t


def complete(base_url: str, model: str, n: int = 3, max_tokens: int = 32, prefill_tokens: int = 256) -> dict:
    """Greedy text, decode tok/s at concurrency 1 (best of n), and the latency of a `prefill_tokens`-long
    prompt with one output token (prefill-bound: where an emulated bf16 costs most)."""
    first, _ = _post(
        base_url, {"model": model, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    )
    walls = [
        _post(
            base_url,
            {
                "model": model,
                "prompt": "The capital of France is",
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
            },
        )[1]
        for _ in range(n)
    ]
    # token ids, exactly prefill_tokens long, different on every repetition: a prefix cache (vLLM's, or
    # llama-server's cache_prompt) must not turn the second try into a lookup
    prefill = min(
        _post(
            base_url,
            {
                "model": model,
                "max_tokens": 1,
                "temperature": 0,
                "prompt": [(7 * i + 13 * rep) % 20000 + 100 for i in range(prefill_tokens)],
            },
        )[1]
        for rep in range(n)
    )
    return {
        "text": first["choices"][0]["text"][:40],
        "tok_s": round(max_tokens / min(walls), 1),
        f"prefill{prefill_tokens}_ms": round(prefill * 1000),
    }


def matrix_for(schemes: list[str]) -> dict:
    m = yaml.safe_load((REPO_ROOT / "matrices" / "smollm2-cpu.yaml").read_text())
    m.update(name="scheme-support", students=[])
    m["methods"] = {k: spec for k in schemes if (spec := SCHEMES[k][1])}
    m["axes"] = {
        "precision": sorted({SCHEMES[k][0] for k in schemes}),
        "method": ["none", *m["methods"]],
        "distill": ["none"],
    }
    m["hardware"] = {"device": "cpu"}
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    ap.add_argument("--json")
    a = ap.parse_args()
    settings = load_settings()
    caps = host_caps(settings)
    plan = plan_matrix(parse_matrix(matrix_for(a.schemes)), settings, host=caps)
    want = {(SCHEMES[k][0], k if SCHEMES[k][1] else "none"): k for k in a.schemes}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dq-schemes-") as tmp:
        for cell in plan.cells:
            label = want.get((cell.precision, cell.method))
            if label is None:
                continue
            work, logs = Path(tmp) / label, Path(tmp) / "logs" / label
            work.mkdir(parents=True)
            logs.mkdir(parents=True)
            row = {
                "scheme": label,
                "engine": cell.serving.kind,
                "compute_dtype": cell.compute_dtype,
                "plan": "feasible" if cell.status == "planned" else "infeasible",
            }
            handle = None
            try:
                from harness.models.sources import source_for

                src = source_for(cell.model, settings)
                src.prepare(logs / "prepare.log")
                comp = compressors.get(cell.method_spec.kind if cell.method_spec else "none")()
                art = comp.compress(cell, src.resolve(), work, replace(settings, results_dir=Path(tmp) / "results"))
                server = servers.get(cell.serving.kind)(cell.serving, settings.python, cell.device)
                handle = server.start(art, f"dq-{label}", logs / "server.log")
                row.update(measured="runs", **complete(handle.base_url, handle.model_name))
            except Exception as exc:  # noqa: BLE001 - the failure is the measurement
                log = logs / "server.log"
                row.update(
                    measured="fails", why=why_failed(log) if log.is_file() else f"{type(exc).__name__}: {exc}"[:300]
                )
            finally:
                if handle is not None:
                    handle.stop()
            row["agrees"] = (row["plan"] == "feasible") == (row["measured"] == "runs")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\nhost {caps.host_id}: {caps.label}; vLLM kernel library {caps.vllm.kernel_lib if caps.vllm else '-'}; "
        f"{caps.dtype_note('cpu')}"
    )
    print(
        f"{'scheme':<11} {'engine':<9} {'dtype':<5} {'plan':<10} {'measured':<8} {'tok/s c1':>8} "
        f"{'prefill 256 ms':>14}  note"
    )
    for r in rows:
        print(
            f"{r['scheme']:<11} {r['engine']:<9} {r['compute_dtype']:<5} {r['plan']:<10} {r['measured']:<8} "
            f"{r.get('tok_s', ''):>8} {r.get('prefill256_ms', ''):>14}  "
            f"{'' if r['agrees'] else 'PLAN DISAGREES: '}{r.get('why', '')}"
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"host": caps.host_block(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
