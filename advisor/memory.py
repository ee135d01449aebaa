"""Memory model: weights + KV cache + runtime overhead, in GiB unless a GB column says otherwise.

weights  = parameters x effective bits / 8 (measured size on disk when the cell has one)
kv cache = 2 (K, V) x layers x kv_heads x head_dim x 2 bytes x context length x concurrency
overhead = runtime constant: ~1.5 GiB on a GPU (CUDA context, activations, vLLM's own buffers),
           an estimate; on a CPU host it is calibrated from the cell's measured peak.

`estimate_table` reproduces the rule of thumb quoted everywhere (7B: 28 / 14 / 7 / 3.5 GB at
fp32 / fp16 / int8 / int4): weights only, decimal GB.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

GiB = 2**30
GPU_OVERHEAD_GIB = 1.5
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3,
        "int2": 2}

# config facts of public models for `advisor estimate NAME` (no download)
KNOWN = {
    "meta-llama/Llama-3.1-8B-Instruct": dict(params=8_030_261_248, num_layers=32, num_kv_heads=8, head_dim=128),
    "meta-llama/Llama-3.1-70B-Instruct": dict(params=70_553_706_496, num_layers=80, num_kv_heads=8, head_dim=128),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(params=134_515_008, num_layers=30, num_kv_heads=3, head_dim=64),
}


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, kv_bytes: float = 2.0) -> float:
    return 2.0 * num_layers * num_kv_heads * head_dim * kv_bytes


def weights_bytes(params: float, bits: float) -> float:
    return params * bits / 8.0


def parse_size(text: str) -> float | None:
    """'7B' -> 7e9, '135M' -> 1.35e8, '1.5b' -> 1.5e9; None if `text` is not a size."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmbt])", text.strip().lower())
    if not m:
        return None
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]


def resolve_model(text: str) -> dict:
    """A size ('7B'), a known hub id, or a config.json / checkpoint folder -> {params, [kv facts]}."""
    size = parse_size(text)
    if size is not None:
        return {"name": text, "params": size}
    if text in KNOWN:
        return {"name": text, **KNOWN[text]}
    p = Path(text)
    cfg_path = p / "config.json" if p.is_dir() else p
    if cfg_path.is_file():
        from harness.models.arch import arch_from_config  # pure config arithmetic, no backend

        arch = arch_from_config(json.loads(cfg_path.read_text()))
        return {"name": text, "params": arch.params, "num_layers": arch.num_layers,
                "num_kv_heads": arch.num_kv_heads, "head_dim": arch.head_dim}
    raise ValueError(f"{text!r}: give a size like 7B or 70B, a known model ({', '.join(KNOWN)}), or a path to "
                     f"a config.json or checkpoint folder")


def estimate_table(model: dict, precisions: list[str], context_len: int, concurrency: int,
                   overhead_gib: float = GPU_OVERHEAD_GIB) -> list[dict]:
    rows = []
    kv = None
    if "num_layers" in model:
        kv = kv_bytes_per_token(model["num_layers"], model["num_kv_heads"], model["head_dim"]) \
            * context_len * concurrency
    for prec in precisions:
        if prec not in BITS:
            raise ValueError(f"precision {prec!r}: choose from {', '.join(BITS)}")
        w = weights_bytes(model["params"], BITS[prec])
        rows.append({"precision": prec, "bits": BITS[prec], "weights_gb": w / 1e9, "weights_gib": w / GiB,
                     "kv_gib": kv / GiB if kv is not None else None, "overhead_gib": overhead_gib,
                     "total_gib": (w + (kv or 0)) / GiB + overhead_gib})
    return rows
