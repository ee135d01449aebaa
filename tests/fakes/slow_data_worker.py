"""A stand-in for the data workers (harness/evaluate/task_data_worker.py, harness/distill/train_data_worker.py)
in cache tests: it writes the data files slowly, so two preparations overlap, and journals each run
(DQ_TEST_JOURNAL) so a test counts builds. DQ_TEST_PAUSE sets the pause (seconds) between the first file and
the rest.

Two jobs: `SlowDataJob`, which a PreparedData subclass returns from `job()` (tests/unit/evaluate/
test_data_cache.py), and `SlowTrainDataJob`, the real `TrainDataJob` with its worker pointed at `work_train`
here (tests/unit/distill/test_train_data_cache.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness.distill.train_data_worker import TrainDataJob, TrainDataStats
from harness.jobs import Job, Record

FILES = ("arc_easy.jsonl", "hellaswag.jsonl", "lambada.jsonl", "pydoc.jsonl", "corpus.jsonl", "prompts_open_qa.jsonl")


class SlowDataRecord(Record):
    files: list[str]


class SlowDataJob(Job[SlowDataRecord]):
    worker = "tests.fakes.slow_data_worker:work"

    olmo_wheel: str
    out: str
    lambada_from: int | None = None


class SlowTrainDataJob(TrainDataJob):
    worker = "tests.fakes.slow_data_worker:work_train"


def write_slowly(out: Path) -> None:
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()} {out}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / FILES[0]).write_text(json.dumps({"text": "first"}) + "\n")
    time.sleep(float(os.environ.get("DQ_TEST_PAUSE", "1.0")))
    for name in FILES[1:]:
        (out / name).write_text(json.dumps({"text": name, "prompt": "q?"}) + "\n")
    (out / "stats.json").write_text(json.dumps({"corpus_docs": 1}))


def work(job: SlowDataJob) -> SlowDataRecord:
    write_slowly(Path(job.out))
    return SlowDataRecord(files=list(FILES))


def work_train(job: SlowTrainDataJob) -> TrainDataStats:
    write_slowly(Path(job.out))
    return TrainDataStats(lambada_docs=1, stdlib_docstrings=0, corpus_docs=1, corpus_chars=6, open_qa_prompts=1)
