"""PeakSampler's GPU figures through a fake NVML (this machine has no GPU): per process of the server's tree,
the device fallback when NVML lists none of its PIDs, and no NVML at all."""

import os
import subprocess
import sys
import types
from dataclasses import dataclass

import pytest

from harness.measure.memory_sampler import PeakSampler

GIB = 2**30


@dataclass
class Proc:
    pid: int
    usedGpuMemory: int | None


def fake_nvml(procs_by_device: list[list[Proc]], used_by_device: list[int], fail_init: bool = False):
    m = types.ModuleType("pynvml")
    m.calls = {"init": 0, "shutdown": 0}

    def init():
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")
        m.calls["init"] += 1

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.__setitem__("shutdown", m.calls["shutdown"] + 1)
    m.nvmlDeviceGetCount = lambda: len(used_by_device)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda i: f"GPU-{i}"
    m.nvmlDeviceGetComputeRunningProcesses = lambda i: procs_by_device[i]
    m.nvmlDeviceGetMemoryInfo = lambda i: types.SimpleNamespace(used=used_by_device[i], total=80 * GIB)
    return m


@pytest.fixture
def server():
    """A process tree standing in for a server: a parent and one child."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(p.stdout.readline())
    yield p.pid, child
    os.kill(child, 9)
    p.kill()
    p.wait()


def test_gpu_memory_of_the_process_tree(monkeypatch, server):
    parent, child = server
    nvml = fake_nvml([[Proc(parent, 1 * GIB), Proc(99999999, 30 * GIB)], [Proc(child, 2 * GIB)]], [40 * GIB, 3 * GIB])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    s = PeakSampler(parent)
    s.sample()
    s.sample()
    s.close()
    b = s.block()
    assert b["gpu_peak_gib"] == pytest.approx(3.0)  # the other process's 30 GiB is not the server's
    assert "process tree" in b["gpu_what"] and "devices 0, 1" in b["gpu_what"]
    assert b["host_peak_gib"] == b["peak_gib"] > 0 and b["samples"] == 2
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_device_fallback_when_nvml_lists_no_process_of_the_tree(monkeypatch, server):
    parent, _ = server
    # inside a container NVML reports host PIDs: none matches; usedGpuMemory None: not available
    nvml = fake_nvml([[Proc(12345678, 5 * GIB), Proc(parent, None)], []], [6 * GIB, 4 * GIB])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0")
    s = PeakSampler(parent)
    s.sample()
    b = s.block()
    assert b["gpu_peak_gib"] == pytest.approx(6.0)  # device 0 only: CUDA_VISIBLE_DEVICES names it by UUID
    assert "memory used on devices 0" in b["gpu_what"] and "not the server's alone" in b["gpu_what"]


def test_no_nvml_is_no_figure_never_an_error(monkeypatch, server):
    parent, _ = server
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: nvidia-ml-py not installed
    s = PeakSampler(parent)
    s.sample()
    assert s.block()["gpu_peak_gib"] is None and "not installed" in s.block()["gpu_what"]
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], [], fail_init=True))
    s = PeakSampler(parent)
    s.sample()
    assert s.block()["gpu_peak_gib"] is None and "NVML did not start" in s.block()["gpu_what"]


def test_sampler_thread_runs_with_nvml(monkeypatch, server):
    parent, _ = server
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([[Proc(parent, GIB)]], [2 * GIB]))
    with PeakSampler(parent, interval=0.05) as s:
        import time

        time.sleep(0.3)
    assert s.samples >= 2 and s.gpu_peak_gib == pytest.approx(1.0)
