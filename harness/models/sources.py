"""Model sources: where a cell's checkpoint comes from (embedded package, hub id, local folder).

`resolve` returns what the serving engine and the stages load (a folder or a hub id); `arch` returns
config facts without loading weights; `prepare` does any one-off work (only the embedded source has any).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.errors import PlanError
from harness.models.arch import ArchInfo, arch_from_dir, known_arch
from harness.settings import Settings


class HubSource:
    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings

    def _cached_dir(self) -> Path | None:
        # The standard HF cache layout; lets the plan read config.json offline when the model was fetched once.
        if os.environ.get("HF_HUB_CACHE"):
            root = Path(os.environ["HF_HUB_CACHE"])
        else:
            root = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
        snaps = root / f"models--{self.spec.id.replace('/', '--')}" / "snapshots"
        found = sorted(snaps.glob("*/config.json")) if snaps.is_dir() else []
        return found[-1].parent if found else None

    def available(self) -> str | None:
        if self.settings.offline and self._cached_dir() is None:
            return (
                f"hub model {self.spec.id!r} is not in the local HF cache and HF_HUB_OFFLINE=1; "
                f"download it once online or use a `local` source"
            )
        return None

    def arch(self) -> ArchInfo | None:
        d = self._cached_dir()
        return (arch_from_dir(d) if d else None) or known_arch(self.spec.id)

    def prepare(self, log: Path) -> None:
        return None

    def resolve(self) -> str:
        return self.spec.id

    def fingerprint(self) -> dict:
        return {"kind": "hub", "id": self.spec.id, "revision": self.spec.revision}


class LocalSource:
    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.path = Path(spec.path).expanduser().resolve()

    def available(self) -> str | None:
        if not (self.path / "config.json").is_file():
            return f"local model {str(self.path)!r} has no config.json; point `path` at a checkpoint folder"
        return None

    def arch(self) -> ArchInfo | None:
        return arch_from_dir(self.path)

    def prepare(self, log: Path) -> None:
        if self.available():
            raise PlanError(self.available())

    def resolve(self) -> str:
        return str(self.path)

    def fingerprint(self) -> dict:
        manifest = self.path / "dqbench-manifest.json"
        extra = json.loads(manifest.read_text()) if manifest.is_file() else {}
        return {"kind": "local", "path": str(self.path), **extra}


def source_for(spec, settings: Settings):
    from harness.registry import model_sources

    return model_sources.get(spec.source.kind)(spec.source, settings)
