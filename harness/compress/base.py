"""The compressor plugin contract. Plugins declare capabilities the planner reads; the heavy work
runs in a stage subprocess so the orchestrator never imports torch or llm-compressor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from harness.models.arch import ArchInfo
    from harness.plan.models import CellPlan
    from harness.settings import Settings


@dataclass(frozen=True)
class Artefact:
    """What the serve stage loads: a folder (or hub id) plus the dtype/quantization to ask for."""

    model: str  # local folder or hub id
    dtype: str  # vLLM --dtype
    quantization: str | None  # what the server must report having loaded (None: unquantized)
    size_bytes: int | None
    bits_per_weight: float
    record: dict = field(default_factory=dict)  # recipe, wall time, peak memory ... (stored with the cell)
    tokenizer: str | None = None  # HF tokenizer folder when `model` is not one (a .gguf file)
    server_args: dict = field(default_factory=dict)  # engine flags the artefact needs (load-time quantization)

    @property
    def tokenizer_src(self) -> str:
        return self.tokenizer or self.model


class Compressor(ABC):
    kind: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    needs_gpu: ClassVar[bool] = False
    engines: ClassVar[tuple[str, ...]] = ("vllm",)
    # True when the artefact is served in the cell's compute_dtype (the plan then makes it part of the cell)
    honours_compute_dtype: ClassVar[bool] = False
    # importable modules the plugin needs in the orchestrator's env (optional extras), name -> pip spec
    packages: ClassVar[dict[str, str]] = {}

    def scheme(self, cell: "CellPlan") -> str:
        """The served format, a key of harness.plan.support.SUPPORT (e.g. w4a16, fp8-dynamic, gguf)."""
        return cell.precision

    def missing_packages(self) -> str | None:
        """None when every optional package is importable; otherwise what to install."""
        import importlib.util

        missing = [pip for mod, pip in self.packages.items() if importlib.util.find_spec(mod) is None]
        return f"{', '.join(missing)} installed (pip install 'dqbench[legacy]')" if missing else None

    def plan_problems(self, cell: "CellPlan", arch: "ArchInfo | None") -> list[str]:
        """Problems found before any work (group size, engine support); each names the fix."""
        return []

    @abstractmethod
    def compress(self, cell: "CellPlan", source: Path | str, workdir: Path, settings: "Settings") -> Artefact:
        """Produce the artefact the cell serves (heavy work in a stage subprocess)."""


def checkpoint_ident(source) -> str:  # noqa: ANN001
    """A cheap identity of a checkpoint folder for cache keys: its path and each weight file's name, size
    and mtime (no hashing of gigabytes); a hub id stands for itself."""
    src = Path(str(source))
    weights = sorted(src.glob("*.safetensors")) if src.is_dir() else []
    return f"{src.resolve()}|{[(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]}"


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
