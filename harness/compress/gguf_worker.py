"""Worker: checkpoint -> GGUF (convert_hf_to_gguf.py, bf16) -> optional importance matrix (llama-imatrix on
the calibration windows) -> llama-quantize TYPE. Started by harness/compress/gguf.py in the serving
environment (torch + transformers for llama.cpp's converter) with the llama.cpp tools the set-up built.

`GgufJob` in (source, out, type, tools, imatrix, calibration, work folder, shared bf16 path); the .gguf file
at `out` (a temporary name the parent renames into place, harness/compress/base.py) and `GgufRecord` back:
tool build, commands, wall time per step, peak RSS of the tools, tensor types and counts, fallbacks,
effective bits per weight (all tensors, and the quantized matrices alone), which the parent keeps as
compress-record.json.

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
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from harness.compress.base import Calibration
from harness.jobs import Job, Record


class GgufCalibration(Calibration):
    used_for: str = "imatrix"


class GgufTimings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    convert_s: float
    imatrix_s: float | None = None  # only with an importance matrix (then left out of the record)
    quantize_s: float

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("imatrix_s") is None:
            out.pop("imatrix_s", None)
        return out


class GgufStats(BaseModel):
    """What the GGUF file itself says (vendored gguf-py)."""

    model_config = ConfigDict(extra="forbid")

    tensor_types: dict[str, int]  # llama.cpp's type name -> tensors of that type
    n_tensors: int
    params: int
    bits_per_weight: float
    bits_per_weight_linear: float | None


class GgufRecord(Record):
    tool: str  # "llama.cpp"
    method: str  # "gguf"
    type: str  # the llama-quantize type asked for (Q4_K_M)
    recipe: list[str]  # the commands run, each as one line
    calibration: GgufCalibration | str  # a string says why none was used (no importance matrix)
    bf16_gguf: str
    fallbacks: dict[str, int]  # type fallen back to -> tensors
    fallback_note: str | None
    # GgufStats' fields, flat
    tensor_types: dict[str, int]
    n_tensors: int
    params: int
    bits_per_weight: float
    bits_per_weight_linear: float | None
    wall_s: float
    timings: GgufTimings
    peak_rss_gib: float
    versions: dict[str, str | None]


class GgufJob(Job[GgufRecord]):
    worker = "harness.compress.gguf_worker:work"

    source: str  # checkpoint folder (also the tokenizer of the calibration text)
    trust_remote_code: bool = False  # run the checkpoint's own code (the plan allows it only with --trust-remote-code)
    out: str  # the quantized .gguf (a temporary name the parent renames into place)
    type: str  # llama-quantize type (Q4_K_M)
    tools: str  # llama.cpp built by the set-up: src/ (converter, gguf-py) and build/bin/
    imatrix: bool = False
    calibration: Calibration
    workdir: str  # the cell's work folder: calibration text and imatrix
    base: str  # the bf16 GGUF shared by the source's GGUF cells (harness.compress.gguf.bf16_gguf_path)


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


def gguf_stats(path: Path, src_dir: Path) -> GgufStats:
    """Effective bits per weight and tensor types, read from the file itself (vendored gguf-py)."""
    sys.path.insert(0, str(src_dir / "gguf-py"))
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    types: Counter[str] = Counter()
    n_el = n_bytes = mat_el = mat_bytes = 0
    for t in r.tensors:
        types[t.tensor_type.name] += 1
        n_el += int(t.n_elements)
        n_bytes += int(t.n_bytes)
        if len(t.shape) == 2 and "token_embd" not in t.name:
            mat_el += int(t.n_elements)
            mat_bytes += int(t.n_bytes)
    return GgufStats(
        tensor_types=dict(types),
        n_tensors=len(r.tensors),
        params=n_el,
        bits_per_weight=round(n_bytes * 8 / n_el, 3),
        bits_per_weight_linear=round(mat_bytes * 8 / mat_el, 3) if mat_el else None,
    )


def calibration_text(c: Calibration, tokenizer_dir: str, path: Path, trust_remote_code: bool = False) -> None:
    """The same windows the llm-compressor worker draws (source, samples, length, seed), as text."""
    from transformers import AutoTokenizer

    from harness.measure.prompts import token_prompts

    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=trust_remote_code)
    windows = token_prompts(tokenizer_dir, c.source, c.samples, c.seq_len, c.seed)
    path.write_text("\n\n".join(str(tok.decode(w)) for w in windows))


def work(job: GgufJob) -> GgufRecord:
    from harness.locks import build_once, wait_reporter

    tools, work, out = Path(job.tools), Path(job.workdir), Path(job.out)
    src_dir, bin_dir = tools / "src", tools / "build" / "bin"
    threads = str(os.cpu_count() or 1)
    commands: list[list[str]] = []
    t0 = time.monotonic()
    base = Path(job.base)  # shared by the source's GGUF cells (harness.compress.gguf.bf16_gguf_path)

    def convert(tmp: Path) -> None:  # bf16 keeps the checkpoint's values exactly: the quantizer's input
        for old in base.parent.glob(f"{base.stem}.*.tmp"):  # an earlier version's per-pid name, left by a crash
            old.unlink(missing_ok=True)
        # the converter trusts repository code for some vocabularies whatever it is told: run it with that
        # refused unless the model is trusted (harness/compress/remote_code.py)
        guard = [] if job.trust_remote_code else ["-m", "harness.compress.remote_code"]
        cmd = [
            sys.executable,
            *guard,
            str(src_dir / "convert_hf_to_gguf.py"),
            job.source,
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
        what=f"the bf16 GGUF of {job.source} ({base})",
        valid=is_gguf,
        build=convert,
        on_wait=wait_reporter(None),
    )
    convert_s = round(time.monotonic() - t0, 3)

    qcmd = [str(bin_dir / "llama-quantize")]
    imatrix, imatrix_s = None, None
    if job.imatrix:
        t = time.monotonic()
        calib = work / "calibration.txt"
        calibration_text(job.calibration, job.source, calib, job.trust_remote_code)
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
            str(job.calibration.seq_len),
            "--chunks",
            str(job.calibration.samples),
            "-t",
            threads,
        ]
        run(cmd)
        commands.append(cmd)
        qcmd += ["--imatrix", str(imatrix)]
        imatrix_s = round(time.monotonic() - t, 3)
    t = time.monotonic()
    qcmd += [str(base), str(out), job.type, threads]
    log = run(qcmd)
    commands.append(qcmd)
    quantize_s = round(time.monotonic() - t, 3)

    fallbacks = Counter(
        m.group(2) for m in re.finditer(r"required for type\s+(\S+)\)\s*->\s*falling back to\s+(\S+)", log)
    )
    stats = gguf_stats(out, src_dir)
    record = GgufRecord(
        tool="llama.cpp",
        method="gguf",
        type=job.type,
        recipe=[" ".join(c) for c in commands],
        calibration=GgufCalibration(**job.calibration.model_dump()) if imatrix else "none (no importance matrix)",
        bf16_gguf=str(base),
        fallbacks=dict(fallbacks),
        fallback_note=(
            f"{sum(fallbacks.values())} of {stats.n_tensors} tensors fell back to other types "
            "(k-quants need rows divisible by 256)"
            if fallbacks
            else None
        ),
        tensor_types=stats.tensor_types,
        n_tensors=stats.n_tensors,
        params=stats.params,
        bits_per_weight=stats.bits_per_weight,
        bits_per_weight_linear=stats.bits_per_weight_linear,
        wall_s=round(time.monotonic() - t0, 3),
        timings=GgufTimings(convert_s=convert_s, imatrix_s=imatrix_s, quantize_s=quantize_s),
        # the converter runs in this process's children, the quantizer too: their peak is what counts
        peak_rss_gib=max(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        )
        / 2**20,
        versions={"llama.cpp": (tools / "VERSION").read_text().strip() if (tools / "VERSION").is_file() else None},
    )
    print(json.dumps(record.model_dump(mode="json")))
    return record
