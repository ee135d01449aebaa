"""A stand-in for the data workers (harness/evaluate/task_data_worker.py, the training data's) in cache tests:
`SlowDataJob` writes the task files slowly, so two preparations overlap, and journals each run
(DQ_TEST_JOURNAL) so a test counts builds. DQ_TEST_PAUSE sets the pause (seconds) between the first file and
the rest. A PreparedData subclass returns it from `job()` (tests/unit/evaluate/test_data_cache.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness.jobs import Job, Record

FILES = ("arc_easy.jsonl", "hellaswag.jsonl", "lambada.jsonl", "pydoc.jsonl", "corpus.jsonl", "prompts_open_qa.jsonl")


class SlowDataRecord(Record):
    files: list[str]


class SlowDataJob(Job[SlowDataRecord]):
    worker = "tests.fakes.slow_data_worker:work"

    olmo_wheel: str
    out: str
    lambada_from: int | None = None


def work(job: SlowDataJob) -> SlowDataRecord:
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()} {job.out}\n")
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / FILES[0]).write_text(json.dumps({"text": "first"}) + "\n")
    time.sleep(float(os.environ.get("DQ_TEST_PAUSE", "1.0")))
    for name in FILES[1:]:
        (out / name).write_text(json.dumps({"text": name, "prompt": "q?"}) + "\n")
    (out / "stats.json").write_text(json.dumps({"corpus_docs": 1}))
    return SlowDataRecord(files=list(FILES))
