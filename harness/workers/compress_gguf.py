"""Worker: checkpoint -> GGUF (convert_hf_to_gguf.py, bf16) -> optional importance matrix (llama-imatrix on
the calibration windows) -> llama-quantize TYPE. Runs in the main env (torch + transformers for the
converter) with the llama.cpp tools the set-up built.

Input: a JSON config (source, out, type, tools, imatrix, calibration, seed). Output: the .gguf file at
`out` (a temporary name the parent renames into place, harness/compress/base.py) and a record JSON: tool
build, commands, wall time per step, peak RSS of the tools, tensor types and counts, fallbacks, effective
bits per weight (all tensors, and the quantized matrices alone), written atomically.

The bf16 conversion is shared by every GGUF cell of a checkpoint and may be wanted by cells side by side:
it is made under its lock (`model-bf16.gguf.lock`) at a unique temporary name and renamed into place; a
second cell waits and reuses it (harness/locks.py).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness.proc import worker_main


def run(cmd: list[str], cwd: str | None = None) -> str:
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout[-20000:], flush=True)
    if p.returncode:
        raise SystemExit(f"{Path(cmd[0]).name} failed with exit code {p.returncode}")
    return p.stdout


def is_gguf(path: Path) -> bool:
    """A whole GGUF file: published only by a rename after the converter succeeded, so its magic is enough."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def gguf_stats(path: Path, src_dir: Path) -> dict:
    """Effective bits per weight and tensor types, read from the file itself (vendored gguf-py)."""
    sys.path.insert(0, str(src_dir / "gguf-py"))
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    types: Counter = Counter()
    n_el = n_bytes = mat_el = mat_bytes = 0
    for t in r.tensors:
        types[t.tensor_type.name] += 1
        n_el += int(t.n_elements)
        n_bytes += int(t.n_bytes)
        if len(t.shape) == 2 and "token_embd" not in t.name:
            mat_el += int(t.n_elements)
            mat_bytes += int(t.n_bytes)
    return {
        "tensor_types": dict(types),
        "n_tensors": len(r.tensors),
        "params": n_el,
        "bits_per_weight": round(n_bytes * 8 / n_el, 3),
        "bits_per_weight_linear": round(mat_bytes * 8 / mat_el, 3) if mat_el else None,
    }


def calibration_text(cfg: dict, tokenizer_dir: str, path: Path) -> None:
    """The same windows the llm-compressor worker draws (source, samples, length, seed), as text."""
    from transformers import AutoTokenizer

    from harness.measure.prompts import token_prompts

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    windows = token_prompts(
        tokenizer_dir, cfg["calibration_source"], cfg["calibration_samples"], cfg["calibration_seq_len"], cfg["seed"]
    )
    path.write_text("\n\n".join(str(tok.decode(w)) for w in windows))


def work(cfg: dict) -> dict:

    from harness.locks import build_once, wait_reporter

    tools, work, out = Path(cfg["tools"]), Path(cfg["workdir"]), Path(cfg["out"])
    src_dir, bin_dir = tools / "src", tools / "build" / "bin"
    threads = str(os.cpu_count() or 1)
    timings, commands = {}, []
    t0 = time.monotonic()
    base = Path(cfg["base"])  # shared by the source's GGUF cells (harness.compress.gguf.bf16_gguf_path)

    def convert(tmp: Path) -> None:  # bf16 keeps the checkpoint's values exactly: the quantizer's input
        for old in base.parent.glob(f"{base.stem}.*.tmp"):  # an earlier version's per-pid name, left by a crash
            old.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            str(src_dir / "convert_hf_to_gguf.py"),
            cfg["source"],
            "--outfile",
            str(tmp),
            "--outtype",
            "bf16",
        ]
        run(cmd, cwd=str(src_dir))
        commands.append(cmd)

    base.parent.mkdir(parents=True, exist_ok=True)
    build_once(
        base,
        what=f"the bf16 GGUF of {cfg['source']} ({base})",
        valid=is_gguf,
        build=convert,
        on_wait=wait_reporter(None),
    )
    timings["convert_s"] = round(time.monotonic() - t0, 3)

    qcmd = [str(bin_dir / "llama-quantize")]
    imatrix = None
    if cfg["imatrix"]:
        t = time.monotonic()
        calib = work / "calibration.txt"
        calibration_text(cfg, cfg["source"], calib)
        imatrix = work / "imatrix.gguf"
        cmd = [
            str(bin_dir / "llama-imatrix"),
            "-m",
            str(base),
            "-f",
            str(calib),
            "-o",
            str(imatrix),
            "-c",
            str(cfg["calibration_seq_len"]),
            "--chunks",
            str(cfg["calibration_samples"]),
            "-t",
            threads,
        ]
        run(cmd)
        commands.append(cmd)
        qcmd += ["--imatrix", str(imatrix)]
        timings["imatrix_s"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    qcmd += [str(base), str(out), cfg["type"], threads]
    log = run(qcmd)
    commands.append(qcmd)
    timings["quantize_s"] = round(time.monotonic() - t, 3)

    fallbacks = Counter(
        m.group(2) for m in re.finditer(r"required for type\s+(\S+)\)\s*->\s*falling back to\s+(\S+)", log)
    )
    stats = gguf_stats(out, src_dir)
    record = {
        "tool": "llama.cpp",
        "method": "gguf",
        "type": cfg["type"],
        "recipe": [" ".join(c) for c in commands],
        "calibration": (
            {
                "source": cfg["calibration_source"],
                "samples": cfg["calibration_samples"],
                "seq_len": cfg["calibration_seq_len"],
                "seed": cfg["seed"],
                "used_for": "imatrix",
            }
            if imatrix
            else "none (no importance matrix)"
        ),
        "bf16_gguf": str(base),
        "fallbacks": dict(fallbacks),
        "fallback_note": (
            f"{sum(fallbacks.values())} of {stats['n_tensors']} tensors fell back to other types "
            "(k-quants need rows divisible by 256)"
            if fallbacks
            else None
        ),
        **stats,
        "wall_s": round(time.monotonic() - t0, 3),
        "timings": timings,
        # the converter runs in this process's children, the quantizer too: their peak is what counts
        "peak_rss_gib": max(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        )
        / 2**20,
        "versions": {"llama.cpp": (tools / "VERSION").read_text().strip() if (tools / "VERSION").is_file() else None},
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    worker_main(work, result="record")
