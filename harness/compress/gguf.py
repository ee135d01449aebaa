"""GGUF plugin: convert the checkpoint with llama.cpp's convert_hf_to_gguf.py, optionally compute an
importance matrix on the calibration set (llama-imatrix), quantize with llama-quantize, served by
llama-server. Precision picks the type (int8 Q8_0, int6 Q6_K, int5 Q5_K_M, int4 Q4_K_M, int3 Q3_K_M,
int2 Q2_K); `options: {type: Q4_0}` overrides it, `options: {imatrix: true}` adds the importance matrix.

k-quants need rows divisible by 256; llama-quantize falls back to other types per tensor where they are
not (SmolLM2's 576-wide rows), so the record carries the effective bits per weight and the per-type tensor
counts, never just the label. The work runs in `harness.compress.gguf_worker` (GgufJob), in the serving
environment (llama.cpp's converter needs its torch and transformers).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from harness.compress.base import (
    Compressor,
    build_artefact,
    calibration,
    checkpoint_ident,
    method_of,
    run_compress_worker,
)
from harness.compress.gguf_worker import GgufJob, GgufRecord
from harness.errors import StageError
from harness.result import Artefact

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


DEFAULT_TYPES = {"int8": "Q8_0", "int6": "Q6_K", "int5": "Q5_K_M", "int4": "Q4_K_M", "int3": "Q3_K_M", "int2": "Q2_K"}
# types llama-quantize accepts that a matrix may name in options.type, with their nominal bits
KNOWN_TYPES = {
    "Q8_0": 8,
    "Q6_K": 6,
    "Q5_K_M": 5,
    "Q5_K_S": 5,
    "Q5_0": 5,
    "Q5_1": 5,
    "Q4_K_M": 4,
    "Q4_K_S": 4,
    "Q4_0": 4,
    "Q4_1": 4,
    "IQ4_NL": 4,
    "IQ4_XS": 4,
    "Q3_K_M": 3,
    "Q3_K_S": 3,
    "Q3_K_L": 3,
    "Q2_K": 2,
    "Q2_K_S": 2,
}


def bf16_gguf_path(source, settings) -> Path:
    """Where the converted bf16 GGUF of `source` is kept, shared by every GGUF cell of that checkpoint: the
    converter runs once per source (and llama.cpp build), not once per quantization type."""
    ident = f"{checkpoint_ident(source)}|{settings.llamacpp_dir}"
    path: Path = settings.home / "gguf" / hashlib.sha256(ident.encode()).hexdigest()[:16] / "model-bf16.gguf"
    return path


def gguf_type(cell) -> str:
    return str(cell.method_spec.options.get("type") or DEFAULT_TYPES[cell.precision])


class GGUF(Compressor):
    kind = "gguf"
    precisions = tuple(DEFAULT_TYPES)
    engines = ("llamacpp",)

    def scheme(self, cell) -> str:
        return "gguf"

    def missing_packages(self) -> str | None:
        from harness.settings import load_settings

        tools = load_settings().llamacpp_dir
        if tools is None or not (tools / "build" / "bin" / "llama-quantize").is_file():
            return "llama.cpp built by the set-up (DQBENCH_LLAMACPP; run ./dq setup)"
        return None

    def plan_problems(self, cell, arch) -> list[str]:
        spec, problems = cell.method_spec, []
        t = gguf_type(cell)
        if t not in KNOWN_TYPES:
            problems.append(
                f"methods.{cell.method}.options.type {t!r} is not a llama-quantize type dqbench knows "
                f"({', '.join(KNOWN_TYPES)})"
            )
        elif KNOWN_TYPES[t] != int(cell.precision[3:]):
            problems.append(
                f"methods.{cell.method}.options.type {t} is a {KNOWN_TYPES[t]}-bit type but the cell is "
                f"{cell.precision}; use {DEFAULT_TYPES[cell.precision]} or restrict the method with "
                f"precisions: [int{KNOWN_TYPES[t]}]"
            )
        if spec.group_size is not None:
            problems.append(
                f"methods.{cell.method}.group_size: GGUF types fix their own block size (32 or 256); remove group_size"
            )
        return problems

    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        workdir = paths.work
        if settings.llamacpp_dir is None:
            raise StageError("compress", "llama.cpp is not built: run ./dq setup (or set DQBENCH_LLAMACPP)")
        spec = method_of(cell)
        out = workdir / f"model-{gguf_type(cell)}.gguf"
        record_path = workdir / "compress-record.json"
        log = paths.log("compress")

        def run(tmp: Path, env: dict[str, str]) -> GgufRecord:
            job = GgufJob(
                source=str(source),
                trust_remote_code=cell.model.trust_remote_code,
                out=str(tmp),
                type=gguf_type(cell),
                tools=str(settings.llamacpp_dir),
                imatrix=bool(spec.options.get("imatrix", False)),
                calibration=calibration(spec),
                workdir=str(workdir),
                base=str(bf16_gguf_path(source, settings)),
            )
            return run_compress_worker(job, log, settings, env)  # the serving env: the converter's torch

        built = build_artefact(
            out,
            record_path,
            run,
            GgufRecord,
            what=f"the GGUF {gguf_type(cell)} artefact of cell {cell.cell_id} ({out})",
            log=log,
        )
        return Artefact(
            model=str(out),
            dtype="gguf",
            quantization=gguf_type(cell),
            size_bytes=out.stat().st_size,
            bits_per_weight=built.record.bits_per_weight,
            record=built.record.model_dump(mode="json"),
            tokenizer=str(source),
        )
