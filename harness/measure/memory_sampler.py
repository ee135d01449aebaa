"""Peak memory of a server's process tree, sampled in a background thread: host PSS and, on CUDA hosts,
GPU memory through NVML.

PSS (proportional set size) is summed over the tree where the kernel offers it: vLLM forks an engine
core process that shares pages with the API server, and summing RSS would count them twice.

GPU memory is NVML's per-process `usedGpuMemory` summed over the same tree. Inside a container NVML
reports host PIDs (or none), so the tree matches nothing; then the sampler falls back to the memory used
on the visible devices, which counts every process on them, and the record says which it was.
pynvml (package nvidia-ml-py, requirements/gpu.txt) is imported lazily: no NVML means no GPU figure,
never an error.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psutil


def tree_pids(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_memory_bytes(pid: int, procs: list[psutil.Process] | None = None) -> int:
    total = 0
    for p in tree_pids(pid) if procs is None else procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (AttributeError, psutil.AccessDenied):
                total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class GpuMemory:
    """NVML, opened once per sampler. `why` says why there is no figure when `nvml` is None."""

    def __init__(self) -> None:
        self.nvml: Any = None  # the pynvml module once NVML started
        self.handles: list[Any] = []
        self.devices: list[str] = []
        self.why = ""
        try:
            import pynvml
        except ImportError:
            self.why = "not measured: no NVML (nvidia-ml-py is not installed: not a CUDA host)"
            return
        try:
            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as exc:  # noqa: BLE001 - NVMLError_* (no driver, no device): no figure, not a failure
            self.why = f"not measured: NVML did not start ({type(exc).__name__}: {exc})"
            return
        self.nvml = pynvml
        self.devices, self.handles = _visible(pynvml, handles)

    def sample(self, pids: set[int]) -> tuple[int, str] | None:
        """(bytes, "process" | "device"), or None when NVML cannot be read."""
        nvml = self.nvml
        if nvml is None:
            return None
        per_process, matched, device_used = 0, False, 0
        try:
            for h in self.handles:
                try:
                    procs = nvml.nvmlDeviceGetComputeRunningProcesses(h)
                except Exception:  # noqa: BLE001 - not supported on this device: fall back below
                    procs = []
                for p in procs:
                    used = getattr(p, "usedGpuMemory", None)  # None: NVML_VALUE_NOT_AVAILABLE
                    if p.pid in pids and used is not None:
                        per_process += used
                        matched = True
                device_used += nvml.nvmlDeviceGetMemoryInfo(h).used
        except Exception:  # noqa: BLE001 - a device lost mid-run: this sample has no GPU figure
            return None
        return (per_process, "process") if matched else (device_used, "device")

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass


def _visible(nvml, handles: list) -> tuple[list[str], list]:
    """The devices CUDA_VISIBLE_DEVICES names (by index or UUID; NVML itself ignores it), else all."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip() in ("", "-1"):  # no GPU visible, as harness/hw/probe.gpu_info reads it
        return [], []
    want = [x.strip() for x in (env or "").split(",") if x.strip()]
    if not want:
        return [str(i) for i in range(len(handles))], handles
    picked = []
    for i, h in enumerate(handles):
        try:
            uuid = nvml.nvmlDeviceGetUUID(h)
        except Exception:  # noqa: BLE001
            uuid = None
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        if str(i) in want or (uuid and uuid in want):
            picked.append((str(i), h))
    if not picked:  # MIG or other names it cannot match: every device rather than none
        return [str(i) for i in range(len(handles))], handles
    return [d for d, _ in picked], [h for _, h in picked]


class PeakSampler:
    def __init__(self, pid: int, interval: float = 0.5, gpu: bool = True) -> None:
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        self.samples = 0
        self.gpu_peak_bytes: int | None = None
        self.gpu_modes = {"process": 0, "device": 0}  # samples read per process / per device
        self._gpu_peak_mode: str | None = None
        self._gpu = GpuMemory() if gpu else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"mem-{pid}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        procs = tree_pids(self.pid)
        self.peak_bytes = max(self.peak_bytes, tree_memory_bytes(self.pid, procs))
        got = self._gpu.sample({p.pid for p in procs}) if self._gpu and procs else None
        if got is not None:
            used, mode = got
            self.gpu_modes[mode] += 1
            if self.gpu_peak_bytes is None or used > self.gpu_peak_bytes:
                self.gpu_peak_bytes, self._gpu_peak_mode = used, mode
        self.samples += 1

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._gpu:
            self._gpu.close()

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30

    @property
    def gpu_peak_gib(self) -> float | None:
        return None if self.gpu_peak_bytes is None else self.gpu_peak_bytes / 2**30

    @property
    def gpu_what(self) -> str:
        gpu = self._gpu
        if gpu is None:
            return "not measured: GPU sampling off"
        if gpu.nvml is None:
            return gpu.why
        devices = ", ".join(gpu.devices)
        if self.gpu_peak_bytes is None:
            return f"not measured: NVML answered no sample (devices {devices})"
        n_proc, n_dev = self.gpu_modes["process"], self.gpu_modes["device"]
        if self._gpu_peak_mode == "process":
            what = f"NVML usedGpuMemory summed over the server's process tree (devices {devices})"
        else:
            what = (
                f"NVML memory used on devices {devices}, by every process on them, not the server's alone "
                f"(per-process figures unavailable: no process of the server's tree in NVML's list, e.g. "
                f"PIDs hidden by a container)"
            )
        mixed = f"; per-process in {n_proc} samples, whole device in {n_dev}" if n_proc and n_dev else ""
        return f"{what}, peak of samples every {self.interval:g} s{mixed}"

    def block(self) -> dict:
        """The cell document's `memory` block."""
        return {
            "host_peak_gib": self.peak_gib,
            "peak_gib": self.peak_gib,  # peak_gib: the pre-GPU name
            "gpu_peak_gib": self.gpu_peak_gib,
            "gpu_what": self.gpu_what,
            "samples": self.samples,
            "what": f"host: PSS summed over the server's process tree, sampled every {self.interval:g} s",
        }
