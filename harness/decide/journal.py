"""The item journal: every per-item score the sequential evaluation makes, appended as it is made, so that a later
run (a larger budget, a stricter limit, a crash, Ctrl-C) continues from the items already scored and never
scores them again.

One file per (cell, host, task): `work/<cell>/<host>/items/<task>.jsonl` (the cell's measured folder,
harness/workspace.CellPaths.measured: kernels differ by host, so hosts never share items). Line 1 is the header:
the journal format, the task, lm-eval's version and `pin`, a hash of everything that decides what an item's
score is (dqbench's task hash: config + data + lm-eval version; few-shot count and seeding, generation
overrides, chat formatting, max length). A journal whose header differs is set aside (renamed
`<task>.discarded.jsonl`, the last one kept) and the task starts afresh. Every later line is one scored
document as the evaluate worker writes it to the samples file (harness/evaluate/lmeval_worker.sample_rows:
`doc_id`, `task` for a group's subtask, the target, the filtered responses and each metric's per-item value).

Crash safety: lines are appended a batch at a time, flushed and fsynced; a line torn by a crash (the last
one) does not parse and is dropped, so a journal only ever holds whole items. Only the cell's own attempt
writes its journal (the cell lock, harness/cell/run.py); its children read it.

Pure (no lm-eval): the worker writes, bench/sequential.py and the tests read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from harness.decide.order import ItemKey

JOURNAL_FORMAT = 1
ROW_FIELDS = ("task", "doc_id", "target", "filtered_resps", "resps")  # a row's keys that are not metrics


class JournalHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    journal: int = JOURNAL_FORMAT
    task: str
    lm_eval_version: str | None
    pin: str  # sha256 of `settings`
    settings: dict[str, Any]  # what the pin covers, kept readable

    @classmethod
    def of(cls, task: str, lm_eval_version: str | None, settings: dict[str, Any]) -> JournalHeader:
        blob = json.dumps({"lm_eval": lm_eval_version, **settings}, sort_keys=True, default=str)
        return cls(
            task=task,
            lm_eval_version=lm_eval_version,
            pin=hashlib.sha256(blob.encode()).hexdigest()[:16],
            settings=settings,
        )


def journal_path(folder: Path, task: str) -> Path:
    return Path(folder) / f"{task}.jsonl"


def row_key(row: dict[str, Any]) -> ItemKey:
    return (row.get("task"), int(row["doc_id"]))


def row_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """A row's per-item metric values by lm-eval's key ("acc", "exact_match,strict-match")."""
    return {k: v for k, v in row.items() if k not in ROW_FIELDS}


def _read(path: Path) -> tuple[dict[str, Any] | None, dict[ItemKey, dict[str, Any]]]:
    """(header or None, rows by key) of a journal; a torn last line (a crash mid-write) is dropped."""
    header: dict[str, Any] | None = None
    rows: dict[ItemKey, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue  # only a torn line can fail to parse: it was never a whole item
            if i == 0:
                header = doc if isinstance(doc, dict) and "journal" in doc else None
                if header is None:
                    break
                continue
            if isinstance(doc, dict) and "doc_id" in doc:
                rows[row_key(doc)] = doc
    return header, rows


def read_journal(folder: Path, task: str, header: JournalHeader) -> tuple[dict[ItemKey, dict[str, Any]], str | None]:
    """(rows by key, why the journal was not used) of a journal read by others (a reference's items): rows only
    when its header pins the same settings; never modifies it."""
    path = journal_path(folder, task)
    if not path.is_file():
        return {}, f"no item journal {path}"
    found, rows = _read(path)
    if found is None:
        return {}, f"{path} has no journal header"
    if found.get("pin") != header.pin or found.get("journal") != header.journal:
        return {}, (
            f"{path} was scored with other settings (pin {found.get('pin')} vs {header.pin}; "
            f"lm-eval {found.get('lm_eval_version')} vs {header.lm_eval_version})"
        )
    return rows, None


def _heal(path: Path) -> None:
    """Cut a torn last line (a crash mid-write left no newline), so the next append starts a line of its own."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class Journal:
    """A cell's own journal of one task, opened for appending: `rows` holds what it held (a journal pinned to
    other settings is set aside first), `append` adds a batch."""

    def __init__(self, folder: Path, header: JournalHeader) -> None:
        self.path = journal_path(folder, header.task)
        self.header = header
        self.discarded: str | None = None
        self.rows: dict[ItemKey, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            _heal(self.path)
            found, rows = _read(self.path)
            if found is not None and found.get("pin") == header.pin and found.get("journal") == header.journal:
                self.rows = rows
            else:
                aside = self.path.with_name(f"{header.task}.discarded.jsonl")
                os.replace(self.path, aside)
                self.discarded = (
                    f"{self.path.name}: scored with other settings (pin {None if found is None else found.get('pin')}"
                    f" vs {header.pin}); set aside as {aside.name}, the task starts afresh"
                )
        if not self.path.is_file():
            self._write([header.model_dump(mode="json")])

    def _write(self, docs: list[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add scored items (already-held keys are skipped: an item is journaled once)."""
        new = [r for r in rows if row_key(r) not in self.rows]
        if not new:
            return
        self._write(new)
        for r in new:
            self.rows[row_key(r)] = r
