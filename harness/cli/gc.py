"""`harness gc`: what no stored result needs, with sizes (harness/store/gc.py decides), removed only with
--delete. Refused while a `harness run` writes the results folder (its writer lock is held for the whole gc);
a cache entry another process is building (its lock held) is left alone."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from harness.cli.console import err, fail, out
from harness.errors import DQError


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def gc(
    delete: bool = typer.Option(False, "--delete", help="remove what is listed (default: a dry run that lists it)"),
    caches: bool = typer.Option(
        False, "--caches", help="also DQBENCH_HOME's students, teacher answers and logits, bf16 GGUFs no result names"
    ),
    as_json: bool = typer.Option(False, "--json", help="the list as JSON"),
) -> None:
    """Find what no stored result needs under the results folder (interrupted cells' work and logs, another
    host's leftovers, logprob dumps of attempts no result names, dead writers' temporary files) and, with
    --caches, in DQBENCH_HOME's caches; list it with sizes. Nothing is removed without --delete."""
    from harness.locks import LockTimeout, file_lock, lock_for, remove
    from harness.runner import writer_lock
    from harness.settings import load_settings
    from harness.store import gc as store_gc

    settings = load_settings()
    try:
        with writer_lock(settings.results_dir):
            keep = store_gc.stored(settings.results_dir)
            found = store_gc.results_garbage(settings.results_dir, keep)
            if caches:
                found += store_gc.cache_garbage(settings.home, keep)
            removed, busy = [], []
            if delete:
                for g in found:
                    lock = lock_for(g.path)  # a cache entry's build lock (never deleted: a waiter may hold it)
                    try:
                        if lock.exists():  # being built or rebuilt right now: leave it to its builder
                            with file_lock(lock, what=str(g.path), timeout=0):
                                remove(g.path)
                        else:
                            remove(g.path)
                        removed.append(g)
                    except LockTimeout:
                        busy.append(g)
    except DQError as exc:
        fail(exc)
    if as_json:
        print(
            json.dumps(
                {
                    "deleted": delete,
                    "items": [{"path": str(g.path), "bytes": g.bytes, "why": g.why} for g in found],
                    "bytes": store_gc.total(found),
                    "busy": [str(g.path) for g in busy],
                },
                indent=2,
            )
        )
        return
    t = Table(title=f"{'removed' if delete else 'would remove (dry run; --delete removes)'}: {len(found)} item(s)")
    for col in ("size", "path", "why"):
        t.add_column(col)
    for g in sorted(found, key=lambda g: -g.bytes):
        t.add_row(_gib(g.bytes), str(g.path), g.why)
    out.print(t)
    verb = "freed" if delete else "would free"
    out.print(f"{verb} {_gib(store_gc.total(removed if delete else found))}", highlight=False)
    for g in busy:
        err.print(f"left {g.path}: another process is building it", highlight=False, markup=False)
