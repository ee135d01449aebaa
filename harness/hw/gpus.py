"""Known GPUs in figures: memory bandwidth and dense matmul throughput per dtype, each row with its source.

A roofline needs two numbers per device: how fast weights and KV cache stream from memory (bytes/s) and how
fast the matmuls run (FLOP/s per dtype). On a GPU host `harness doctor` measures both (harness/hw/
figures_worker.py); for a GPU not at hand (planning for an H100 you might rent) these datasheet figures stand
in. All throughputs are DENSE (no 2:4 sparsity): where a datasheet prints only the sparse figure, it is
halved here. Tensor-core figures for bf16/fp16 are with FP32 accumulation (what PyTorch and vLLM use); on
GeForce cards that is half the FP16-accumulate figure the spec sheet leads with. `fp32` is the non-tensor
FP32 rate (TF32 is not what an fp32 model computes in unless a framework turns it on).

Matching is by the name NVML reports (`NVIDIA H100 80GB HBM3`, `NVIDIA A100-SXM4-40GB`, `NVIDIA L40S` ...):
the first row whose every `match` token is in the lower-cased name wins, so more specific rows come first.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KnownGpu:
    name: str
    match: tuple[str, ...]  # lower-case tokens that must all be in NVML's device name
    memory_gib: float
    bandwidth_gb_s: float  # peak memory bandwidth, GB/s (10^9 bytes)
    tflops: dict[str, float] = field(default_factory=dict)  # dtype -> dense TFLOP/s (TOP/s for int8)
    source: str = ""  # the vendor datasheet the figures are read from
    note: str = ""


_H100_DS = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_A100_DS = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
_ADA_WP = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
_BW_WP = "https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/nvidia-rtx-blackwell-gpu-architecture.pdf"

KNOWN_GPUS: tuple[KnownGpu, ...] = (
    KnownGpu(
        "H200 SXM 141GB",
        ("h200",),
        141.0,
        4800.0,
        {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        "https://www.nvidia.com/en-us/data-center/h200/",
        "H200 SXM; compute as H100 SXM, 4.8 TB/s HBM3e (the NVL variant is slower: not listed)",
    ),
    KnownGpu(
        "H100 PCIe 80GB",
        ("h100", "pcie"),
        80.0,
        2000.0,
        {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "fp8": 1513.0, "int8": 1513.0},
        _H100_DS,
        "HBM2e; the datasheet's tensor figures are with sparsity, halved here",
    ),
    KnownGpu(
        "H100 SXM 80GB",
        ("h100",),
        80.0,
        3350.0,
        {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        _H100_DS,
        "HBM3 (NVML: `NVIDIA H100 80GB HBM3`); the datasheet's tensor figures are with sparsity, halved here",
    ),
    KnownGpu(
        "A100 80GB PCIe",
        ("a100", "pcie", "80gb"),
        80.0,
        1935.0,
        {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        _A100_DS,
        "no FP8 tensor cores (compute capability 8.0)",
    ),
    KnownGpu(
        "A100 80GB SXM",
        ("a100", "80gb"),
        80.0,
        2039.0,
        {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        _A100_DS,
        "no FP8 tensor cores (compute capability 8.0)",
    ),
    KnownGpu(
        "A100 40GB",
        ("a100",),
        40.0,
        1555.0,
        {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        _A100_DS,
        "HBM2, SXM and PCIe alike; no FP8 tensor cores",
    ),
    KnownGpu(
        "L40S",
        ("l40s",),
        48.0,
        864.0,
        {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0, "int8": 733.0},
        "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413",
        "GDDR6; the datasheet's tensor figures are with sparsity, halved here",
    ),
    KnownGpu(
        "L4",
        ("l4",),
        24.0,
        300.0,
        {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5, "int8": 242.5},
        "https://www.nvidia.com/en-us/data-center/l4/",
        "GDDR6; the datasheet's tensor figures are with sparsity, halved here",
    ),
    KnownGpu(
        "A10G",
        ("a10g",),
        24.0,
        600.0,
        {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0, "int8": 250.0},
        "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf",
        "AWS's variant of the A10 (G5 instances); NVIDIA publishes A10 figures only, used for the A10G",
    ),
    KnownGpu(
        "A10",
        ("a10",),
        24.0,
        600.0,
        {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0, "int8": 250.0},
        "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf",
    ),
    KnownGpu(
        "RTX 5090",
        ("5090",),
        32.0,
        1792.0,
        {"fp32": 104.8, "bf16": 209.5, "fp16": 209.5, "fp8": 419.0, "int8": 838.0},
        _BW_WP,
        "GDDR7; tensor figures with FP32 accumulate, dense (the whitepaper's first figure of each pair)",
    ),
    KnownGpu(
        "RTX 4090",
        ("4090",),
        24.0,
        1008.0,
        {"fp32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3, "int8": 660.6},
        _ADA_WP,
        "GDDR6X; tensor figures with FP32 accumulate, dense (the whitepaper's first figure of each pair)",
    ),
)


def known_gpu(name: str) -> KnownGpu | None:
    """The table's row for a device name as NVML reports it, or as a user types it (`H100`, `a100-80gb`,
    `rtx 4090`); None when no row matches."""
    low = name.lower().replace("_", " ").replace("-", " ")
    words = set(low.split()) | {low.replace(" ", "")}
    for g in KNOWN_GPUS:
        # short tokens (`l4`, `a10`) must be whole words: `l4` is in `l40s`, `a10` in `a100`
        if all(tok in words if len(tok) <= 3 else any(tok in w for w in words) for tok in g.match):
            return g
    return None


def gpu_names() -> list[str]:
    return [g.name for g in KNOWN_GPUS]
