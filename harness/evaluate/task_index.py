"""lm-eval's TaskManager with its own task folder's index read from a cache (the evaluate worker's start-up).

lm-eval 0.4.13 builds its task index on every `TaskManager()` by parsing every YAML of its task folder
(~14,000 files, includes resolved): 15-38 s of the evaluate stage on a 2-core host (cProfile,
bench/eval_efficiency.py), paid again in every cell. The folder only changes when lm-eval does, so its
part of the index is built once and kept under a key of lm-eval's version and every YAML's path, size and
mtime. lm-eval builds each folder's index on its own and merges them in order, later folders winning
(lm_eval/tasks/_index.py `TaskIndex.build`); this does the same with the cached part, so the TaskManager
(and every task config, prompt and score) is the one lm-eval would build. Include folders (dqbench's
tasks, the rendered offline overrides) are indexed fresh. Imported only inside the evaluate worker.

The cache is JSON, never a pickle: it lives under DQBENCH_HOME, which a cluster shares between users and
nodes, and unpickling a file someone else could write runs their code. Each entry is written as its fields
(name, kind by name, YAML path, config, tags) and read back through a check of every field's type (`_entry`);
an index whose configs do not survive JSON unchanged is not cached at all (built fresh every time, as without
a cache), and a file that does not read back as an index is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_FORMAT = 2  # bump when the cached document changes shape (1: a pickle)


def tree_key(root: Path, version: str) -> str:
    """Which index a folder gives: lm-eval's version and each YAML's relative path, size and mtime."""
    h = hashlib.sha256(f"{CACHE_FORMAT}|{version}|{root}".encode())
    rows = []
    for folder, dirs, files in os.walk(root):  # os.walk + os.stat: ~10x faster than Path.rglob here
        dirs.sort()
        for name in files:
            if name.endswith(".yaml"):
                st = os.stat(os.path.join(folder, name))
                rows.append(f"{os.path.relpath(folder, root)}/{name}|{st.st_size}|{st.st_mtime_ns}\n")
    h.update("".join(sorted(rows)).encode())
    return h.hexdigest()[:24]


def _doc(index: dict) -> dict[str, Any]:
    """The index as JSON data: each lm-eval `Entry` as its fields, its kind by name, its tags sorted."""
    return {
        "format": CACHE_FORMAT,
        "entries": [
            {
                "name": e.name,
                "kind": e.kind.name,
                "yaml_path": None if e.yaml_path is None else str(e.yaml_path),
                "cfg": e.cfg,
                "tags": sorted(e.tags),
            }
            for e in index.values()
        ],
    }


def _entry(raw: object):
    """One lm-eval `Entry` from its JSON fields, each checked; ValueError for anything else."""
    from lm_eval.tasks._index import Entry, Kind

    if not isinstance(raw, dict) or set(raw) != {"name", "kind", "yaml_path", "cfg", "tags"}:
        raise ValueError("an entry is not {name, kind, yaml_path, cfg, tags}")
    name, kind, path, cfg, tags = (raw[k] for k in ("name", "kind", "yaml_path", "cfg", "tags"))
    if not isinstance(name, str) or kind not in Kind.__members__ or not (path is None or isinstance(path, str)):
        raise ValueError(f"entry {name!r}: a bad name, kind or path")
    if not (cfg is None or isinstance(cfg, dict)) or not (
        isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    ):
        raise ValueError(f"entry {name!r}: a bad config or tags")
    return Entry(name=name, kind=Kind[kind], yaml_path=None if path is None else Path(path), cfg=cfg, tags=set(tags))


def _read(path: Path) -> dict:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("entries"), list):
        raise ValueError(f"not a format-{CACHE_FORMAT} task index")
    index = {}
    for raw in doc["entries"]:
        e = _entry(raw)
        index[e.name] = e
    return index


def cached_index(build, root: Path, version: str, cache_dir: Path, **kw: Any) -> dict:
    """`build([root], **kw)`, read from `cache_dir` when built before for the same tree; written atomically
    (cells evaluating side by side may build it at once: the last rename wins, both are the same)."""
    path = cache_dir / f"lmeval-index-{tree_key(root, version)}-{int(bool(kw.get('resolve_includes', True)))}.json"
    if path.is_file():
        try:
            return _read(path)
        except Exception as exc:  # noqa: BLE001 -- a torn or foreign file is rebuilt, never trusted
            print(f"lm-eval task index cache {path} unreadable ({type(exc).__name__}: {exc}): rebuilding", flush=True)
    index = build([root], **kw)
    doc = _doc(index)
    text = json.dumps(doc, allow_nan=False)
    if json.loads(text) != doc:  # a config JSON cannot hold as it is (a tuple, a non-string key): no cache
        print(f"lm-eval task index of {root} does not survive JSON unchanged: not cached", flush=True)
        return index
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return index


def merged_build(plain, root: Path, version: str, cache_dir: Path):
    """A `TaskIndex.build` that reads `root`'s part from the cache and indexes every other folder with
    `plain` (lm-eval's own build), merging in order as lm-eval does: a later folder's entry wins."""

    def build(paths, *, resolve_includes=True):
        index: dict = {}
        for p in paths:
            if Path(p).resolve() == root.resolve():
                index.update(cached_index(plain, Path(p), version, cache_dir, resolve_includes=resolve_includes))
            else:
                index.update(plain([p], resolve_includes=resolve_includes))
        return index

    return build


def task_manager(include_path: list[str], cache_dir: Path | None):
    """lm-eval's `TaskManager(include_path=...)`, its default task folder's index from `cache_dir` (None: no
    cache, lm-eval's own path)."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import TaskIndex

    if cache_dir is None:
        return TaskManager(include_path=include_path)
    orig = TaskIndex.__dict__["build"]
    root = Path(lm_eval.__file__).parent / "tasks"  # the folder TaskManager indexes first (include_defaults)
    build = merged_build(orig.__func__, root, getattr(lm_eval, "__version__", "unknown"), cache_dir)
    TaskIndex.build = staticmethod(build)
    try:
        return TaskManager(include_path=include_path)
    finally:
        TaskIndex.build = orig
