"""Memory estimate of a served cell: weights + KV cache + runtime overhead (all GiB, all estimates).

weights = params x bits/8 (+ one fp16 scale per group for grouped integer formats)
kv      = 2 x layers x kv_heads x head_dim x 2 bytes x tokens in flight, where tokens in flight =
          max(max_model_len, top concurrency x (input + output tokens)) -- paged KV holds what the
          load needs, and at least one full-length sequence. (vLLM-CPU instead reserves exactly
          `cpu_kvcache_gib`, so on CPU that figure is used.)
overhead: runtime constant (CUDA context + activations on GPU; Python + torch + vLLM on CPU),
          measured on the embedded model on CPU (~2 GiB RSS beyond weights and KV).
"""

from __future__ import annotations

from harness.models.arch import ArchInfo
from harness.plan.models import MemoryEstimate
from harness.spec.models import BITS, LoadSpec, MethodSpec, Serving

GiB = 2**30
OVERHEAD_GIB = {"cpu": 2.0, "cuda": 1.5}


def effective_bits(precision: str, method: MethodSpec | None) -> float:
    bits = float(BITS[precision])
    if method is None or bits >= 16 or precision == "fp8":
        return bits
    g = method.group_size
    if isinstance(g, int):
        bits += 16.0 / g  # one fp16 scale per group
    elif g == "channel":
        bits += 0.0  # one scale per output row: negligible
    return bits


def top_concurrency(load: LoadSpec) -> int:
    top = 1
    for p in load.profiles:
        if p.kind == "concurrency":
            top = max(top, max(p.levels))
    return top


def estimate_memory(
    arch: ArchInfo, precision: str, method: MethodSpec | None, serving: Serving, load: LoadSpec, device: str
) -> MemoryEstimate:
    bits = effective_bits(precision, method)
    weights = arch.params * bits / 8 / GiB
    if device == "cpu" and serving.kind == "vllm":
        kv = serving.cpu_kvcache_gib
        kv_basis = f"KV = VLLM_CPU_KVCACHE_SPACE {kv:g} GiB"
    elif serving.kind == "llamacpp":  # llama-server allocates every slot's context up front (f16 KV)
        tokens = serving.max_model_len * serving.parallel
        kv = arch.kv_bytes_per_token() * tokens / GiB
        kv_basis = f"KV = {arch.kv_bytes_per_token():.0f} B/token x {tokens} tokens ({serving.parallel} slots)"
    else:
        tokens = max(serving.max_model_len, top_concurrency(load) * (load.input_tokens + load.output_tokens))
        kv = arch.kv_bytes_per_token() * tokens / GiB
        kv_basis = f"KV = {arch.kv_bytes_per_token():.0f} B/token x {tokens} tokens"
    overhead = OVERHEAD_GIB[device]
    return MemoryEstimate(
        weights_gib=round(weights, 3),
        kv_cache_gib=round(kv, 3),
        overhead_gib=overhead,
        total_gib=round(weights + kv + overhead, 3),
        params=arch.params,
        bits_per_weight=round(bits, 3),
        basis=f"weights = {arch.params / 1e6:.1f}M params x {bits:.2f} bits; {kv_basis}; "
        f"overhead {overhead:g} GiB ({device})",
    )
