"""Model sources: where a cell's checkpoint comes from (embedded package, hub id, local folder).

`resolve` returns the folder the serving engine and the stages load; `arch` returns config facts without
loading weights; `prepare` does the one-off work before anything is served (the embedded model's
conversion, a hub model's download at its revision); `fingerprint` says what was loaded (typed, one model per
kind: harness/models/fingerprint.py). Also here: the download of a run's hub models before any cell
(`hub_models`, `prepare_hub_models`). The hub mechanism it uses is harness/models/hub.py, which imports
nothing from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import PlanError
from harness.locks import read_json
from harness.models import hub
from harness.models.arch import ArchInfo, arch_from_dir, known_arch
from harness.models.fingerprint import HubFingerprint, LocalFingerprint
from harness.settings import Settings

if TYPE_CHECKING:
    from harness.plan.cell import CellPlan
    from harness.spec.sources import ModelSpec


class HubSource:
    """A hub id at a revision, downloaded before serving (harness/models/hub.py); every stage loads the snapshot
    folder of the resolved commit, so all of them see the same files and none reaches the hub."""

    def __init__(self, spec, settings: Settings) -> None:
        self.spec, self.settings = spec, settings
        self.record: hub.HubRecord | None = None

    def _local(self) -> tuple[str, Path] | None:
        """(commit, snapshot folder) when the model at the revision is on this machine (no network)."""
        rec = self.record or hub.recorded(self.settings, self.spec.id, self.spec.revision)
        if rec is not None:
            return rec.commit, Path(rec.path)
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

    def fingerprint(self) -> HubFingerprint:
        # `commit` (what `revision` resolved to) and `path` are added once known: the plan and the cell ids never
        # read a fingerprint, so recording them changes no id
        local = self._local()
        commit, path = (local[0], str(local[1])) if local else (None, None)
        return HubFingerprint(id=self.spec.id, revision=self.spec.revision, commit=commit, path=path)


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

    def fingerprint(self) -> LocalFingerprint:
        # what the folder's manifest says, under our provenance: it cannot replace `kind` or `path` (see
        # LocalFingerprint); a manifest that is not a JSON object says nothing
        extra: dict[str, Any] = read_json(self.path / "dqbench-manifest.json") or {}
        return LocalFingerprint.of(str(self.path), extra)


def check_remote_code(spec: ModelSpec, folder: str | Path) -> None:
    """Refuse a checkpoint whose repository carries code (auto_map) unless the model is `trust_remote_code:
    true` (which the plan allows only with --trust-remote-code): for a hub model this is known only once it is
    downloaded (harness/plan/trust.py)."""
    from harness.plan.trust import remote_code_problem

    problem = remote_code_problem(spec.name, Path(folder), spec.trust_remote_code)
    if problem:
        raise PlanError(problem)


def source_for(spec, settings: Settings):
    from harness.registry import model_sources

    return model_sources.get(spec.source.kind)(spec.source, settings)


def hub_models(cells: list[CellPlan]) -> list[ModelSpec]:
    """The hub models the planned `cells` load: their models, and their students of `kind: hub` (as models)."""
    found: dict[str, ModelSpec] = {}
    for c in cells:
        if c.model.source.kind == "hub":
            found.setdefault(c.model.name, c.model)
        if c.student is not None and c.student.student.kind == "hub":
            found.setdefault(
                c.student.name, c.model.model_copy(update={"name": c.student.name, "source": c.student.student})
            )
    return list(found.values())


def prepare_hub_models(models: list[ModelSpec], settings: Settings, say: Callable[[str], None] | None) -> None:
    """Download the hub models among `models` before any cell runs (`harness prepare`, the start of `harness
    run`), saying progress every few seconds and what each revision resolved to; one already here costs nothing."""
    from harness.proc import progress_to
    from harness.progress import LiveLine

    log = settings.results_dir / "logs" / "prepare.log"
    live, last = LiveLine(), [0.0]

    def show(rec: dict[str, Any]) -> None:
        live.update(rec)
        done = bool(rec.get("total")) and (rec.get("done") or 0) >= rec["total"]
        if say is not None and (done or time.monotonic() - last[0] >= 5):
            last[0] = time.monotonic()
            say(f"  {live.text()}")

    for m in models:
        src = source_for(m, settings)
        if not isinstance(src, HubSource):
            continue
        with progress_to(show):
            src.prepare(log)
        check_remote_code(m, src.resolve())
        rec = src.record
        if say is not None and rec is not None:
            say(
                f"model {m.name}: {src.spec.id}@{src.spec.revision or 'main'} = {rec.commit} "
                f"({rec.bytes / 2**30:.2f} GiB, {rec.via}) in {rec.path}"
            )
