"""HostFigures: the host in the two numbers a roofline needs (memory bandwidth, matmul throughput per dtype),
and where they come from for any host: measured here (`harness doctor`, harness/hw/figures_worker.py, cached
with the host probe), a preset's (harness/hw/presets/*.json), or a known GPU's datasheet (harness/hw/gpus.py).

The figures are of the device the cells compute on: the CPU (all cores; one core beside it) on a CPU host,
the GPU's HBM and tensor cores on a GPU host. No probing and no heavy import here (the advisor reads it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.hw.gpus import KnownGpu, known_gpu

# which dtypes a roofline may ask for, in the order `harness doctor` shows them
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")


class HostFigures(BaseModel):
    """Sustained (measured) or peak (datasheet) figures of one device. `source`: measured | preset |
    datasheet; `basis` says how, with the host's load average when measured (a busy host reads low)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Literal["cpu", "cuda"]
    bandwidth_gb_s: float = Field(gt=0, description="memory bandwidth, 10^9 bytes/s (STREAM triad, all cores)")
    bandwidth_1core_gb_s: float | None = Field(default=None, description="the same on one core (CPU)")
    tflops: dict[str, float] = Field(default_factory=dict, description="dtype -> dense TFLOP/s (TOP/s for int8)")
    kernels: dict[str, str] = Field(default_factory=dict, description="dtype -> what was timed")
    threads: int | None = None
    source: Literal["measured", "preset", "datasheet"] = "measured"
    basis: str = ""
    measured_at: str | None = None
    load_average: float | None = None  # 1-minute load average when measured (other work shares the cores)

    def peak_flops(self, dtype: str) -> tuple[float, str]:
        """(FLOP/s, the dtype whose figure it is) for a matmul in `dtype`: its own figure, else the fastest of
        the ones it falls back to that the device has (int8 on a CPU without VNNI runs at about its float
        rate, so the faster of bf16 and fp32 stands in, not an emulated bf16; fp8 -> bf16 or fp16 ...)."""
        if self.tflops.get(dtype):
            return self.tflops[dtype] * 1e12, dtype
        have = [d for d in (*_FALLBACK.get(dtype, ()), "bf16", "fp32") if self.tflops.get(d)]
        if not have:
            raise ValueError(f"no matmul throughput for {dtype} (have: {', '.join(self.tflops) or 'none'})")
        best = max(have, key=lambda d: self.tflops[d])
        return self.tflops[best] * 1e12, best

    @property
    def ridge(self) -> dict[str, float]:
        """FLOPs per byte at which each dtype's matmuls stop being memory-bound (the roofline's ridge point)."""
        return {d: t * 1e12 / (self.bandwidth_gb_s * 1e9) for d, t in self.tflops.items()}

    def line(self) -> str:
        tf = ", ".join(f"{d} {self.tflops[d]:.3g}" for d in DTYPES if d in self.tflops)
        one = f" (1 core {self.bandwidth_1core_gb_s:.1f})" if self.bandwidth_1core_gb_s else ""
        return f"bandwidth {self.bandwidth_gb_s:.1f} GB/s{one}; matmul TFLOP/s: {tf or '-'} [{self.source}]"


_FALLBACK = {"fp8": ("bf16", "fp16"), "tf32": ("fp32",), "fp16": ("bf16",), "int8": ("bf16",), "int4": ("int8",)}


def datasheet_figures(gpu: KnownGpu) -> HostFigures:
    return HostFigures(
        device="cuda",
        bandwidth_gb_s=gpu.bandwidth_gb_s,
        tflops=dict(gpu.tflops),
        kernels=dict.fromkeys(gpu.tflops, "datasheet, dense"),
        source="datasheet",
        basis=f"{gpu.name} datasheet peak figures ({gpu.source})" + (f"; {gpu.note}" if gpu.note else ""),
    )


def gpu_figures(name: str) -> HostFigures | None:
    """Datasheet figures of a GPU by (NVML or typed) name; None for a GPU not in harness/hw/gpus.py."""
    g = known_gpu(name)
    return datasheet_figures(g) if g else None
