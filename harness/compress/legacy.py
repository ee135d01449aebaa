"""Legacy plugins for AutoAWQ 0.2.9 / AutoGPTQ 0.7.1 (both archived upstream; CUDA only), refused at plan time
wherever the environment their worker runs in cannot host them -- which is every environment dqbench builds.

Their worker (harness/compress/legacy_worker.py, LegacyJob) runs in the serving environment, beside vLLM 0.32, which
needs transformers >= 5.16 (requirements/cpu.txt, gpu.txt) and brings torch 2.13. The packages need:
- AutoAWQ 0.2.9: torch 2.6 and transformers 4.51 ("The last tested configuration used Torch 2.6.0 and
  Transformers 4.51.3", its deprecation notice); its CUDA kernels (autoawq-kernels) are built per torch.
- AutoGPTQ 0.7.1: torch 2.2 (the CUDA extensions in its PyPI wheel, cu121) and transformers < 5: on
  transformers 5.19 `import auto_gptq` fails (transformers.modeling_utils no longer has no_init_weights;
  checked 2026-11-23).
A separate legacy environment (like llm-compressor's) is not worth building for two archived packages:
llm-compressor's `awq` and `gptq` methods are the maintained route, run on CPU too, and vLLM serves their
output. The plugins stay registered so a matrix naming them gets this reason, not "no plugin".
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from harness.compress.base import (
    Compressor,
    build_artefact,
    calibration,
    dir_size,
    method_of,
    run_compress_worker,
)
from harness.compress.legacy_worker import LegacyJob, LegacyRecord
from harness.errors import StageError
from harness.result import Artefact

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


def installed(dist: str) -> str | None:
    """The version of `dist` in this (the orchestrator's = the serving) environment, None if absent."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class _Legacy(Compressor):
    precisions = ("int4",)
    needs_gpu = True
    tool: ClassVar[Literal["autoawq", "auto-gptq"]]
    vllm_name: ClassVar[str]  # the quantization vLLM reports for the artefact
    release: ClassVar[str]  # the pinned release (pyproject's `legacy` extra)
    torch_series: ClassVar[str]  # the torch minor series it was built and tested against
    evidence: ClassVar[str]
    instead: ClassVar[str]  # the maintained llm-compressor method

    def refusal(self) -> str | None:
        """None where this environment has the torch and transformers the package needs; otherwise why it
        cannot run, with what it needs, what is installed and the maintained method to use instead."""
        torch_v, tf_v = installed("torch"), installed("transformers")
        torch_ok = torch_v is not None and torch_v.split("+")[0].startswith(self.torch_series + ".")
        tf_ok = tf_v is not None and int(tf_v.split(".")[0]) < 5
        if torch_ok and tf_ok:
            return None
        return (
            f"{self.release} is refused: it was built for torch {self.torch_series} and transformers < 5 "
            f"({self.evidence}); "
            f"its worker would run in the serving environment, which has torch {torch_v or 'not installed'} and "
            f"transformers {tf_v or 'not installed'} (vLLM 0.32 there needs transformers >= 5.16), and the package "
            f"is archived upstream; use methods: {{kind: {self.instead}}} (llm-compressor's maintained "
            f"{self.instead.upper()}, int4 W4A16 that vLLM serves, on CPU too)"
        )

    def missing_packages(self) -> str | None:
        # installing the extra into a refused environment would not make it run: the refusal says what would
        return None if self.refusal() else super().missing_packages()

    def plan_problems(self, cell, arch) -> list[str]:
        why = self.refusal()
        if why:
            return [f"method {cell.method!r} ({self.kind}): {why}"]
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
        why = self.refusal()
        if why:  # the plan refuses such a cell; a caller that skips the plan gets the same reason
            raise StageError("compress", why)
        workdir = paths.work
        spec = method_of(cell)
        out, record_path = workdir / "model", workdir / "compress-record.json"
        log = paths.log("compress")

        def run(tmp: Path, env: dict[str, str]) -> LegacyRecord:
            job = LegacyJob(
                tool=self.tool,
                source=str(source),
                trust_remote_code=cell.model.trust_remote_code,
                out=str(tmp),
                group_size=spec.group_size if isinstance(spec.group_size, int) else 128,
                calibration=calibration(spec),
            )
            return run_compress_worker(job, log, settings, env)

        built = build_artefact(
            out,
            record_path,
            run,
            LegacyRecord,
            what=f"the {self.kind} artefact of cell {cell.cell_id} ({out})",
            log=log,
        )
        size = dir_size(out)
        params = cell.estimate.params if cell.estimate else None
        return Artefact(
            model=str(out),
            dtype="float16",
            quantization=self.vllm_name,
            size_bytes=size,
            bits_per_weight=round(size * 8 / params, 3) if params else None,
            record=built.record.model_dump(mode="json"),
        )


class AutoAWQ(_Legacy):
    kind = "autoawq"
    tool = "autoawq"
    vllm_name = "awq"
    packages = {"awq": "autoawq"}
    release = "AutoAWQ 0.2.9"
    torch_series = "2.6"
    evidence = "its deprecation notice: last tested with torch 2.6.0 and transformers 4.51.3"
    instead = "awq"

    def scheme(self, cell) -> str:
        return "awq-legacy"


class AutoGPTQ(_Legacy):
    kind = "autogptq"
    tool = "auto-gptq"
    vllm_name = "gptq"
    packages = {"auto_gptq": "auto-gptq"}
    release = "AutoGPTQ 0.7.1"
    torch_series = "2.2"
    evidence = (
        "its wheel's CUDA extensions are built for torch 2.2; on transformers 5 `import auto_gptq` fails: "
        "transformers.modeling_utils has no no_init_weights"
    )
    instead = "gptq"

    def scheme(self, cell) -> str:
        return "gptq-legacy"
