"""Per-(cell, host) results: the source of truth. One JSON per cell id and host id under results/cells/
(`<cell_id>@<host_id>.json`, one flat folder so `cells/*.json` finds every result), each a
harness/result.CellResult (`model_dump(mode="json")`), written atomically (tmp + fsync + rename) so a crash
or Ctrl-C never leaves a half file that reads as done. Reads return a CellResult.

Why the host is in the key: the cell id hashes the cell's config only, and the same config measured on
another machine is another data point. Quality is not reused across hosts either: kernels and emulated
bf16 differ by ISA, so scores can differ in the last digits; re-running on each host is the honest default.

Every file is written with the store's one mode (harness/store/files.py: 0600 unless DQBENCH_FILE_MODE).

A failed attempt never replaces a `done` result of the same (cell, host): it is kept beside it under
results/attempts/<cell_id>@<host_id>-<UTC time>.json, and the done result stays the cell's result.

Old schemas are read through `upgrade()` (schema history: harness/result.py): schema 1 (no host, at
cells/<cell_id>.json) gets the `unknown` host (harness/store/hosts.py); schema 2 gets its per-item scores
from the lm-eval samples under work/ when they are still there, else none. Both say `upgraded_from`. A file
that cannot be read (not JSON, not a result, a newer schema) is refused with a message (`Refused`), never
trusted and never a crash: the store treats it as no result, and `scan()` says which files and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from harness.errors import DQError
from harness.proc import write_json_atomic
from harness.result import SCHEMA_VERSION, CellResult
from harness.store.files import file_mode
from harness.store.hosts import UNKNOWN_HOST_ID, legacy_host_block, normalized_host

READS = (1, 2, SCHEMA_VERSION)  # the schema versions this dqbench reads


class ResultUnreadable(DQError):
    """A result this dqbench cannot read: not JSON, not a result, or a schema it does not know."""


class Refused(NamedTuple):
    path: Path
    why: str


def _v2_items(task: str, t: dict[str, Any], work: Path | None, host_id: str) -> list[dict[str, Any]] | None:
    """A schema-2 task's per-item scores from its samples JSONL (where the result says, else where the
    cell's work folder keeps them for its host, else the layout before per-host folders); None if gone."""
    from harness.evaluate.items import read_sample_items

    places = [Path(t["samples_path"])] if t.get("samples_path") else []
    if work is not None:
        places += [work / host_id / "samples" / f"{task}.jsonl", work / "samples" / f"{task}.jsonl"]
    for p in places:
        if p.is_file():
            return [i.model_dump() for i in read_sample_items(p)]
    return None


def upgrade(doc: dict[str, Any], work: Path | None = None) -> dict[str, Any]:
    """Bring a result document to the current schema (a dict that CellResult validates). `work`: the
    cell's work folder (results/work/<cell_id>), where a schema-2 result's per-item samples may be.
    Raises ResultUnreadable for a schema this dqbench does not read."""
    v = doc.get("schema_version")
    if v not in READS:
        raise ResultUnreadable(
            f"result schema_version {v!r} is not readable by this dqbench (reads {', '.join(map(str, READS))}); "
            f"update dqbench or move the file out of results/cells/"
        )
    if v == SCHEMA_VERSION:
        return doc
    out = {**doc, "schema_version": SCHEMA_VERSION, "upgraded_from": v}
    out.pop("kept_result", None)  # an attempt's pointer to the result it did not replace (see write)
    if v == 1:  # before host fingerprints: which machine measured it was not recorded
        out["host"] = legacy_host_block()
    host_id = normalized_host(out)["host_id"]
    quality = out.get("quality")
    if quality and quality.get("tasks"):
        tasks = {}
        for task, t in quality["tasks"].items():
            items = _v2_items(task, t, work, host_id)
            tasks[task] = {**t, "items": items or []}
        out["quality"] = {**quality, "tasks": tasks}
    return out


def parse(doc: Any, work: Path | None = None) -> CellResult:
    """A CellResult from a result document of any readable schema (one without `schema_version` is a
    document the pipeline just built: the current schema); ResultUnreadable says why not."""
    if not isinstance(doc, dict):
        raise ResultUnreadable(f"not a result document (a JSON {type(doc).__name__})")
    doc = upgrade({"schema_version": SCHEMA_VERSION, **doc}, work)
    try:
        return CellResult.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top)"
        raise ResultUnreadable(
            f"not a valid schema-{SCHEMA_VERSION} result "
            f"({exc.error_count()} problem(s); first: {where}: {first['msg']})"
        ) from None


