"""CellPaths: the folders one cell's run may write, handed to every plugin (compressors, the evaluator, the
shift), so no plugin knows the results folder's layout. The layout itself belongs to the store
(harness/store/results.ResultStore: `logs_dir`, `work_dir`); this module only asks it.

- `logs`: the cell's log files (`compress.log`, `server.log`, `evaluate.log` ...), shared by every host
  that runs the cell, appended to.
- `work`: what the cell makes and every host may reuse: the compressed artefact, its record, the inputs
  handed to workers.
- `measured`: what this host measured (lm-eval's per-item samples, the logprob dumps the shift compares):
  kernels differ by host, so two hosts that share a results folder never read each other's items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.store.results import ResultStore


@dataclass(frozen=True)
class CellPaths:
    cell_id: str
    logs: Path
    work: Path
    measured: Path

    @classmethod
    def of(cls, store: ResultStore, cell_id: str, host_id: str) -> CellPaths:
        work = store.work_dir(cell_id)
        return cls(cell_id=cell_id, logs=store.logs_dir(cell_id), work=work, measured=work / host_id)

    def log(self, name: str) -> Path:
        """The log file `name` (e.g. "compress" -> logs/<cell>/compress.log)."""
        return self.logs / f"{name}.log"

    def create(self) -> CellPaths:
        for d in (self.logs, self.work, self.measured):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def in_folder(cls, root: Path, cell_id: str, host_id: str = "this-host") -> CellPaths:
        """Paths under one folder (root/logs, root, root/<host>): a compressor run outside a results store
        (tests, `harness sensitivity`)."""
        return cls(cell_id=cell_id, logs=root / "logs", work=root, measured=root / host_id).create()
