"""Legacy plugins for users who still have AutoAWQ / AutoGPTQ (both archived upstream; CUDA only).
Optional extra: pip install 'dqbench[legacy]'. Their checkpoints load in vLLM as `awq` / `gptq`.
llm-compressor's `awq` and `gptq` methods are the maintained route and run on CPU too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from harness.compress.base import (
    Artefact,
    Compressor,
    build_artefact,
    calibration,
    dir_size,
    method_of,
    run_compress_worker,
)

if TYPE_CHECKING:
    from harness.plan.models import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


class _Legacy(Compressor):
    precisions = ("int4",)
    needs_gpu = True
    tool: ClassVar[str]
    vllm_name: ClassVar[str]  # the quantization vLLM reports for the artefact

    def plan_problems(self, cell, arch) -> list[str]:
        g = cell.method_spec.group_size
        if isinstance(g, int) and arch is not None:
            bad = {k: w for k, w in arch.linear_input_sizes.items() if w % g}
            if bad:
                layer, width = next(iter(bad.items()))
                return [
                    f"methods.{cell.method}.group_size {g} does not divide the input size {width} of {layer} "
                    f"in {cell.model.name}; use a group that divides it"
                ]
        return []

    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        workdir = paths.work
        spec = method_of(cell)
        out, record_path = workdir / "model", workdir / "compress-record.json"
        log = paths.log("compress")

        def run(tmp: Path, tmp_record: Path, env: dict[str, str]) -> None:
            cfg = {
                "tool": self.tool,
                "source": str(source),
                "out": str(tmp),
                "record": str(tmp_record),
                "group_size": 128 if spec.group_size in (None, "channel") else spec.group_size,
                **calibration(spec),
            }
            run_compress_worker("harness.workers.compress_legacy", cfg, workdir, log, settings, env)

        build_artefact(out, record_path, run, what=f"the {self.kind} artefact of cell {cell.cell_id} ({out})", log=log)
        record = json.loads(record_path.read_text())
        size = dir_size(out)
        params = cell.estimate.params if cell.estimate else None
        return Artefact(
            model=str(out),
            dtype="float16",
            quantization=self.vllm_name,
            size_bytes=size,
            bits_per_weight=round(size * 8 / params, 3) if params else None,
            record=record,
        )


class AutoAWQ(_Legacy):
    kind = "autoawq"
    tool = "autoawq"
    vllm_name = "awq"
    packages = {"awq": "autoawq"}

    def scheme(self, cell) -> str:
        return "awq-legacy"


class AutoGPTQ(_Legacy):
    kind = "autogptq"
    tool = "auto-gptq"
    vllm_name = "gptq"
    packages = {"auto_gptq": "auto-gptq"}

    def scheme(self, cell) -> str:
        return "gptq-legacy"
