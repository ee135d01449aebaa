"""Synthetic results tables (the DuckDB index's shape) for the advisor's tests and its benchmark.

Never used for a recommendation: `advisor` reads only measured results. Figures follow simple physics
(fewer bits -> smaller, faster, lower quality) with noise, so rankings are non-trivial.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRECISIONS = [
    ("bf16", "none", 16),
    ("int8", "gptq", 8),
    ("int8", "rtn", 8),
    ("fp8", "rtn", 8),
    ("int4", "gptq", 4),
    ("int4", "awq", 4),
    ("int4", "rtn", 4),
]


SYNTHETIC_HOST = {"host_id": "synth0000000", "host_label": "synthetic GPU host · 1× H100"}


def synthetic_tables(
    n_models: int, seed: int = 0, distill: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(cells, quality, perf) of one synthetic host (SYNTHETIC_HOST)."""
    rng = np.random.default_rng(seed)
    cells, quality, perf = [], [], []
    for m in range(n_models):
        params = float(rng.choice([1e9, 3e9, 8e9, 14e9, 34e9, 70e9]))
        layers = int(rng.choice([16, 32, 48, 80]))
        kv = 2.0 * layers * 8 * 128 * 2
        base_acc = rng.uniform(0.4, 0.8)
        base_tok = rng.uniform(500, 3000) / (params / 8e9) ** 0.5
        for student in ["none", "kd"] if distill else ["none"]:
            s_params = params * (0.5 if student == "kd" else 1.0)
            s_acc = base_acc - (0.05 if student == "kd" else 0.0)
            root = None
            for prec, method, bits in PRECISIONS:
                cid = f"m{m:05d}{student[:2]}{prec}{method}"[:24]
                parent = None if (prec == "bf16" and student == "none") else root
                if prec == "bf16":
                    root = root or cid
                    if student == "kd":
                        parent = f"m{m:05d}no" + "bf16none"
                acc = s_acc - (16 - bits) * rng.uniform(0.0005, 0.004)
                tok = base_tok * (16 / bits) ** 0.6 * (2 if student == "kd" else 1) * rng.uniform(0.95, 1.05)
                ttft = 50 + 2e-8 * s_params / (16 / bits) * rng.uniform(0.9, 1.1)
                cells.append(
                    {
                        "cell_id": cid,
                        **SYNTHETIC_HOST,
                        "matrix": "synthetic",
                        "model": f"model-{m}",
                        "precision": prec,
                        "method": method,
                        "method_kind": method,
                        "distill": student,
                        "engine": "vllm",
                        "device": "cuda",
                        "status": "done",
                        "reason": None,
                        "parent_id": parent,
                        "params": int(s_params),
                        "kv_bytes_per_token": kv,
                        "size_gib": s_params * (bits + (0.125 if bits < 16 else 0)) / 8 / 2**30,
                        "bits_per_weight": bits,
                        "peak_mem_gib": s_params * bits / 8 / 2**30 + 2.0,
                        "output_tok_s": tok,
                        "req_s": tok / 128,
                        "ttft_ms_p50": ttft,
                        "ttft_ms_p99": ttft * 1.8,
                        "tpot_ms_p50": 1000 / tok,
                        "lm_eval_version": "0.4.13",
                        "artefact_model": f"/models/{cid}",
                    }
                )
                for task, metric in (("dq_arc_easy", "acc"), ("dq_hellaswag", "acc_norm"), ("dq_lambada", "acc")):
                    v = float(np.clip(acc + rng.normal(0, 0.01), 0, 1))
                    quality.append(
                        {
                            "cell_id": cid,
                            "host_id": SYNTHETIC_HOST["host_id"],
                            "task": task,
                            "metric": metric,
                            "value": v,
                            "stderr": float(np.sqrt(v * (1 - v) / 500)),
                            "task_hash": f"h-{task}",
                            "n": 500,
                            "limit_items": 500,
                            "num_fewshot": 0,
                            "lm_eval_version": "0.4.13",
                        }
                    )
                for level, f in ((1, 0.2), (8, 0.7), (32, 1.0)):
                    perf.append(
                        {
                            "cell_id": cid,
                            "host_id": SYNTHETIC_HOST["host_id"],
                            "profile": "concurrency",
                            "level": level,
                            "output_tok_s": tok * f,
                            "req_s": tok * f / 128,  # 128 output tokens per request
                            "ttft_ms_p50": ttft * (1 + level / 16),
                            "ttft_ms_p99": ttft * 1.8 * (1 + level / 16),
                        }
                    )
    return pd.DataFrame(cells), pd.DataFrame(quality), pd.DataFrame(perf)


def write_synthetic_db(path, n_models: int, seed: int = 0) -> int:
    """A DuckDB file in the index's schema holding synthetic tables; returns the number of cells."""
    import duckdb

    from harness.store.db import ensure_schema

    cells, quality, perf = synthetic_tables(n_models, seed=seed)
    perf = perf.assign(requests=32, completed=32, failed=0)
    con = duckdb.connect(str(path))
    try:
        ensure_schema(con)  # the index's real column types, so real cells can be ingested beside these
        for name, df in (("cells", cells), ("quality", quality), ("perf", perf)):
            con.register("df", df)
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM df")
            con.unregister("df")
    finally:
        con.close()
    return len(cells)
