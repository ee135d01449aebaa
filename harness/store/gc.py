"""What `harness gc` may remove: everything under the results folder and, when asked, DQBENCH_HOME's caches that
no stored result needs, each with its size and why (`Garbage`). Decides only: nothing here deletes.

Needed is what a stored result (results/cells/*.json, and a failed attempt kept beside a done result under
results/attempts/) names or stands for:
- a cell's folders (`work/<cell>`, `logs/<cell>`) while any result of the cell exists; without one they are
  an interrupted attempt's leftovers (a rerun makes them again);
- `work/<cell>/<host>` (what a host measured) while that host has a result of the cell;
- a logprob dump folder (`work/<cell>/<host>/shift/<attempt>`) only when a result names the dump in it
  (each attempt writes its own, harness/evaluate/reference.py);
- temporary files dead writers left (`.NAME.*.tmp`), once no run writes the folder (the CLI holds the
  results writer lock while it looks and removes);
- caches under DQBENCH_HOME (`--caches`): a student, a teacher's answers, a teacher-logit cache, a shared
  bf16 GGUF is needed when a stored result names a path in it; the others cost a rebuild when wanted again,
  never a result. Prepared models, data and tools are not touched.

A result file that cannot be read keeps everything of the cell its name says: unknown is needed. A path a
result names under some `.../work/...` is also taken as the same place under this results folder: a results
folder that was copied or moved keeps what its results name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# DQBENCH_HOME's caches gc looks at (with --caches): rebuilt on demand, each entry one file or folder
CACHES = ("students", "generations", "teacher-cache", "gguf")
_TMP = re.compile(r"^\..+\.tmp(\.lock)?$")  # harness/locks.py unique_tmp names, proc.write_json_atomic's
_ATTEMPT = re.compile(r"^\d{8}T\d{6}Z-\d+-[0-9a-f]+$")  # a shift attempt folder (reference.attempt_folder)
# a host's folder under work/<cell>: a host id (HostCaps.host_id, 10 hex) or the ids of results without a probe
_HOST = re.compile(r"^([0-9a-f]{10}|unknown|unprobed)$")


@dataclass(frozen=True)
class Garbage:
    path: Path
    bytes: int
    why: str


@dataclass(frozen=True)
class Stored:
    """What the stored results say: cell id -> the host ids with a result of it, and every path they name."""

    hosts: dict[str, set[str]]
    paths: frozenset[str]


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    try:
        if path.is_symlink() or path.is_file():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _strings(doc: object) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)


def _cell_of(name: str) -> tuple[str, str | None]:
    """(cell id, host id or None) from a result file's name: `<cell>@<host>.json`, an attempt's
    `<cell>@<host>-<time>.json`, a schema-1 `<cell>.json`."""
    stem = name.removesuffix(".json")
    cell, _, rest = stem.partition("@")
    host = re.sub(r"-\d{8}T\d{6}Z(-\d+)?$", "", rest) if rest else None
    return cell, host


def stored(results_dir: Path) -> Stored:
    """Read every result file (cells/, attempts/) for what it keeps: its cell and host, and the paths it names."""
    hosts: dict[str, set[str]] = {}
    paths: set[str] = set()
    for sub in ("cells", "attempts"):
        for p in sorted((results_dir / sub).glob("*.json")):
            cell, host = _cell_of(p.name)
            try:
                doc = json.loads(p.read_text())
            except (OSError, ValueError):
                doc = None
            if isinstance(doc, dict):
                cell = str(doc.get("cell_id") or cell)
                host = str((doc.get("host") or {}).get("host_id") or host or "unknown")
                for s in _strings(doc):
                    if s.startswith("/"):
                        paths.add(s)
                        if "/work/" in s:  # the same place in this folder, if it was copied or moved
                            paths.add(str(results_dir / "work" / s.rsplit("/work/", 1)[1]))
            hosts.setdefault(cell, set()).add(host or "*")  # unreadable, no host in its name: every host
    return Stored(hosts=hosts, paths=frozenset(paths))


def _named(path: Path, paths: frozenset[str]) -> bool:
    """Whether a stored result names `path` or something inside it."""
    p = str(path)
    return any(s == p or s.startswith(p + os.sep) for s in paths)


def _dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def results_garbage(results_dir: Path, keep: Stored) -> list[Garbage]:
    """What under the results folder no stored result needs."""
    out: list[Garbage] = []
    for kind in ("work", "logs"):
        for d in _dirs(results_dir / kind):
            if d.name not in keep.hosts:
                out.append(Garbage(d, size_of(d), f"{kind} of cell {d.name}, which has no stored result"))
    for cell, hosts in keep.hosts.items():
        work = results_dir / "work" / cell
        if "*" in hosts:
            continue
        for d in _dirs(work):
            if _HOST.match(d.name) and d.name not in hosts and not _named(d, keep.paths):
                out.append(Garbage(d, size_of(d), f"what host {d.name} measured of cell {cell}: no result of it"))
        for host in hosts:
            for a in _dirs(work / host / "shift"):
                if _ATTEMPT.match(a.name) and not _named(a, keep.paths):
                    out.append(Garbage(a, size_of(a), f"logprob dumps of an attempt of {cell} no result names"))
    for folder in (results_dir, results_dir / "cells", results_dir / "attempts"):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            p = folder / name
            if _TMP.match(name) and p.is_file():
                out.append(Garbage(p, size_of(p), "a temporary file a dead writer left"))
    return out


def cache_garbage(home: Path, keep: Stored) -> list[Garbage]:
    """DQBENCH_HOME's cache entries (CACHES) no stored result names; lock files stay (a waiter may hold one)."""
    out = []
    for cache in CACHES:
        try:
            entries = sorted((home / cache).iterdir())
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(".lock") or _named(e, keep.paths):
                continue
            out.append(Garbage(e, size_of(e), f"{cache} entry no stored result names (rebuilt when wanted)"))
    return out


def total(items: Iterable[Garbage]) -> int:
    return sum(g.bytes for g in items)