class ResultStore:
    def __init__(self, results_dir: Path) -> None:
        self.root = Path(results_dir)
        self.cells_dir = self.root / "cells"
        self.attempts_dir = self.root / "attempts"

    def path(self, cell_id: str, host_id: str) -> Path:
        return self.cells_dir / f"{cell_id}@{host_id}.json"

    def legacy_path(self, cell_id: str) -> Path:
        """Where a schema-1 result (no host) lives."""
        return self.cells_dir / f"{cell_id}.json"

    def logs_dir(self, cell_id: str) -> Path:
        return self.root / "logs" / cell_id

    def work_dir(self, cell_id: str) -> Path:
        return self.root / "work" / cell_id

    def load(self, p: Path) -> CellResult:
        """The result in file `p`; ResultUnreadable (naming the file) when it cannot be read."""
        try:
            raw = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultUnreadable(f"{p}: cannot be read ({type(exc).__name__}: {exc})") from None
        cell_id = raw.get("cell_id") if isinstance(raw, dict) else None
        try:
            return parse(raw, self.work_dir(cell_id) if isinstance(cell_id, str) else None)
        except ResultUnreadable as exc:
            raise ResultUnreadable(f"{p}: {exc}") from None

    def _load(self, p: Path) -> CellResult | None:
        try:
            return self.load(p)
        except ResultUnreadable:
            return None  # unreadable: treated as not done, re-run rather than trusted (scan() says why)

    def write(self, result: CellResult | dict[str, Any]) -> Path:
        """Store a result under (cell_id, host id); returns where it went: the cell's result path, or an
        attempts/ path when a not-done result would have replaced a done one (or a file this dqbench cannot
        read). A dict is validated first (ResultUnreadable if it is not a result)."""
        if not isinstance(result, CellResult):
            result = parse(result)
        result = result.model_copy(update={"host": normalized_host({"host": result.host})})
        doc = result.model_dump(mode="json")
        cell_id, host_id = result.cell_id, result.host_id
        p = self.path(cell_id, host_id)
        # a failure never replaces a done result, nor a file this dqbench cannot read (a newer schema, a
        # damaged file): it goes beside it, and what was there stays for a person to look at
        if not result.done and p.is_file():
            kept = self._load(p)
            if kept is None or kept.done:
                a = self._attempt_path(cell_id, host_id)
                write_json_atomic(a, {**doc, "kept_result": str(p)}, mode=file_mode())
                return a
        write_json_atomic(p, doc, mode=file_mode())  # the store's one mode (harness/store/files.py)
        return p

    def _attempt_path(self, cell_id: str, host_id: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        p = self.attempts_dir / f"{cell_id}@{host_id}-{stamp}.json"
        n = 2
        while p.exists():  # two failures within a second
            p = self.attempts_dir / f"{cell_id}@{host_id}-{stamp}-{n}.json"
            n += 1
        return p

    def attempts(self, cell_id: str, host_id: str) -> list[Path]:
        """Failed attempts kept beside a done result, oldest first."""
        return sorted(self.attempts_dir.glob(f"{cell_id}@{host_id}-*.json"))

    def read(self, cell_id: str, host_id: str) -> CellResult | None:
        """This cell's result on this host (None if absent or unreadable)."""
        p = self.path(cell_id, host_id)
        if not p.is_file() and host_id == UNKNOWN_HOST_ID:
            p = self.legacy_path(cell_id)
        return self._load(p) if p.is_file() else None

    def status(self, cell_id: str, host_id: str) -> str | None:
        r = self.read(cell_id, host_id)
        return r.status if r else None

    def hosts_of(self, cell_id: str) -> dict[str, CellResult]:
        """host_id -> result, for every host that has a result of this cell."""
        out: dict[str, CellResult] = {}
        for p in sorted([*self.cells_dir.glob(f"{cell_id}@*.json"), self.legacy_path(cell_id)]):
            r = self._load(p) if p.is_file() else None
            if r is not None and r.cell_id == cell_id:
                out.setdefault(r.host_id, r)
        return out

    def scan(self) -> tuple[list[CellResult], list[Refused]]:
        """Every host's results (older schemas upgraded), and the files refused with the reason."""
        results, refused = [], []
        for p in sorted(self.cells_dir.glob("*.json")):
            try:
                results.append(self.load(p))
            except ResultUnreadable as exc:
                refused.append(Refused(p, str(exc)))
        return results, refused

    def all(self) -> list[CellResult]:
        """Every host's results (schema 1 and 2 files included, upgraded); unreadable files left out."""
        return self.scan()[0]
