"""The plan's memory estimate of a cell: the shared model (harness/serving_memory.py) applied to what the plan
knows about the cell, i.e. which scheme its method leaves, which KV dtype its engine uses and how many tokens
its KV cache must hold under the matrix's load. The formulas live in harness/serving_memory.py only.

tokens in flight (KV): vLLM on a GPU holds max(max_model_len, top concurrency x (input + output tokens))
-- paged KV holds what the load needs, and at least one full-length sequence; vLLM-CPU instead reserves
exactly `cpu_kvcache_gib`, so on CPU that figure is the KV; llama-server allocates every slot's context up
front (max_model_len x parallel).
overhead: the documented default of the engine on the device (harness/serving_memory.DEFAULT_OVERHEAD_GIB).
The plan is pure (it reads no results), so a measured overhead is the advisor's to use, not the plan's.
"""

from __future__ import annotations

from harness.models.arch import ArchInfo
from harness.plan.cell import MemoryEstimate
from harness.serving_memory import (
    KV_DTYPE_BYTES,
    GiB,
    Quant,
    default_overhead,
    kv_bytes_per_token,
    weights,
)
from harness.spec.base import BITS, FULL_PRECISIONS
from harness.spec.loadtest import LoadSpec
from harness.spec.methods import MethodSpec
from harness.spec.serving import Serving


def top_concurrency(load: LoadSpec) -> int:
    top = 1
    for p in load.profiles:
        if p.kind == "concurrency":
            top = max(top, max(p.levels))
        elif p.kind == "sweep":
            top = max(top, p.max_concurrency)
    return top


def quant_for(precision: str, method: MethodSpec | None, serving: Serving) -> Quant:
    """How the cell's method stores its weights, from the method spec and its plugin's declared facts."""
    bits = float(BITS[precision])
    if method is None or precision in FULL_PRECISIONS:
        return Quant(bits=bits)
    if serving.kind == "llamacpp":  # GGUF: llama-quantize's file type picks every tensor's type
        from harness.compress.gguf import gguf_type
        from harness.serving_memory import GGUF_FILE_TYPES

        ftype = gguf_type(_Cell(precision, method))
        if ftype in GGUF_FILE_TYPES:
            return Quant(bits=bits, gguf_type=ftype)
    from harness.registry import compressors

    symmetric = bool(getattr(compressors.get(method.kind), "symmetric", True)) if method.kind in compressors else True
    # FP8 and W8A8 scale weights per output channel (the plugin refuses a group size for them)
    group = method.group_size if precision not in ("fp8",) else "channel"
    return Quant(bits=bits, group_size=group, symmetric=symmetric, ignore=tuple(method.ignore))


class _Cell:
    """The two fields harness.compress.gguf.gguf_type reads, before a CellPlan exists."""

    def __init__(self, precision: str, method_spec: MethodSpec) -> None:
        self.precision, self.method_spec = precision, method_spec


def kv_bytes_for(
    arch: ArchInfo, serving: Serving, precision: str, compute_dtype: str | None, kv_cache: str = "auto"
) -> float:
    """KV-cache bytes per token of a served cell: its K and V dtypes as its engine stores them."""
    k_dt, v_dt = kv_dtypes(serving, precision, compute_dtype, kv_cache)
    return (
        kv_bytes_per_token(arch.num_layers, arch.num_kv_heads, arch.head_dim, k_dt)
        + kv_bytes_per_token(arch.num_layers, arch.num_kv_heads, arch.head_dim, v_dt)
    ) / 2


def kv_dtypes(serving: Serving, precision: str, compute_dtype: str | None, kv_cache: str = "auto") -> tuple[str, str]:
    """(K dtype, V dtype) the engine stores its cache in: the cell's axes.kv_cache entry where it sets one (the
    matrix refuses a serving option that sets it too), else the serving options, else the engine's default."""
    from harness.spec.kv_cache import engine_kv

    chosen = engine_kv(kv_cache, serving.kind)
    if chosen is not None and chosen in KV_DTYPE_BYTES:
        return chosen, chosen
    if serving.kind == "llamacpp":
        args = {str(k).lstrip("-"): str(v).lower() for k, v in serving.extra_args.items()}
        k = args.get("cache-type-k", args.get("ctk", "f16"))
        v = args.get("cache-type-v", args.get("ctv", "f16"))
        return (k if k in KV_DTYPE_BYTES else "f16", v if v in KV_DTYPE_BYTES else "f16")
    args = {str(k).replace("-", "_"): str(v).lower() for k, v in serving.engine_args.items()}
    kv = args.get("kv_cache_dtype", "auto")
    if kv == "auto" or kv not in KV_DTYPE_BYTES:  # vLLM's auto: the model's compute dtype
        kv = compute_dtype or (precision if precision in FULL_PRECISIONS else "bf16")
    return kv, kv


def estimate_memory(
    arch: ArchInfo,
    precision: str,
    method: MethodSpec | None,
    serving: Serving,
    load: LoadSpec,
    device: str,
    compute_dtype: str | None = None,
    kv_cache: str = "auto",
) -> MemoryEstimate:
    quant = quant_for(precision, method, serving)
    w = weights(arch, quant)
    k_dt, v_dt = kv_dtypes(serving, precision, compute_dtype, kv_cache)
    per_token = kv_bytes_for(arch, serving, precision, compute_dtype, kv_cache)
    kv_name = k_dt if k_dt == v_dt else f"K {k_dt} / V {v_dt}"
    if device == "cpu" and serving.kind == "vllm":
        # a fixed reservation whatever the dtype: an fp8 cache holds twice the tokens in it, not less memory
        kv = serving.cpu_kvcache_gib
        kv_basis = f"KV = VLLM_CPU_KVCACHE_SPACE {kv:g} GiB" + (
            f" ({kv_name}: {per_token:.0f} B/token, {kv * GiB / per_token:.0f} tokens)" if kv_cache != "auto" else ""
        )
    elif serving.kind == "llamacpp":
        tokens = serving.max_model_len * serving.parallel
        kv = per_token * tokens / GiB
        kv_basis = f"KV ({kv_name}) = {per_token:.0f} B/token x {tokens} tokens ({serving.parallel} slots)"
    else:
        tokens = max(serving.max_model_len, top_concurrency(load) * (load.input_tokens + load.output_tokens))
        kv = per_token * tokens / GiB
        kv_basis = f"KV ({kv_name}) = {per_token:.0f} B/token x {tokens} tokens"
    overhead, source = default_overhead(serving.kind, device)
    return MemoryEstimate(
        weights_gib=round(w.gib, 3),
        kv_cache_gib=round(kv, 3),
        overhead_gib=overhead,
        total_gib=round(w.gib + kv + overhead, 3),
        params=arch.params,
        bits_per_weight=round(w.bits_per_weight, 3),
        basis=f"weights = {arch.params / 1e6:.1f}M params, {w.note}; {kv_basis}; "
        f"overhead {overhead:g} GiB ({serving.kind} on {device}, {source})",
    )
