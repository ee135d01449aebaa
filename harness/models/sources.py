"""Model sources: where a cell's checkpoint comes from (embedded package, hub id, local folder).

`resolve` returns the folder the serving engine and the stages load; `arch` returns config facts without
loading weights; `prepare` does the one-off work before anything is served (the embedded model's
conversion, a hub model's download at its revision).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import PlanError
from harness.models import hub
from harness.models.arch import ArchInfo, arch_from_dir, known_arch
from harness.settings import Settings


class HubSource:
    """A hub id at a revision, downloaded before serving (harness/models/hub.py); every stage loads the snapshot
    folder of the resolved commit, so all of them see the same files and none reaches the hub."""

    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.record: dict | None = None

    def _local(self) -> tuple[str, Path] | None:
        """(commit, snapshot folder) when the model at the revision is on this machine (no network)."""
        rec = self.record or hub.recorded(self.settings, self.spec.id, self.spec.revision)
        if rec is not None:
            return rec["commit"], Path(rec["path"])
        return hub.cached(self.spec.id, self.spec.revision)

    def available(self) -> str | None:
        if self._local() is None and not hub.downloads_allowed(self.settings):
            return hub.offline_message(self.spec.id, self.spec.revision)
        return None  # here, or downloaded by the prepare step

    def arch(self) -> ArchInfo | None:
        local = self._local()
        return (arch_from_dir(local[1]) if local else None) or known_arch(self.spec.id)

    def prepare(self, log: Path) -> None:
        self.record = hub.ensure(self.settings, self.spec.id, self.spec.revision, log)

    def resolve(self) -> str:
        local = self._local()
        if local is None:
            raise PlanError(f"hub model {self.spec.id!r} is not prepared: run `harness prepare` (or its prepare step)")
        return str(local[1])

    def fingerprint(self) -> dict:
        # `commit` (what `revision` resolved to) and `path` are added once known: the plan and the cell ids never
        # read a fingerprint, so recording them changes no id
        local = self._local()
        extra = {"commit": local[0], "path": str(local[1])} if local else {}
        return {"kind": "hub", "id": self.spec.id, "revision": self.spec.revision, **extra}


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
