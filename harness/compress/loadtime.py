"""bitsandbytes: load-time quantization inside vLLM (`--quantization bitsandbytes`, nf4 weights, CUDA
kernels). No artefact is written: the cell serves the source checkpoint and vLLM quantizes it while
loading, so size on disk is the source's and bits/weight is nf4's nominal 4 + one fp32 absmax per 64.

Whether the installed vLLM still has the method is read from its files, not by importing it (the
orchestrator never imports vllm): vllm 0.32, pinned here, lists no `bitsandbytes` quantization.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from harness.compress.base import Compressor
from harness.result import Artefact

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


def vllm_has_quantization(name: str) -> bool | None:
    """True/False from vllm's QuantizationMethods list on disk; None when vllm is not installed here."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.origin:
        return None
    f = Path(spec.origin).parent / "model_executor" / "layers" / "quantization" / "__init__.py"
    return f.is_file() and f'"{name}"' in f.read_text()


class BitsAndBytes(Compressor):
    kind = "bnb"
    precisions = ("int4",)
    needs_gpu = True

    def scheme(self, cell) -> str:
        return "bnb-nf4"

    def plan_problems(self, cell, arch) -> list[str]:
        if vllm_has_quantization("bitsandbytes") is False:
            return [
                f"method {cell.method!r} (bnb): the installed vLLM has no `bitsandbytes` quantization method "
                "(vllm 0.32 lists none); use a vLLM build that has it on a GPU host, or a pre-quantized "
                "method vLLM serves (gptq/awq/rtn int4 via llm-compressor)"
            ]
        return []

    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        local = Path(str(source))
        size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) if local.is_dir() else None
        return Artefact(
            model=str(source),
            dtype="bfloat16",
            quantization="bitsandbytes",
            size_bytes=size,
            bits_per_weight=4.5,
            server_args={"quantization": "bitsandbytes"},
            record={
                "method": "bnb",
                "scheme": "nf4, load-time in vLLM",
                "note": "quantized by vLLM while loading; size_bytes is the source checkpoint's",
                "bits_per_weight_basis": "nf4: 4 bits + fp32 absmax per 64 weights",
            },
        )
