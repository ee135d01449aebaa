"""lm-eval's TaskManager with its own task folder's index read from a cache (the evaluate worker's start-up).

lm-eval 0.4.13 builds its task index on every `TaskManager()` by parsing every YAML of its task folder
(~14,000 files, includes resolved): 15-38 s of the evaluate stage on a 2-core host (cProfile,
bench/eval_efficiency.py), paid again in every cell. The folder only changes when lm-eval does, so its
part of the index is built once and kept under a key of lm-eval's version and every YAML's path, size and
mtime. lm-eval builds each folder's index on its own and merges them in order, later folders winning
(lm_eval/tasks/_index.py `TaskIndex.build`); this does the same with the cached part, so the TaskManager
(and every task config, prompt and score) is the one lm-eval would build. Include folders (dqbench's
tasks, the rendered offline overrides) are indexed fresh. Imported only inside the evaluate worker.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1  # bump when what is pickled changes shape


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


def cached_index(build, root: Path, version: str, cache_dir: Path, **kw: Any) -> dict:
    """`build([root], **kw)`, read from `cache_dir` when built before for the same tree; written atomically
    (cells evaluating side by side may build it at once: the last rename wins, both are the same)."""
    path = cache_dir / f"lmeval-index-{tree_key(root, version)}-{int(bool(kw.get('resolve_includes', True)))}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception as exc:  # noqa: BLE001 -- a torn or foreign file is rebuilt, never trusted
            print(f"lm-eval task index cache {path} unreadable ({type(exc).__name__}): rebuilding", flush=True)
    index = build([root], **kw)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
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
