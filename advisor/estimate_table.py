"""`advisor estimate`: the per-precision memory table of a model, from the shared memory model
(harness/serving_memory.py: weights by module, KV cache by dtype, engine overhead). This module only resolves
what the user named (a size, a known hub id, a config.json) and lays the model's figures out as rows.

A model known by its config facts gets the module-wise weights the planner uses: embeddings and lm_head stay
16-bit (llm-compressor's schemes ignore them), layer linears at the precision's bits plus scales (one 16-bit
scale per `group_size` weights for int4; per output channel for int8 and fp8). A model known only by its
size ('7B') gets the rule of thumb quoted everywhere (7B: 28 / 14 / 7 / 3.5 GB at fp32 / fp16 / int8 /
int4): parameters x bits / 8, decimal GB, and no KV cache (its shape is unknown).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.models.arch import KNOWN, ArchInfo, arch_from_config, known_arch  # config arithmetic only
from harness.serving_memory import GiB, Quant, arch_kv_bytes_per_token, default_overhead, uniform_weights_bytes, weights
from harness.spec.base import BITS

# the GPU default the estimate table uses (vLLM on a GPU), from the shared model
GPU_OVERHEAD_GIB, GPU_OVERHEAD_SOURCE = default_overhead("vllm", "cuda")
DEFAULT_INT4_GROUP = 128  # the group size GPTQ/AWQ int4 checkpoints use most


def parse_size(text: str) -> float | None:
    """'7B' -> 7e9, '135M' -> 1.35e8, '1.5b' -> 1.5e9; None if `text` is not a size."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmbt])", text.strip().lower())
    if not m:
        return None
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]


def resolve_arch(text: str) -> ArchInfo | None:
    """The config facts of a known hub id or a config.json / checkpoint folder; None for anything else."""
    p = Path(text)
    cfg_path = p / "config.json" if p.is_dir() else p
    return known_arch(text) or (arch_from_config(json.loads(cfg_path.read_text())) if cfg_path.is_file() else None)


def resolve_model(text: str) -> dict:
    """A size ('7B'), a known hub id, or a config.json / checkpoint folder -> {params, [kv facts]}."""
    size = parse_size(text)
    if size is not None:
        return {"name": text, "params": size}
    arch = resolve_arch(text)
    if arch is not None:
        return {
            "name": text,
            "params": arch.params,
            "num_layers": arch.num_layers,
            "num_kv_heads": arch.num_kv_heads,
            "head_dim": arch.head_dim,
            "kv_bytes_per_token": arch_kv_bytes_per_token(arch),
            "arch": arch.to_dict(),
        }
    raise ValueError(
        f"{text!r}: give a size like 7B or 70B, a known model ({', '.join(KNOWN)}), or a path to "
        f"a config.json or checkpoint folder"
    )


def quant_for_precision(precision: str, group_size: int | None = DEFAULT_INT4_GROUP) -> Quant:
    """The scheme `advisor estimate` assumes for a precision: llm-compressor's (W4A16 grouped, W8A8 and
    FP8 per channel, lm_head and embeddings kept 16-bit)."""
    bits = float(BITS[precision])
    if bits >= 16:
        return Quant(bits=bits)
    return Quant(bits=bits, group_size=group_size if bits < 8 else None)


def _arch(model: dict) -> ArchInfo | None:
    a = model.get("arch")
    if not a:
        return None
    return ArchInfo(**{k: v for k, v in a.items() if k != "params"})


def estimate_table(
    model: dict,
    precisions: list[str],
    context_len: int,
    concurrency: int,
    overhead_gib: float = GPU_OVERHEAD_GIB,
    group_size: int | None = DEFAULT_INT4_GROUP,
) -> list[dict]:
    rows = []
    kv = None
    if "kv_bytes_per_token" in model:
        kv = model["kv_bytes_per_token"] * context_len * concurrency
    arch = _arch(model)
    for prec in precisions:
        if prec not in BITS:
            raise ValueError(f"precision {prec!r}: choose from {', '.join(BITS)}")
        if arch is not None:
            w = weights(arch, quant_for_precision(prec, group_size))
            wb, bits, basis = w.bytes, round(w.bits_per_weight, 3), w.note
        else:
            wb, bits, basis = uniform_weights_bytes(model["params"], BITS[prec]), BITS[prec], "params x bits / 8"
        rows.append(
            {
                "precision": prec,
                "bits": bits,
                "weights_gb": wb / 1e9,
                "weights_gib": wb / GiB,
                "kv_gib": kv / GiB if kv is not None else None,
                "overhead_gib": overhead_gib,
                "total_gib": (wb + (kv or 0)) / GiB + overhead_gib,
                "basis": basis,
            }
        )
    return rows
