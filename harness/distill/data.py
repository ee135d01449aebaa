"""Training data for students, prepared once into DQBENCH_HOME/data/train-v1/ from what is offline:

- corpus.jsonl: LAMBADA passages from the held-out half of the file (documents >= HELDOUT_FROM; the
  dq_lambada task reads from the start, and the plan refuses a limit that would reach this half),
  interleaved with docstrings of Python's standard library (parsed with ast, never imported).
  Never pydoc: the perplexity task, the shift windows and the load prompts come from it.
- prompts_open_qa.jsonl: TriviaQA (rc.wikipedia.nocontext) and NQ-open validation questions, the prompt
  set the teacher answers for sft / gkd. No evaluated task uses them.
Prepared like the evaluation data (harness/evaluate/data.py: under a lock, into a unique temporary folder,
manifest with each file's sha256 and size last, one rename); the sha256s go into every student's key.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.evaluate.data import PreparedData

VERSION = "train-v1"
HELDOUT_FROM = 2500  # first LAMBADA document the training corpus may use


class TrainData(PreparedData):
    version = VERSION
    worker_module = "harness.workers.prepare_train_data"
    stage_args = ("--lambada-from", str(HELDOUT_FROM))

    def manifest_extra(self, folder: Path) -> dict:
        return {"stats": json.loads((folder / "stats.json").read_text())}

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
