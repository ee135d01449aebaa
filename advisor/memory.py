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

from harness.models.arch import KNOWN, arch_from_config, known_arch  # config arithmetic only, no backend
from harness.spec.models import BITS

GiB = 2**30
GPU_OVERHEAD_GIB = 1.5


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
    p = Path(text)
    cfg_path = p / "config.json" if p.is_dir() else p
    arch = known_arch(text) or (arch_from_config(json.loads(cfg_path.read_text())) if cfg_path.is_file() else None)
    if arch is not None:
        return {
            "name": text,
            "params": arch.params,
            "num_layers": arch.num_layers,
            "num_kv_heads": arch.num_kv_heads,
            "head_dim": arch.head_dim,
            "kv_bytes_per_token": arch.kv_bytes_per_token(),
        }
    raise ValueError(
        f"{text!r}: give a size like 7B or 70B, a known model ({', '.join(KNOWN)}), or a path to "
        f"a config.json or checkpoint folder"
    )


def estimate_table(
    model: dict, precisions: list[str], context_len: int, concurrency: int, overhead_gib: float = GPU_OVERHEAD_GIB
) -> list[dict]:
    rows = []
    kv = None
    if "kv_bytes_per_token" in model:
        kv = model["kv_bytes_per_token"] * context_len * concurrency
    for prec in precisions:
        if prec not in BITS:
            raise ValueError(f"precision {prec!r}: choose from {', '.join(BITS)}")
        w = weights_bytes(model["params"], BITS[prec])
        rows.append(
            {
                "precision": prec,
                "bits": BITS[prec],
                "weights_gb": w / 1e9,
                "weights_gib": w / GiB,
                "kv_gib": kv / GiB if kv is not None else None,
                "overhead_gib": overhead_gib,
                "total_gib": (w + (kv or 0)) / GiB + overhead_gib,
            }
        )
    return rows
