"""Per-item scores from lm-eval's samples: the one reader of the samples JSONL the evaluate worker writes
(harness/evaluate/lmeval_worker.py: one line per document with `doc_id` and its per-item metric values).

`task_items` gives them to the evaluator (harness/evaluate/lmeval.py), which puts them into the quality
block's tasks (`items`, harness/result.Item) when the evaluate step finishes, so the stored result carries
them and nothing later reads work/ for scores.
The store's upgrade of schema-2 results (harness/store/results.py) reads the same files the same way.
No heavy imports.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.result import Item, is_item_metric


def read_sample_items(path: Path) -> list[Item]:
    """The scored documents of one task's samples JSONL, in file order (a document with none of
    item metric (harness/result.is_item_metric), as in a perplexity task, is left out)."""
    out = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            scores = {
                m: float(v)
                for m, v in row.items()
                if is_item_metric(m) and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if scores and row.get("doc_id") is not None:
                out.append(Item(doc_id=int(row["doc_id"]), scores=scores, task=row.get("task")))
    return out


def task_items(samples_dir: Path, task: str) -> list[Item]:
    """A task's items from `samples_dir/<task>.jsonl` (none when the file is missing: the worker writes one
    per task it scored)."""
    path = Path(samples_dir) / f"{task}.jsonl"
    return read_sample_items(path) if path.is_file() else []
