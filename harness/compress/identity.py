"""Method "none": the uncompressed reference. Serves the source checkpoint at the cell's precision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.compress.base import Compressor, dir_size
from harness.result import Artefact
from harness.spec.base import BITS

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.settings import Settings
    from harness.workspace import CellPaths


DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class IdentityCompressor(Compressor):
    kind = "none"
    precisions = ("bf16", "fp16", "fp32")

    def compress(self, cell: CellPlan, source: Path | str, paths: CellPaths, settings: Settings) -> Artefact:
        local = Path(str(source))
        size = dir_size(local) if local.is_dir() else None
        return Artefact(
            model=str(source),
            dtype=DTYPE[cell.precision],
            quantization=None,
            size_bytes=size,
            bits_per_weight=float(BITS[cell.precision]),
            record={"method": "none", "note": "uncompressed reference"},
        )
